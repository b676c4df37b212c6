"""The Scheduler actor: nodes, their resources, placement and gang reservations.

A thin shell around :class:`Cluster` (pure). The controller's deployment
states reach it through :class:`SchedulerClient`, which offers the same
methods as ``Cluster`` and asks the actor for each (bounded waits), so the
decision code stays synchronous and the book of resources has one owner.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from ..._actor import Actor
from ..._ref import ActorRef
from ._gang_placement import Reservation
from ._placement import Cluster, Node

SCHEDULER_NAME = "scheduler"
_ALLOWED = frozenset(
    {
        "add_node",
        "remove_node",
        "place_replica",
        "release",
        "reserve_gang",
        "release_gang",
        "could_ever_fit",
        "could_ever_hold",
        "nodes_snapshot",
        "reservations_snapshot",
        "restore",
    }
)


@dataclasses.dataclass(frozen=True)
class _Call:
    method: str
    args: tuple[Any, ...]


class Scheduler(Actor):
    """Owns the cluster's resource book; answers placement and reservation calls."""

    def __init__(self) -> None:
        super().__init__()
        self.cluster = Cluster()

    def receive(self, message: Any) -> Any:
        if type(message) is not _Call or message.method not in _ALLOWED:
            raise TypeError(f"the scheduler does not handle {message!r}")
        if message.method == "nodes_snapshot":
            return [_copy(node) for node in self.cluster.nodes]
        if message.method == "reservations_snapshot":
            return self.cluster.reservations
        if message.method == "add_node":
            return _copy(self.cluster.add_node(*message.args))
        if message.method == "remove_node":
            node = self.cluster.remove_node(*message.args)
            return None if node is None else _copy(node)
        return getattr(self.cluster, message.method)(*message.args)


def _copy(node: Node) -> Node:
    return Node(node.node_id, node.address, dict(node.total), dict(node.available), node.replicas)


class SchedulerClient:
    """``Cluster``'s interface, answered by the Scheduler actor.

    Args:
        ref: the Scheduler actor.
        timeout_s: the longest one call may take.
    """

    def __init__(self, ref: ActorRef, timeout_s: float) -> None:
        self._ref = ref
        self._timeout = timeout_s

    def _call(self, method: str, *args: Any) -> Any:
        return self._ref.ask(_Call(method, args), timeout=self._timeout).get()

    def add_node(self, node_id: str, address: str, total: Mapping[str, float]) -> Node:
        return self._call("add_node", node_id, address, dict(total))  # type: ignore[no-any-return]

    def remove_node(self, node_id: str) -> Node | None:
        return self._call("remove_node", node_id)  # type: ignore[no-any-return]

    def place_replica(self, request: Mapping[str, float], spread: Mapping[str, int]) -> tuple[str, str] | None:
        return self._call("place_replica", dict(request), dict(spread))  # type: ignore[no-any-return]

    def release(self, node_id: str, request: Mapping[str, float]) -> None:
        self._ref.tell(_Call("release", (node_id, dict(request))))

    def reserve_gang(self, name: str, bundle: Mapping[str, float], size: int, strategy: str) -> Reservation | None:
        return self._call("reserve_gang", name, dict(bundle), size, strategy)  # type: ignore[no-any-return]

    def release_gang(self, reservation: Reservation) -> None:
        self._ref.tell(_Call("release_gang", (reservation,)))

    def could_ever_fit(self, request: Mapping[str, float]) -> bool:
        return bool(self._call("could_ever_fit", dict(request)))

    def could_ever_hold(self, bundle: Mapping[str, float], size: int, strategy: str) -> bool:
        return bool(self._call("could_ever_hold", dict(bundle), size, strategy))

    def restore(self, allocations: list[tuple[str, dict[str, float]]], reservations: list[Reservation]) -> int:
        return int(self._call("restore", allocations, reservations))

    @property
    def nodes(self) -> list[Node]:
        """Copies of the live nodes."""
        return self._call("nodes_snapshot")  # type: ignore[no-any-return]

    @property
    def reservations(self) -> list[Reservation]:
        return self._call("reservations_snapshot")  # type: ignore[no-any-return]
