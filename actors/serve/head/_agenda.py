"""What the reconcile loop must look at this tick. Pure: no I/O.

A deployment lands on the agenda when it changes (its state marks itself
dirty) or when a health check falls due, so a tick costs what changed, not
the number of deployments. Autoscaled deployments are kept apart: their
policy runs on its own clock.
"""

from __future__ import annotations

import heapq
from typing import Any

Key = tuple[str, str]


class Agenda:
    """Deployments to reconcile: the dirty ones, and those with a check due."""

    def __init__(self) -> None:
        self.dirty: set[Key] = set()
        self.autoscaled: set[Key] = set()
        self._due: list[tuple[float, Key]] = []

    def at(self, when: float, key: Key) -> None:
        """Look at ``key`` once ``when`` (monotonic) has come."""
        heapq.heappush(self._due, (when, key))

    def take(self, now: float) -> set[Key]:
        """Every deployment to look at now (and forget them: one that stays dirty comes back)."""
        keys, self.dirty = self.dirty, set()
        due = self._due
        while due and due[0][0] <= now:
            keys.add(heapq.heappop(due)[1])
        return keys

    def adopt(self, state: Any) -> Any:
        """Take a deployment state: it reports its changes here from now on,
        its next health check is scheduled, and it is looked at on the next tick."""
        state.agenda = self
        state.mark_dirty()
        if state._health_heap:
            self.at(state._health_heap[0][0], state.key)
        if state.autoscaler is not None:
            self.autoscaled.add(state.key)
        else:
            self.autoscaled.discard(state.key)
        return state
