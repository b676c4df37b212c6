"""Deployments the serving tests deploy (importable by worker processes)."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from typing import Any

from actors import serve
from actors.serve import get_replica_context


@serve.deployment(num_replicas=2, health_check_period_s=0.2, health_check_timeout_s=2, graceful_shutdown_timeout_s=5)
class Echo:
    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix
        self.instance = os.urandom(4).hex()

    def __call__(self, x: Any) -> Any:
        return f"{self.prefix}{x}"

    def whoami(self) -> dict[str, Any]:
        c = get_replica_context()
        return {"replica_id": c.replica_id, "deployment": c.deployment, "app": c.app_name, "node": c.node_id, "pid": os.getpid(), "prefix": self.prefix}

    def fail(self, text: str) -> None:
        raise ValueError(text)

    def unencodable(self) -> Any:
        return object()

    async def async_echo(self, x: Any) -> Any:
        await asyncio.sleep(0)
        return {"async": x}

    def slow(self, seconds: float) -> str:
        threading.Event().wait(seconds)
        return f"slept {seconds}"


@serve.deployment(num_replicas=1, health_check_period_s=0.2, health_check_timeout_s=2)
class Configurable:
    def __init__(self) -> None:
        self.config: Any = None
        self.reconfigured = 0
        self.instance = os.urandom(4).hex()

    def reconfigure(self, user_config: Any) -> None:
        self.config = user_config
        self.reconfigured += 1

    def __call__(self) -> dict[str, Any]:
        return {"config": self.config, "reconfigured": self.reconfigured, "instance": self.instance}


@serve.deployment(num_replicas=1)
class FailsToStart:
    def __init__(self) -> None:
        raise RuntimeError("cannot load the model file")


@serve.deployment(num_replicas=1, health_check_period_s=0.1, health_check_timeout_s=1)
class Fragile:
    """Fails its health checks while a flag file exists."""

    def __init__(self, flag: str) -> None:
        self.flag = flag
        self.instance = os.urandom(4).hex()

    def check_health(self) -> None:
        if os.path.exists(self.flag) and open(self.flag).read().strip() == self.instance:
            raise RuntimeError("flag file says unhealthy")

    def __call__(self) -> str:
        return self.instance


@serve.deployment(num_replicas=1)
class Sleepy:
    def __init__(self) -> None:
        self.started = time.time()

    def __call__(self, seconds: float) -> str:
        threading.Event().wait(seconds)
        return "done"
