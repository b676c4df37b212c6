"""Each process's view of deployment replicas, kept fresh by controller pushes.

One :class:`Membership` actor per process receives every replica-set update
for every deployment any handle in the process uses: the controller holds one
subscription per process, not per handle.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any

from protocol import ReplicaInfo, ReplicaSet

from .._actor import Actor

MEMBERSHIP_ACTOR = "serve-membership"


class RouteTable:
    """Replica sets by ``(app, deployment)``; thread-safe."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._sets: dict[tuple[str, str], ReplicaSet] = {}
        self._in_flight: dict[str, int] = {}

    def update(self, update: ReplicaSet) -> None:
        """Store a pushed set unless an equal or newer one is known."""
        key = (update.app, update.deployment)
        with self._cond:
            current = self._sets.get(key)
            if current is None or not update.exists or update.version > current.version or not current.exists:
                self._sets[key] = update
                self._cond.notify_all()

    def get(self, key: tuple[str, str]) -> ReplicaSet | None:
        """The known set, or None if never subscribed."""
        return self._sets.get(key)

    def wait_for_replicas(self, key: tuple[str, str], deadline: float) -> ReplicaSet:
        """Block until the set has replicas or the deployment is gone, up to ``deadline`` (monotonic).

        Raises:
            TimeoutError: no replica appeared in time.
        """
        with self._cond:
            while True:
                current = self._sets.get(key)
                if current is not None and (current.replicas or not current.exists):
                    return current
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no running replica of deployment {key[1]!r} in application {key[0]!r}")
                self._cond.wait(remaining)

    def choose(self, replicas: list[ReplicaInfo], exclude: set[str]) -> ReplicaInfo | None:
        """Power of two choices: of two random replicas, the one with fewer
        requests in flight from this process. None if every replica is excluded."""
        candidates = [r for r in replicas if r.replica_id not in exclude] if exclude else replicas
        if not candidates:
            return None
        if len(candidates) == 1:
            return candidates[0]
        first, second = random.sample(candidates, 2)
        in_flight = self._in_flight
        if in_flight.get(second.replica_id, 0) < in_flight.get(first.replica_id, 0):
            return second
        return first

    def started(self, replica_id: str) -> None:
        with self._cond:
            self._in_flight[replica_id] = self._in_flight.get(replica_id, 0) + 1

    def finished(self, replica_id: str) -> None:
        with self._cond:
            left = self._in_flight.get(replica_id, 0) - 1
            if left > 0:
                self._in_flight[replica_id] = left
            else:
                self._in_flight.pop(replica_id, None)


class Membership(Actor):
    """Receives replica-set pushes for this process and stores them."""

    def __init__(self, table: RouteTable) -> None:
        super().__init__()
        self.table = table

    def receive(self, message: Any) -> Any:
        if type(message) is ReplicaSet:
            self.table.update(message)
            return None
        raise TypeError(f"membership actor got an unexpected {type(message).__name__}")
