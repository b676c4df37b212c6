"""Atomic reservations of every gang member's bundle. Pure.

A reservation holds resources for all members of a gang on the nodes chosen
by the strategy, or for none of them: it is tried on a copy of the free
resources and written back only when every bundle found a place.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

_EPSILON = 1e-9


@dataclass(frozen=True)
class Reservation:
    """Resources held for every member of one gang.

    Attributes:
        name: unique name of the reservation.
        nodes: the node of each member, by rank.
        bundle: what each member holds.
        addresses: the address of each member's node, by rank.
    """

    name: str
    nodes: tuple[str, ...]
    bundle: dict[str, float]
    addresses: tuple[str, ...] = ()


def _fits(free: Mapping[str, float], bundle: Mapping[str, float]) -> bool:
    return all(free.get(k, 0.0) + _EPSILON >= v for k, v in bundle.items())


def _take(free: dict[str, float], bundle: Mapping[str, float]) -> None:
    for k, v in bundle.items():
        free[k] = free.get(k, 0.0) - v


def plan_gang(nodes: Sequence[Any], bundle: Mapping[str, float], size: int, strategy: str) -> list[str] | None:
    """Choose a node for each of ``size`` bundles, or None if the strategy cannot be met now.

    Pure: reads the nodes' free resources (``node_id``, ``available``,
    ``replicas`` of each), changes nothing.
    """
    free = {n.node_id: dict(n.available) for n in nodes}
    order = sorted(nodes, key=lambda n: (-sum(n.available.values()), n.replicas, n.node_id))
    chosen: list[str] = []
    if strategy in ("STRICT_PACK", "PACK"):
        for node in order:
            trial = dict(free[node.node_id])
            if all(_fits(trial, bundle) and (_take(trial, bundle) or True) for _ in range(size)):
                return [node.node_id] * size
        if strategy == "STRICT_PACK":
            return None
        for node in order:  # best effort: fill the roomiest nodes first
            while len(chosen) < size and _fits(free[node.node_id], bundle):
                _take(free[node.node_id], bundle)
                chosen.append(node.node_id)
        return chosen if len(chosen) == size else None
    distinct = [n for n in order if _fits(free[n.node_id], bundle)]
    if strategy == "STRICT_SPREAD":
        return [n.node_id for n in distinct[:size]] if len(distinct) >= size else None
    while len(chosen) < size:  # SPREAD: round robin over nodes, best effort
        placed = False
        for node in order:
            if len(chosen) < size and _fits(free[node.node_id], bundle):
                _take(free[node.node_id], bundle)
                chosen.append(node.node_id)
                placed = True
        if not placed:
            return None
    return chosen


def reserve_gang(cluster: Any, name: str, bundle: Mapping[str, float], size: int, strategy: str) -> Reservation | None:
    """Atomically reserve every member's bundle on a :class:`Cluster`, or nothing (returns None)."""
    nodes = plan_gang(cluster.nodes, bundle, size, strategy)
    if nodes is None:
        return None
    addresses = []
    for node_id in nodes:
        cluster.allocate(node_id, bundle)
        addresses.append(cluster.get(node_id).address)
    return Reservation(name, tuple(nodes), dict(bundle), tuple(addresses))


def release_gang(cluster: Any, reservation: Reservation) -> None:
    """Give back every bundle of a reservation (nodes that are gone are skipped)."""
    for node_id in reservation.nodes:
        cluster.release(node_id, reservation.bundle)


def could_ever_hold(cluster: Any, bundle: Mapping[str, float], size: int, strategy: str) -> bool:
    """Whether the live nodes of a :class:`Cluster`, once empty, could hold the gang at all."""
    empty = [dataclasses.replace(n, available=dict(n.total)) for n in cluster.nodes]
    return plan_gang(empty, bundle, size, strategy) is not None
