"""A deployment's state to and from a checkpoint, and re-adoption after a restart. Pure.

Mixed into :class:`~._deployment_state.DeploymentState`. A restored replica
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
    DeploymentSpec,
    encode_fields,
)

from ._commands import Command, ReplicaRecord, StartReplicaCmd
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
    """Checkpoint and recovery methods of a deployment state (see the module docstring)."""

    replicas: Any
    gangs: dict[str, Gang]
    spec: DeploymentSpec
    config: Any
    deleting: bool
    membership_version: int
    revision: int
    _failures: Any
    _user_config_version: int
    _queued: list[Command]
    _to_reconfigure: set[str]
    _dirty: bool

    def checkpoint(self) -> CheckpointDeployment:
        """This deployment's desired state and replicas, for the checkpoint."""
        replicas = [
            CheckpointReplica(
                rid, r.node_id, r.address, r.version, dict(r.request), r.user_config_version,
                r.recovered_from if state is S.RECOVERING else state.value, r.gang_id, r.rank,
            )
            for rid, state, r in self.replicas.items()
        ]
        gangs = [
            CheckpointGang(g.gang_id, g.version, list(g.members), sorted(g.ready), g.torn_down, reservation_record(g.reservation))
            for g in self.gangs.values()
        ]
        failures = self._failures
        return CheckpointDeployment(
            encode_fields(self.spec), self.config.to_dict(), self.deleting, self._user_config_version,
            self.membership_version, failures.count, failures.last_error, sorted(failures.ever_ran), replicas, gangs,
        )

    def restore(self, entry: CheckpointDeployment) -> None:
        """Take back a checkpoint's replicas (all RECOVERING) and gangs.

        The cluster's resource book is restored separately, in one go.
        """
        self.deleting = entry.deleting
        self._user_config_version = entry.user_config_version
        self.membership_version = entry.membership_version
        self._failures.count = entry.failed_starts
        self._failures.last_error = entry.last_error
        self._failures.ever_ran = set(entry.ever_ran)
        for g in entry.gangs:
            self.gangs[g.gang_id] = Gang(
                g.gang_id, g.version, reservation_from(g.reservation), list(g.members), set(g.ready), g.torn_down
            )
        for r in entry.replicas:
            record = ReplicaRecord(
                r.replica_id, r.node_id, r.address, r.version, dict(r.request), r.user_config_version,
                gang_id=r.gang_id, rank=r.rank, recovered_from=r.state,
            )
            self._add(record, S.RECOVERING)  # type: ignore[attr-defined]
        self._dirty = True

    @property
    def recovering(self) -> int:
        """How many replicas wait for their worker to say whether they live. O(1)."""
        return int(self.replicas.count([S.RECOVERING]))

    def recovering_on(self, node_id: str) -> list[str]:
        """Ids of the replicas on a node that still wait for it."""
        return [rid for rid, r in self.replicas.in_state(S.RECOVERING) if r.node_id == node_id]

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
            record = self.replicas.get(rid)
            before = record.recovered_from
            if rid not in running and rid not in starting:
                self.on_died(rid, "it was not running on its worker when the controller came back")  # type: ignore[attr-defined]
            elif before == S.STOPPING.value:
                self._queued.append(self._stop(record, 0.0))  # type: ignore[attr-defined]
            elif rid in running and (before in _SERVING_BEFORE or before == S.STARTING.value):
                self._adopt(record, now)
                adopted += 1
            else:
                self._move(record, S.STARTING)  # type: ignore[attr-defined]
                gang = self.gangs.get(record.gang_id) if record.gang_id is not None else None
                context = gang.context(record.rank) if gang is not None else None
                self._queued.append(StartReplicaCmd(record, self.spec, context))
        self.membership_version += 1  # dropped replicas leave the routable set
        self.revision += 1
        self._dirty = True
        return adopted

    def _adopt(self, record: ReplicaRecord, now: float) -> None:
        record.recovered_from = ""
        self._move(record, S.RUNNING)  # type: ignore[attr-defined]
        self._failures.ever_ran.add(record.version)
        if record.gang_id is not None and record.gang_id in self.gangs:
            self.gangs[record.gang_id].ready.add(record.replica_id)
        self._schedule_health(record, now)  # type: ignore[attr-defined]
        if record.user_config_version != self._user_config_version:
            self._to_reconfigure.add(record.replica_id)

    def routable_while_recovering(self) -> list[ReplicaRecord]:
        """RECOVERING replicas that served before the restart: handles keep them."""
        return [r for _, r in self.replicas.in_state(S.RECOVERING) if r.recovered_from in _SERVING_BEFORE]


__all__ = ["DeploymentRecovery", "reservation_from", "reservation_record"]
