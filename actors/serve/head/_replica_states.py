"""Replicas grouped by state, with an index from replica id to its state.

Pure. Removing k replicas by id costs O(k) whatever the total N: each id is
found through the index, deleted from its state's dict, and nothing else is
touched or rebuilt (seed 000's follow-up).
"""

from __future__ import annotations

import enum
from typing import Generic, Iterable, Iterator, TypeVar

R = TypeVar("R")


class ReplicaState(str, enum.Enum):
    """Life-cycle states of a replica, as the controller tracks them."""

    STARTING = "STARTING"
    UPDATING = "UPDATING"
    RECOVERING = "RECOVERING"
    RUNNING = "RUNNING"
    STOPPING = "STOPPING"
    PENDING_MIGRATION = "PENDING_MIGRATION"


ALL_STATES: tuple[ReplicaState, ...] = tuple(ReplicaState)
LIVE_STATES: tuple[ReplicaState, ...] = tuple(s for s in ReplicaState if s is not ReplicaState.STOPPING)


class ReplicaStateContainer(Generic[R]):
    """Replica records keyed by id, grouped by state, in insertion order within a state."""

    __slots__ = ("_by_state", "_state_of")

    def __init__(self) -> None:
        self._by_state: dict[ReplicaState, dict[str, R]] = {s: {} for s in ALL_STATES}
        self._state_of: dict[str, ReplicaState] = {}

    def add(self, state: ReplicaState, replica_id: str, replica: R) -> None:
        """Add a replica in a state.

        Raises:
            ValueError: the id is already present.
        """
        if replica_id in self._state_of:
            raise ValueError(f"replica {replica_id!r} is already tracked (in {self._state_of[replica_id].value})")
        self._by_state[state][replica_id] = replica
        self._state_of[replica_id] = state

    def get(self, replica_id: str) -> R | None:
        """The replica with this id, or None."""
        state = self._state_of.get(replica_id)
        return None if state is None else self._by_state[state][replica_id]

    def state_of(self, replica_id: str) -> ReplicaState | None:
        """The state of this replica, or None if it is not tracked."""
        return self._state_of.get(replica_id)

    def move(self, replica_id: str, state: ReplicaState) -> R:
        """Move a replica to another state (to the end of that state's order).

        Raises:
            KeyError: the id is not tracked.
        """
        old = self._state_of[replica_id]
        replica = self._by_state[old].pop(replica_id)
        self._by_state[state][replica_id] = replica
        self._state_of[replica_id] = state
        return replica

    def remove(self, replica_ids: Iterable[str]) -> list[tuple[str, ReplicaState, R]]:
        """Remove replicas by id in O(k); unknown ids are skipped.

        Returns:
            ``(id, state it was in, replica)`` for each removed replica.
        """
        removed = []
        state_of = self._state_of
        by_state = self._by_state
        for replica_id in replica_ids:
            state = state_of.pop(replica_id, None)
            if state is not None:
                removed.append((replica_id, state, by_state[state].pop(replica_id)))
        return removed

    def pop(
        self, states: Iterable[ReplicaState] | None = None, max_replicas: int | None = None
    ) -> list[tuple[str, ReplicaState, R]]:
        """Remove and return up to ``max_replicas``, taking states in the given order.

        Costs O(number popped).
        """
        out: list[tuple[str, ReplicaState, R]] = []
        limit = len(self._state_of) if max_replicas is None else max_replicas
        for state in ALL_STATES if states is None else states:
            bucket = self._by_state[state]
            while bucket and len(out) < limit:
                replica_id = next(iter(bucket))
                out.append((replica_id, state, bucket.pop(replica_id)))
                del self._state_of[replica_id]
            if len(out) >= limit:
                break
        return out

    def count(self, states: Iterable[ReplicaState] | None = None) -> int:
        """How many replicas are in the given states (all if None). O(number of states)."""
        if states is None:
            return len(self._state_of)
        return sum(len(self._by_state[s]) for s in states)

    def counts(self) -> dict[str, int]:
        """Replica counts by state name, omitting empty states."""
        return {s.value: len(b) for s, b in self._by_state.items() if b}

    def ids(self, states: Iterable[ReplicaState] | None = None) -> list[str]:
        """Ids in the given states, states in the given order."""
        return [rid for _, rid, _ in self._iter(states)]

    def items(self, states: Iterable[ReplicaState] | None = None) -> list[tuple[str, ReplicaState, R]]:
        """``(id, state, replica)`` in the given states (a snapshot list)."""
        return [(rid, state, rep) for state, rid, rep in self._iter(states)]

    def in_state(self, state: ReplicaState) -> Iterator[tuple[str, R]]:
        """Iterate ``(id, replica)`` of one state; do not modify the container meanwhile."""
        return iter(self._by_state[state].items())

    def _iter(self, states: Iterable[ReplicaState] | None) -> Iterator[tuple[ReplicaState, str, R]]:
        for state in ALL_STATES if states is None else states:
            for rid, rep in self._by_state[state].items():
                yield state, rid, rep

    def __len__(self) -> int:
        return len(self._state_of)

    def __contains__(self, replica_id: object) -> bool:
        return replica_id in self._state_of
