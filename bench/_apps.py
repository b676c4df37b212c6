"""Deployments the benchmarks deploy (importable by worker processes)."""

from __future__ import annotations

import threading
import time
from typing import Any

from actors import serve


@serve.deployment(num_replicas=1)
class Noop:
    """A trivial deployment: answers with its argument."""

    def __call__(self, x: Any = None) -> Any:
        return x

    def hold(self, seconds: float) -> float:
        """Keeps a request in flight for a while (load for autoscaling)."""
        threading.Event().wait(seconds)
        return seconds


@serve.deployment(num_replicas=1)
class AsyncNoop:
    """The no-op as an ``async def`` method: it runs on the replica's event loop."""

    async def __call__(self, x: Any = None) -> Any:
        return x


@serve.deployment(
    num_replicas=4,
    actor_options={"num_cpus": 0.25},
    health_check_period_s=0.1,
    health_check_timeout_s=2,
    graceful_shutdown_timeout_s=1,
    gang_scheduling_config={"gang_size": 4},
)
class GangMember:
    """A gang member that fails its health checks once its flag file exists."""

    def __init__(self, flag_dir: str) -> None:
        import os

        from actors.serve import get_replica_context

        self.flag = os.path.join(flag_dir, get_replica_context().replica_id)

    def __call__(self) -> str:
        from actors.serve import get_replica_context

        return get_replica_context().replica_id

    def check_health(self) -> None:
        import os

        if os.path.exists(self.flag):
            raise RuntimeError("told to fail")


@serve.deployment(num_replicas=4, health_check_period_s=0.2, health_check_timeout_s=1, graceful_shutdown_timeout_s=1)
class Sturdy:
    """Answers with its replica id; fails its health checks once its flag file exists."""

    def __init__(self, flag_dir: str) -> None:
        import os

        from actors.serve import get_replica_context

        self.replica_id = get_replica_context().replica_id
        self.flag = os.path.join(flag_dir, self.replica_id)

    def __call__(self) -> str:
        return self.replica_id

    def check_health(self) -> None:
        import os

        if os.path.exists(self.flag):
            raise RuntimeError("told to fail")


@serve.deployment(num_replicas=1, max_ongoing_requests=4)
class Spin:
    """CPU-bound pure Python: holds the GIL for the whole request."""

    def __call__(self, n: int) -> int:
        total = 0
        for i in range(n):
            total += i * i % 7
        return total


@serve.deployment(num_replicas=1)
class Echo:
    """Answers with its argument (arrays, bytes, anything)."""

    def __call__(self, x: Any = None) -> Any:
        return x


@serve.deployment(num_replicas=1)
class HttpNoop:
    """The HTTP bench's no-op: answers "ok" as text."""

    async def __call__(self, _request: Any) -> str:
        return "ok"


@serve.deployment(num_replicas=1)
class HttpStream:
    """Streams 3 chunks (the HTTP bench times the first)."""

    async def __call__(self, _request: Any) -> Any:
        async def chunks() -> Any:
            for i in range(3):
                yield f"chunk {i}\n"

        return chunks()


@serve.deployment(num_replicas=1, max_ongoing_requests=64)
class FixedCost:
    """Each call costs 5 ms of one thread (a model's fixed per-call overhead), batched or not."""

    def one(self, x: int) -> int:
        time.sleep(0.005)
        return x

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.005)
    def many(self, xs: list[int]) -> list[int]:
        time.sleep(0.005)
        return xs
