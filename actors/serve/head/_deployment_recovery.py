"""A deployment's state to and from a checkpoint, and re-adoption after a restart. Pure.

Composed into :class:`~._deployment_state.DeploymentState`. A restored replica
waits in RECOVERING until its worker says what runs there:
:meth:`DeploymentRecovery.recover_node` then re-adopts the live ones without
restarting them (RUNNING), drops the dead ones (the next reconcile replaces
them), and finishes what was under way (a stop is asked again; a start is
asked again and the worker answers from the replica it already has).
"""

from __future__ import annotations

from collections.abc import Set
from typing import Any

from protocol import (
    CheckpointDeployment,
    CheckpointGang,
    CheckpointReplica,
    CheckpointReservation,
    encode_fields,
)

from ._commands import ReplicaRecord, StartReplicaCmd
from ._gang_placement import Reservation
from ._gang_state import Gang
from ._replica_states import ReplicaState

S = ReplicaState
_SERVING_BEFORE = (S.RUNNING.value, S.UPDATING.value)


def reservation_record(reservation: Reservation) -> CheckpointReservation:
    """A reservation as the checkpoint stores it."""
    return CheckpointReservation(reservation.name, list(reservation.nodes), dict(reservation.bundle), list(reservation.addresses))


def reservation_from(record: CheckpointReservation) -> Reservation:
    """A reservation back from the checkpoint."""
    return Reservation(record.name, tuple(record.nodes), dict(record.bundle), tuple(record.addresses))


class DeploymentRecovery:
    """A deployment's checkpoint entry and its recovery after a controller restart (composed into DeploymentState)."""

    def __init__(self, state: Any) -> None:
        self.state = state



    def checkpoint(self) -> CheckpointDeployment:
        """This deployment's desired state and replicas, for the checkpoint."""
        replicas = [
            CheckpointReplica(
                rid, r.node_id, r.address, r.version, dict(r.request), r.user_config_version,
                r.recovered_from if state is S.RECOVERING else state.value, r.gang_id, r.rank, r.pid,
            )
            for rid, state, r in self.state.replicas.items()
        ]
        gangs = [
            CheckpointGang(g.gang_id, g.version, list(g.members), sorted(g.ready), g.torn_down, reservation_record(g.reservation))
            for g in self.state.gangs.values()
        ]
        failures = self.state._failures
        return CheckpointDeployment(
            encode_fields(self.state.spec), self.state.config.to_dict(), self.state.deleting, self.state._user_config_version,
            self.state.membership_version, failures.count, failures.last_error, sorted(failures.ever_ran), replicas, gangs,
        )

    def restore(self, entry: CheckpointDeployment) -> None:
        """Take back a checkpoint's replicas (all RECOVERING) and gangs.

        The cluster's resource book is restored separately, in one go.
        """
        self.state.deleting = entry.deleting
        self.state._user_config_version = entry.user_config_version
        self.state.membership_version = entry.membership_version
        self.state._failures.count = entry.failed_starts
        self.state._failures.last_error = entry.last_error
        self.state._failures.ever_ran = set(entry.ever_ran)
        for g in entry.gangs:
            self.state.gangs[g.gang_id] = Gang(
                g.gang_id, g.version, reservation_from(g.reservation), list(g.members), set(g.ready), g.torn_down
            )
        for r in entry.replicas:
            record = ReplicaRecord(
                r.replica_id, r.node_id, r.address, r.version, dict(r.request), r.user_config_version,
                gang_id=r.gang_id, rank=r.rank, recovered_from=r.state, pid=r.pid,
            )
            self.state._add(record, S.RECOVERING)  # type: ignore[attr-defined]
        self.state._dirty = True

    @property
    def recovering(self) -> int:
        """How many replicas wait for their worker to say whether they live. O(1)."""
        return int(self.state.replicas.count([S.RECOVERING]))

    def recovering_on(self, node_id: str) -> list[str]:
        """Ids of the replicas on a node that still wait for it."""
        return [rid for rid, r in self.state.replicas.in_state(S.RECOVERING) if r.node_id == node_id]

    def recover_node(self, node_id: str, running: Set[str], starting: Set[str], now: float) -> int:
        """A worker said which replicas it runs (constructor done) and starts.

        Re-adopts, drops or resumes each of this deployment's replicas on it
        that is RECOVERING; commands to carry out are queued
        (:meth:`take_queued`).

        Returns:
            how many replicas were re-adopted as RUNNING without a restart.
        """
        adopted = 0
        for rid in self.recovering_on(node_id):
            record = self.state.replicas.get(rid)
            before = record.recovered_from
            if rid not in running and rid not in starting:
                self.state.on_died(rid, "it was not running on its worker when the controller came back")  # type: ignore[attr-defined]
            elif before == S.STOPPING.value:
                self.state._queued.append(self.state._stop(record, 0.0))  # type: ignore[attr-defined]
            elif rid in running and (before in _SERVING_BEFORE or before == S.STARTING.value):
                self._adopt(record, now)
                adopted += 1
            else:
                self.state._move(record, S.STARTING)  # type: ignore[attr-defined]
                gang = self.state.gangs.get(record.gang_id) if record.gang_id is not None else None
                context = gang.context(record.rank) if gang is not None else None
                self.state._queued.append(StartReplicaCmd(record, self.state.spec, context))
        self.state.membership_version += 1  # dropped replicas leave the routable set
        self.state.revision += 1
        self.state._dirty = True
        return adopted

    def _adopt(self, record: ReplicaRecord, now: float) -> None:
        record.recovered_from = ""
        self.state._move(record, S.RUNNING)  # type: ignore[attr-defined]
        self.state._failures.ever_ran.add(record.version)
        if record.gang_id is not None and record.gang_id in self.state.gangs:
            self.state.gangs[record.gang_id].ready.add(record.replica_id)
        self.state._schedule_health(record, now)  # type: ignore[attr-defined]
        if record.user_config_version != self.state._user_config_version:
            self.state._to_reconfigure.add(record.replica_id)

    def routable_while_recovering(self) -> list[ReplicaRecord]:
        """RECOVERING replicas that served before the restart: handles keep them."""
        return [r for _, r in self.state.replicas.in_state(S.RECOVERING) if r.recovered_from in _SERVING_BEFORE]


__all__ = ["DeploymentRecovery", "reservation_from", "reservation_record"]
