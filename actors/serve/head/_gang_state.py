"""The gang life cycle of a deployment: reserve, start, join whole, tear down. Pure.

Mixed into :class:`~._deployment_state.DeploymentState`, whose replica
container, counters and command queue it uses; kept apart so each module
reads in one sitting.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from .._gangs import GangSchedulingConfig
from ._commands import Command, ReplicaRecord, StartReplicaCmd
from ._gang_placement import Reservation
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
    """Gang methods of a deployment state (see the module docstring)."""

    gangs: dict[str, Gang]

    def _reconcile_gangs(self, gang: GangSchedulingConfig, target: int, cmds: list[Command], now: float) -> None:
        size = gang.gang_size
        version = self.spec.version
        live = [g for g in self.gangs.values() if not g.torn_down]
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
        live_count = sum(1 for g in self.gangs.values() if not g.torn_down)
        room = target_gangs + 1 - live_count if old else target_gangs - live_count
        wanted = target_gangs - len([g for g in self.gangs.values() if not g.torn_down and g.version == version])
        for _ in range(max(0, min(room, wanted))):
            if not self._start_gang(gang, cmds, now):
                break
        else:
            self._waiting = ""
        cmds.extend(self._queued)
        self._queued = []

    def _start_gang(self, gang: GangSchedulingConfig, cmds: list[Command], now: float) -> bool:
        if self.failed or now < self._failures.retry_at:
            return False
        request = self.config.resource_request()
        gang_id = f"{self.app}.{self.name}.gang-{secrets.token_hex(3)}"
        reservation = self._cluster.reserve_gang(
            f"reservation-{gang_id}", request, gang.gang_size, gang.gang_placement_strategy
        )
        if reservation is None:
            self._waiting = (
                f"waiting for resources: a gang of {gang.gang_size} x {request or 'nothing'} "
                f"({gang.gang_placement_strategy}) fits on no worker now"
            )
            return False
        members = [f"{gang_id}.r{rank}" for rank in range(gang.gang_size)]
        record_of = Gang(gang_id, self.spec.version, reservation, members)
        self.gangs[gang_id] = record_of
        for rank, replica_id in enumerate(members):
            record = ReplicaRecord(
                replica_id=replica_id,
                node_id=reservation.nodes[rank],
                address=reservation.addresses[rank],
                version=self.spec.version,
                request={},
                user_config_version=self._user_config_version,
                gang_id=gang_id,
                rank=rank,
            )
            self._add(record, S.STARTING)
            cmds.append(StartReplicaCmd(record, self.spec, record_of.context(rank)))
        return True

    def _tear_down_gang(self, gang_id: str, why: str, graceful: bool = False, exclude: str | None = None) -> None:
        """Stop every live member of a gang, in whatever state it is (PENDING_MIGRATION included)."""
        gang = self.gangs.get(gang_id)
        if gang is None:
            return
        gang.torn_down = True
        timeout = self.config.graceful_shutdown_timeout_s if graceful else 0.0
        for replica_id in gang.members:
            if replica_id == exclude:
                continue
            state = self.replicas.state_of(replica_id)
            if state is not None and state is not S.STOPPING:
                record = self.replicas.get(replica_id)
                assert record is not None
                self._queued.append(self._stop(record, timeout))
        self._dirty = True
        self._release_if_empty(gang)

    def _release_if_empty(self, gang: Gang) -> None:
        if any(rid in self.replicas for rid in gang.members):
            return
        self._cluster.release_gang(gang.reservation)
        del self.gangs[gang.gang_id]

    def _gang_serving(self, gang: Gang) -> bool:
        return all(self.replicas.state_of(rid) in SERVING for rid in gang.members)

    def _gang_load(self, gang: Gang) -> int:
        return sum(r.ongoing for r in (self.replicas.get(rid) for rid in gang.members) if r is not None)

    def reservations(self) -> list[Reservation]:
        """The gang reservations held now."""
        return [g.reservation for g in self.gangs.values()]

    def gang_of(self, gang_id: str) -> Gang | None:
        return self.gangs.get(gang_id)


