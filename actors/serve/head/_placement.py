"""Nodes, their resources, and where a new replica goes. Pure."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from ._gang_placement import Reservation, could_ever_hold, release_gang, reserve_gang

_EPSILON = 1e-9


@dataclass
class Node:
    """A worker process as the scheduler sees it.

    Attributes:
        node_id: unique id of the worker.
        address: the worker's process address.
        total: resources it declared (``CPU``, ``GPU``, ``memory``, custom names).
        available: what is not reserved by replicas.
        replicas: replicas placed on it.
    """

    node_id: str
    address: str
    total: dict[str, float]
    available: dict[str, float] = field(default_factory=dict)
    replicas: int = 0

    def fits(self, request: Mapping[str, float]) -> bool:
        """Whether ``request`` fits in what is available now."""
        available = self.available
        return all(available.get(name, 0.0) + _EPSILON >= amount for name, amount in request.items())

    def could_ever_fit(self, request: Mapping[str, float]) -> bool:
        """Whether ``request`` fits in the node's total, once it is empty."""
        total = self.total
        return all(total.get(name, 0.0) + _EPSILON >= amount for name, amount in request.items())


class Cluster:
    """The set of live nodes, their free resources, and the gang reservations.

    The control plane owns one; deployment states place replicas and reserve
    gangs through it directly (:meth:`place_replica`, :meth:`release`,
    :meth:`reserve_gang`, :meth:`release_gang`): plain calls, never an ask.
    """

    def __init__(self) -> None:
        self._nodes: dict[str, Node] = {}
        self._reservations: dict[str, Reservation] = {}

    def add_node(self, node_id: str, address: str, total: Mapping[str, float]) -> Node:
        """Add a node with all of its resources free.

        Raises:
            ValueError: a node with this id is already present.
        """
        if node_id in self._nodes:
            raise ValueError(f"node {node_id!r} is already registered")
        node = Node(node_id, address, dict(total), dict(total))
        self._nodes[node_id] = node
        return node

    def remove_node(self, node_id: str) -> Node | None:
        """Forget a node; returns it, or None if unknown."""
        return self._nodes.pop(node_id, None)

    def get(self, node_id: str) -> Node | None:
        """The node with this id, or None."""
        return self._nodes.get(node_id)

    @property
    def nodes(self) -> list[Node]:
        """Every live node, in registration order."""
        return list(self._nodes.values())

    def place(self, request: Mapping[str, float], spread: Mapping[str, int]) -> str | None:
        """Choose a node for one replica: among those it fits on, the one with
        the fewest replicas of the same deployment (``spread``), then the
        fewest replicas overall. Returns None when it fits nowhere now."""
        best: Node | None = None
        best_key: tuple[int, int] | None = None
        for node in self._nodes.values():
            if not node.fits(request):
                continue
            key = (spread.get(node.node_id, 0), node.replicas)
            if best_key is None or key < best_key:
                best, best_key = node, key
        return None if best is None else best.node_id

    def could_ever_fit(self, request: Mapping[str, float]) -> bool:
        """Whether some live node could hold ``request`` once empty."""
        return any(node.could_ever_fit(request) for node in self._nodes.values())

    def place_replica(self, request: Mapping[str, float], spread: Mapping[str, int]) -> tuple[str, str] | None:
        """Choose a node (see :meth:`place`) and reserve ``request`` on it in one step.

        Returns:
            ``(node_id, address)``, or None when it fits nowhere now.
        """
        node_id = self.place(request, spread)
        if node_id is None:
            return None
        self.allocate(node_id, request)
        return node_id, self._nodes[node_id].address

    def reserve_gang(self, name: str, bundle: Mapping[str, float], size: int, strategy: str) -> Reservation | None:
        """Atomically reserve a bundle for every member of a gang, or nothing."""
        reservation = reserve_gang(self, name, bundle, size, strategy)
        if reservation is not None:
            self._reservations[name] = reservation
        return reservation

    def release_gang(self, reservation: Reservation) -> None:
        """Give back every bundle of a reservation."""
        if self._reservations.pop(reservation.name, None) is not None:
            release_gang(self, reservation)

    def could_ever_hold(self, bundle: Mapping[str, float], size: int, strategy: str) -> bool:
        """Whether the live nodes, once empty, could hold such a gang."""
        return could_ever_hold(self, bundle, size, strategy)

    @property
    def reservations(self) -> list[Reservation]:
        """The gang reservations held now."""
        return list(self._reservations.values())

    def restore(self, allocations: list[tuple[str, dict[str, float]]], reservations: list[Reservation]) -> int:
        """Re-enter what a checkpoint says is held: each replica's request on
        its node, and the gang reservations with their bundles.

        Returns:
            how many entries were skipped because their node is unknown.
        """
        skipped = 0
        for node_id, request in allocations:
            if node_id in self._nodes:
                self.allocate(node_id, request)
            else:
                skipped += 1
        for reservation in reservations:
            if reservation.name in self._reservations:
                continue
            self._reservations[reservation.name] = reservation
            for node_id in reservation.nodes:
                if node_id in self._nodes:
                    self.allocate(node_id, reservation.bundle)
                else:
                    skipped += 1
        return skipped

    def allocate(self, node_id: str, request: Mapping[str, float]) -> None:
        """Reserve ``request`` on a node (it must fit)."""
        node = self._nodes[node_id]
        for name, amount in request.items():
            node.available[name] = node.available.get(name, 0.0) - amount
        node.replicas += 1

    def release(self, node_id: str, request: Mapping[str, float]) -> None:
        """Give back what :meth:`allocate` reserved; unknown nodes are ignored."""
        node = self._nodes.get(node_id)
        if node is None:
            return
        for name, amount in request.items():
            node.available[name] = min(node.total.get(name, 0.0), node.available.get(name, 0.0) + amount)
        node.replicas = max(0, node.replicas - 1)
