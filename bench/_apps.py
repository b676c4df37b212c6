"""Deployments the benchmarks deploy (importable by worker processes)."""

from __future__ import annotations

import threading
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
