"""Deployments the benchmarks deploy (importable by worker processes)."""

from __future__ import annotations

from typing import Any

from actors import serve


@serve.deployment(num_replicas=1)
class Noop:
    """A trivial deployment: answers with its argument."""

    def __call__(self, x: Any = None) -> Any:
        return x
