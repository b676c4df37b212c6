"""Gang scheduling: options, and atomic reservations of every member's bundle. Pure.

A reservation holds resources for all members of a gang on the nodes chosen
by the strategy, or for none of them: it is tried on a copy of the free
resources and written back only when every bundle found a place.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from ._placement import Cluster, Node

STRATEGIES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")
POLICIES = ("RESTART_GANG",)
_EPSILON = 1e-9


class GangConfigError(ValueError):
    """A gang scheduling option is wrong; the message names it."""


@dataclass(frozen=True)
class GangSchedulingConfig:
    """How a deployment's replicas form gangs that live and die as one.

    Attributes:
        gang_size: members per gang; ``num_replicas`` must be a multiple of it.
        gang_placement_strategy: PACK (fewest nodes, best effort), SPREAD
            (distinct nodes, best effort), STRICT_PACK (one node) or
            STRICT_SPREAD (distinct nodes required).
        runtime_failure_policy: what a member's failure does to its gang:
            RESTART_GANG (tear the whole gang down and start it again).
    """

    gang_size: int = 1
    gang_placement_strategy: str = "PACK"
    runtime_failure_policy: str = "RESTART_GANG"

    def __post_init__(self) -> None:
        if isinstance(self.gang_size, bool) or not isinstance(self.gang_size, int) or self.gang_size < 1:
            raise GangConfigError(f"gang_scheduling_config.gang_size: expected an int >= 1, got {self.gang_size!r}")
        if self.gang_placement_strategy not in STRATEGIES:
            raise GangConfigError(
                f"gang_scheduling_config.gang_placement_strategy: expected one of {', '.join(STRATEGIES)}, "
                f"got {self.gang_placement_strategy!r}"
            )
        if self.runtime_failure_policy not in POLICIES:
            raise GangConfigError(
                f"gang_scheduling_config.runtime_failure_policy: {self.runtime_failure_policy!r} is not "
                f"implemented; the only policy is RESTART_GANG"
            )

    @classmethod
    def from_value(cls, value: Any) -> GangSchedulingConfig | None:
        """Build from a dict (unknown fields refused), an instance, or None."""
        if value is None or isinstance(value, GangSchedulingConfig):
            return value
        if not isinstance(value, dict):
            raise GangConfigError(f"gang_scheduling_config: expected a GangSchedulingConfig or a dict, got {value!r}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(value) - known
        if unknown:
            raise GangConfigError(f"gang_scheduling_config: unknown fields {sorted(unknown)}; known: {sorted(known)}")
        return cls(**value)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


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


def plan_gang(nodes: list[Node], bundle: Mapping[str, float], size: int, strategy: str) -> list[str] | None:
    """Choose a node for each of ``size`` bundles, or None if the strategy cannot be met now.

    Pure: reads the nodes' free resources, changes nothing.
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


def reserve_gang(cluster: Cluster, name: str, bundle: Mapping[str, float], size: int, strategy: str) -> Reservation | None:
    """Atomically reserve every member's bundle, or nothing (returns None)."""
    nodes = plan_gang(cluster.nodes, bundle, size, strategy)
    if nodes is None:
        return None
    addresses = []
    for node_id in nodes:
        cluster.allocate(node_id, bundle)
        addresses.append(cluster.get(node_id).address)  # type: ignore[union-attr]
    return Reservation(name, tuple(nodes), dict(bundle), tuple(addresses))


def release_gang(cluster: Cluster, reservation: Reservation) -> None:
    """Give back every bundle of a reservation (nodes that are gone are skipped)."""
    for node_id in reservation.nodes:
        cluster.release(node_id, reservation.bundle)


def could_ever_hold(cluster: Cluster, bundle: Mapping[str, float], size: int, strategy: str) -> bool:
    """Whether the live nodes, once empty, could hold the gang at all."""
    empty = [Node(n.node_id, n.address, dict(n.total), dict(n.total)) for n in cluster.nodes]
    return plan_gang(empty, bundle, size, strategy) is not None
