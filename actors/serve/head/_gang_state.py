"""The gang life cycle of a deployment: reserve, start, join whole, tear down. Pure.

Composed into :class:`~._deployment_state.DeploymentState`, whose replica
container, counters and command queue it uses; kept apart so each module
reads in one sitting.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .._gangs import GangSchedulingConfig
from ._commands import Command, ReplicaRecord, StartReplicaCmd
from ._gang_placement import Reservation
from ._ids import fresh_id
from ._replica_states import ReplicaState

S = ReplicaState
SERVING = (S.RUNNING, S.UPDATING)


@dataclass
class Gang:
    """Members that start, serve and stop together, and what they hold."""

    gang_id: str
    version: str
    reservation: Reservation
    members: list[str]
    ready: set[str] = field(default_factory=set)
    torn_down: bool = False

    def context(self, rank: int) -> dict[str, Any]:
        return {
            "gang_id": self.gang_id,
            "rank": rank,
            "world_size": len(self.members),
            "member_replica_ids": list(self.members),
            "reservation_name": self.reservation.name,
        }


class GangLifecycle:
    """A deployment's gangs: starting, tearing down and releasing them whole (composed into DeploymentState, whose replicas and commands it uses)."""

    def __init__(self, state: Any) -> None:
        self.state = state



    def _reconcile_gangs(self, gang: GangSchedulingConfig, target: int, cmds: list[Command], now: float) -> None:
        size = gang.gang_size
        version = self.state.spec.version
        live = [g for g in self.state.gangs.values() if not g.torn_down]
        new = [g for g in live if g.version == version]
        old = [g for g in live if g.version != version]
        target_gangs = target // size
        for g in old:
            if not self._gang_serving(g):
                self._tear_down_gang(g.gang_id, "replaced by a new version", graceful=False)
        old_serving = [g for g in old if self._gang_serving(g)]
        new_serving = [g for g in new if self._gang_serving(g)]
        excess = len(new_serving) + len(old_serving) - target_gangs if old else len(new) - target_gangs
        pool = old_serving if old else sorted(new, key=lambda g: (self._gang_serving(g), self._gang_load(g)))
        for g in pool[: max(0, excess)]:
            self._tear_down_gang(g.gang_id, "scaled down" if not old else "replaced by a new version", graceful=True)
        live_count = sum(1 for g in self.state.gangs.values() if not g.torn_down)
        room = target_gangs + 1 - live_count if old else target_gangs - live_count
        wanted = target_gangs - len([g for g in self.state.gangs.values() if not g.torn_down and g.version == version])
        for _ in range(max(0, min(room, wanted))):
            if not self._start_gang(gang, cmds, now):
                break
        else:
            self.state._waiting = ""
        cmds.extend(self.state._queued)
        self.state._queued = []

    def _start_gang(self, gang: GangSchedulingConfig, cmds: list[Command], now: float) -> bool:
        if self.state.failed or now < self.state._failures.retry_at:
            return False
        request = self.state.config.resource_request()
        gang_id = fresh_id(f"{self.state.app}.{self.state.name}.gang-", self.state.gangs.__contains__)
        reservation = self.state._cluster.reserve_gang(
            f"reservation-{gang_id}", request, gang.gang_size, gang.gang_placement_strategy
        )
        if reservation is None:
            self.state._waiting = (
                f"waiting for resources: a gang of {gang.gang_size} x {request or 'nothing'} "
                f"({gang.gang_placement_strategy}) fits on no worker now"
            )
            return False
        members = [f"{gang_id}.r{rank}" for rank in range(gang.gang_size)]
        record_of = Gang(gang_id, self.state.spec.version, reservation, members)
        self.state.gangs[gang_id] = record_of
        for rank, replica_id in enumerate(members):
            record = ReplicaRecord(
                replica_id=replica_id,
                node_id=reservation.nodes[rank],
                address=reservation.addresses[rank],
                version=self.state.spec.version,
                request={},
                user_config_version=self.state._user_config_version,
                gang_id=gang_id,
                rank=rank,
                created_at=now,
            )
            self.state._add(record, S.STARTING)
            cmds.append(StartReplicaCmd(record, self.state.spec, record_of.context(rank)))
        return True

    def _tear_down_gang(self, gang_id: str, why: str, graceful: bool = False, exclude: str | None = None) -> None:
        """Stop every live member of a gang, in whatever state it is (PENDING_MIGRATION included)."""
        gang = self.state.gangs.get(gang_id)
        if gang is None:
            return
        gang.torn_down = True
        timeout = self.state.config.graceful_shutdown_timeout_s if graceful else 0.0
        for replica_id in gang.members:
            if replica_id == exclude:
                continue
            state = self.state.replicas.state_of(replica_id)
            if state is not None and state is not S.STOPPING:
                record = self.state.replicas.get(replica_id)
                assert record is not None
                self.state._queued.append(self.state._stop(record, timeout))
        self.state._dirty = True
        self._release_if_empty(gang)

    def _release_if_empty(self, gang: Gang) -> None:
        if any(rid in self.state.replicas for rid in gang.members):
            return
        self.state._cluster.release_gang(gang.reservation)
        del self.state.gangs[gang.gang_id]

    def _gang_serving(self, gang: Gang) -> bool:
        return all(self.state.replicas.state_of(rid) in SERVING for rid in gang.members)

    def _gang_load(self, gang: Gang) -> int:
        return sum(r.ongoing for r in (self.state.replicas.get(rid) for rid in gang.members) if r is not None)

    def reservations(self) -> list[Reservation]:
        """The gang reservations held now."""
        return [g.reservation for g in self.state.gangs.values()]

    def gang_of(self, gang_id: str) -> Gang | None:
        return self.state.gangs.get(gang_id)


