"""One deployment's replicas and what to do next. Pure: no I/O, no threads.

The control plane feeds it events through :meth:`DeploymentState.handle` (a
tick, a replica started, failed, stopped, died, a health check or reconfigure
result, a worker lost or recovered), which returns every command to carry
out: the one way commands leave. The ``on_*`` methods, :meth:`reconcile` and
:meth:`take_queued` underneath stay public for the unit tests. In steady
state a tick costs O(health checks due), not O(replicas).
"""

from __future__ import annotations

import heapq
import zlib
from collections import Counter
from typing import AbstractSet as Set
from typing import Any

from protocol import CheckpointDeployment, DeploymentSpec

from .._options import DeploymentConfig
from . import _events as ev
from ._agenda import Agenda
from ._commands import Command, Failures, Limits, ReplicaRecord, StopReplicaCmd, make_limits
from ._deployment_recovery import DeploymentRecovery
from ._deployment_status import deployment_status
from ._gang_state import Gang, GangLifecycle
from ._gang_placement import Reservation
from ._placement import Cluster
from ._reconcile import Reconciler
from ._replica_states import LIVE_STATES, ReplicaState, ReplicaStateContainer

__all__ = ["DeploymentState", "make_limits"]

S = ReplicaState
SERVING = (S.RUNNING, S.UPDATING)
# Downscaling stops replicas that do not serve yet first, then the least loaded.
_STOP_ORDER = (S.STARTING, S.PENDING_MIGRATION, S.RECOVERING, S.UPDATING)
_RECOVERING = (S.RECOVERING,)


class DeploymentState:
    """Target and actual replicas of one deployment.

    Args:
        spec: what to run (import path, arguments, version).
        config: the validated options.
        cluster: the shared node and resource book (placement happens here).
        limits: retry and health thresholds from ``ServeSettings``.
    """

    def __init__(self, spec: DeploymentSpec, config: DeploymentConfig, cluster: Cluster, limits: Limits) -> None:
        self.app = spec.app
        self.name = spec.name
        self.replicas: ReplicaStateContainer[ReplicaRecord] = ReplicaStateContainer()
        self.membership_version = 0
        self.revision = 0  # grows with every change a checkpoint must record
        self.deleting = False
        self._cluster = cluster
        self._limits = limits
        self._live_by_version: Counter[str] = Counter()
        self._serving_by_version: Counter[str] = Counter()
        self._per_node: Counter[str] = Counter()
        self._health_heap: list[tuple[float, str]] = []
        self._to_reconfigure: set[str] = set()
        self._load_probe: float | None = None  # while a downscale asks running replicas their load: until when
        self._failures = Failures()
        self._transition: str | None = "deploy"
        self._previous_target = 0
        self._note = ""
        self._waiting = ""
        self._user_config_version = 0
        self.spec = spec
        self.config = config
        self.autoscaler: Any = None  # an AutoscalingDecider, set by the controller
        self.last_load = 0.0
        self.gangs: dict[str, Gang] = {}
        self._queued: list[Command] = []
        self.next_autoscale = 0.0
        self.agenda: Agenda | None = None  # the control plane's: told when this changes or a check falls due
        self._is_dirty = True
        self.adopted_total = 0  # replicas re-adopted after controller restarts
        self._gangs = GangLifecycle(self)
        self._reconciler = Reconciler(self)
        self._recovery = DeploymentRecovery(self)

    # ---- gangs and recovery (composed helpers) ----------------------------------------

    def reservations(self) -> list[Reservation]:
        """The reservations this deployment's gangs hold."""
        return self._gangs.reservations()

    def gang_of(self, gang_id: str) -> Gang | None:
        """A gang by id."""
        return self._gangs.gang_of(gang_id)

    def checkpoint(self) -> CheckpointDeployment:
        """This deployment's checkpoint entry."""
        return self._recovery.checkpoint()

    def restore(self, entry: CheckpointDeployment) -> None:
        """Take back a checkpoint entry: every replica waits in RECOVERING."""
        self._recovery.restore(entry)

    def recovering(self) -> int:
        """How many replicas wait to be recovered."""
        return self._recovery.recovering()

    def recovering_on(self, node_id: str) -> list[str]:
        """The replicas that wait for one worker's answer."""
        return self._recovery.recovering_on(node_id)

    def recover_node(self, node_id: str, running: Set[str], starting: Set[str], now: float) -> int:
        """A worker said what it runs; returns how many replicas were re-adopted."""
        return self._recovery.recover_node(node_id, running, starting, now)

    # ---- target ---------------------------------------------------------------------

    def handle(self, event: Any, now: float) -> list[Command]:
        """Apply one of the control plane's events (a tick, a replica's answer or
        death, a worker lost or recovered) and return every command it produced:
        the one way commands leave a deployment's state for the control plane.

        Raises:
            TypeError: an event this state does not take.
        """
        kind = type(event)
        if kind is ev.Tick:
            return self.reconcile(now)
        if kind is ev.StartReplied:
            if event.error is None:
                record = self.replicas.get(event.replica_id)
                if record is not None:
                    record.started_at(event.value)
                self.on_started(event.replica_id, now)
            else:
                self.on_start_failed(event.replica_id, event.error, now)
        elif kind is ev.GangStarted:
            for rid in event.members:
                record = self.replicas.get(rid)
                if record is not None:
                    record.started_at(event.answers.get(rid))
            for rid in event.members:
                self.on_started(rid, now)
        elif kind is ev.StopReplied:
            self.on_stopped(event.replica_id)
        elif kind is ev.HealthReplied:
            value, record = event.value if isinstance(event.value, dict) else {}, self.replicas.get(event.replica_id)
            if record is not None and event.error is None and record.hold_models(value.get("models")):
                self.membership_version += 1  # routers learn which replica holds which model
            stop = self.on_health(event.replica_id, event.error is None, value.get("ongoing", 0), event.error or "", now)
            return [stop, *self.take_queued()] if stop is not None else self.take_queued()
        elif kind is ev.Reconfigured:
            stop = self.on_reconfigured(event.replica_id, event.version, event.error)
            return [stop, *self.take_queued()] if stop is not None else self.take_queued()
        elif kind is ev.ReplicaDied:
            self.on_died(event.replica_id, event.reason)
        elif kind is ev.NodeDied:
            self.on_node_lost(event.node_id, event.reason)
            return []  # its replacements start on the next tick
        elif kind is ev.NodeRecovered:
            self.adopted_total += self.recover_node(event.node_id, event.running, event.starting, now)
        else:
            raise TypeError(f"a deployment state does not take {kind.__name__} events")
        return self.take_queued()

    def take_queued(self) -> list[Command]:
        """Commands an event queued (a gang's siblings to stop), to carry out now."""
        queued, self._queued = self._queued, []
        return queued

    @property
    def key(self) -> tuple[str, str]:
        """``(app, deployment)``."""
        return (self.app, self.name)

    @property
    def _dirty(self) -> bool:
        return self._is_dirty

    @_dirty.setter
    def _dirty(self, value: bool) -> None:
        self._is_dirty = value
        if value and self.agenda is not None:
            self.agenda.dirty.add((self.app, self.name))

    def mark_dirty(self) -> None:
        """Something outside changed (e.g. a worker joined): look again."""
        self._dirty = True

    def needs_reconcile(self, now: float) -> bool:
        """Whether :meth:`reconcile` has anything to do now (O(1)): something
        changed since it last converged, or a health check is due. Nothing is
        decided while replicas wait to be recovered."""
        if self.replicas.count(_RECOVERING):
            return False
        return self._dirty or (bool(self._health_heap) and self._health_heap[0][0] <= now)

    def set_target(self, spec: DeploymentSpec, config: DeploymentConfig) -> None:
        """Adopt a new target: a new version rolls, a user_config change reconfigures,
        a replica count change scales."""
        was_failed = self.failed
        self._dirty = True
        self.revision += 1
        old_target = self.config.num_replicas
        code_changed = spec.version != self.spec.version
        if code_changed:
            self._failures = Failures()
            self._transition = "deploy"
        elif config.user_config != self.config.user_config:
            self._user_config_version += 1
            self._to_reconfigure = set(self.replicas.ids(SERVING))
            self._transition = "deploy"
        if not code_changed and config.num_replicas != old_target:
            self._transition = "up" if config.num_replicas > old_target else "down"
            self._previous_target = old_target
        if self._failures.count and not code_changed and config != self.config:
            self._failures = Failures(ever_ran=self._failures.ever_ran)
        routing = (self.config.max_ongoing_requests, self.config.max_queued_requests, self.config.serializer)
        self.spec = spec
        self.config = config
        if self.failed != was_failed or routing != (config.max_ongoing_requests, config.max_queued_requests, config.serializer):
            self.membership_version += 1  # handles learn it: requests may wait again, or the routing limits changed

    def delete(self) -> None:
        """Stop every replica; the deployment is gone once none is left."""
        self.deleting = True
        self._dirty = True
        self.revision += 1

    @property
    def finished_deleting(self) -> bool:
        """Whether delete was asked and every replica has stopped."""
        return self.deleting and len(self.replicas) == 0

    @property
    def failed(self) -> bool:
        """Whether the current version is DEPLOY_FAILED."""
        return self._failures.count >= self._retry_limit() and self.spec.version not in self._failures.ever_ran

    # ---- events ---------------------------------------------------------------------

    def on_started(self, replica_id: str, now: float) -> None:
        """The replica's constructor returned."""
        self._dirty = True
        record = self.replicas.get(replica_id)
        if record is None or self.replicas.state_of(replica_id) is not S.STARTING:
            return
        members = [record]
        if record.gang_id is not None:
            gang = self.gangs[record.gang_id]
            gang.ready.add(replica_id)
            if len(gang.ready) < len(gang.members):
                return  # a gang joins the serving set whole, never member by member
            members = [m for m in (self.replicas.get(rid) for rid in gang.members) if m is not None]
        self._failures.ever_ran.add(record.version)
        if record.version == self.spec.version:
            self._failures.count = 0
        for member in members:
            self._move(member, S.RUNNING)
            # spread first checks over a period, so replicas started together are not checked together
            spread = (zlib.crc32(member.replica_id.encode()) % 1000) / 1000
            self._schedule_health(member, now + self.config.health_check_period_s * (0.5 + spread))
        if record.user_config_version != self._user_config_version:
            self._to_reconfigure.add(replica_id)

    def on_start_failed(self, replica_id: str, error: str, now: float) -> None:
        """The replica's constructor raised (or it never answered)."""
        self._dirty = True
        record = self.replicas.get(replica_id)
        if record is not None and record.gang_id is not None:
            gang = self.gangs.get(record.gang_id)
            first = gang is not None and not gang.torn_down
            self._gangs._tear_down_gang(record.gang_id, f"member {replica_id} failed to start", exclude=replica_id)
            self._drop(replica_id)
            if not first:
                return  # the gang's failure is counted once
        else:
            record = self._drop(replica_id)
        if record is None or record.version != self.spec.version:
            return
        failures = self._failures
        was_failed = self.failed
        self.revision += 1
        failures.count += 1
        failures.last_error = error
        failures.retry_at = now + min(0.05 * 2 ** min(failures.count, 10), 5.0)
        if self.failed and not was_failed:
            self.membership_version += 1  # handles learn it at once: requests fail instead of waiting

    def on_stopped(self, replica_id: str) -> None:
        """The replica has stopped (or its node is gone)."""
        self._dirty = True
        self._drop(replica_id)

    def on_died(self, replica_id: str, reason: str) -> None:
        """The replica's actor or process died without being asked to stop."""
        self._dirty = True
        was_stopping = self.replicas.state_of(replica_id) is S.STOPPING
        record = self.replicas.get(replica_id)
        if record is not None and record.gang_id is not None and not was_stopping:
            self._gangs._tear_down_gang(record.gang_id, f"member {replica_id} died ({reason})", exclude=replica_id)
        if self._drop(replica_id) is not None and not was_stopping:
            self._note = f"replica {replica_id} died ({reason}); replacing it"
            if record is not None and record.gang_id is not None:
                self._note = f"gang {record.gang_id}: member {replica_id} died ({reason}); restarting the gang"

    def on_node_lost(self, node_id: str, reason: str) -> None:
        """Every replica on the node is gone."""
        self._dirty = True
        lost = [rid for rid, _, rec in self.replicas.items() if rec.node_id == node_id]
        for rid in lost:
            self.on_died(rid, f"its worker {node_id} is gone: {reason}")

    def on_health(self, replica_id: str, ok: bool, ongoing: int, error: str, now: float) -> StopReplicaCmd | None:
        """A health check answered (or timed out). Returns a stop for a replica past the threshold."""
        self._dirty = True
        record = self.replicas.get(replica_id)
        if record is None:
            return None
        record.health_in_flight = False
        if ok:
            record.health_failures = 0
            record.ongoing, record.load_fresh = ongoing, True
        else:
            record.health_failures += 1
            if record.health_failures >= self._limits.health_check_failure_threshold:
                self._note = f"replica {replica_id} failed {record.health_failures} health checks ({error}); replacing it"
                if record.gang_id is not None:
                    self._note = f"gang {record.gang_id}: {self._note}, with its whole gang"
                    self._gangs._tear_down_gang(record.gang_id, "a member failed its health checks", exclude=replica_id)
                return self._stop(record, 0.0)
        if self.replicas.state_of(replica_id) in SERVING:
            self._schedule_health(record, now + self.config.health_check_period_s)
        return None

    def on_reconfigured(self, replica_id: str, version: int, error: str | None) -> StopReplicaCmd | None:
        """A reconfigure call returned; a failed one replaces the replica."""
        self._dirty = True
        record = self.replicas.get(replica_id)
        if record is None or self.replicas.state_of(replica_id) is not S.UPDATING:
            return None
        if error is not None:
            self._note = f"reconfigure of replica {replica_id} failed ({error}); replacing it"
            return self._stop(record, 0.0)
        record.user_config_version = version
        self._move(record, S.RUNNING)
        if version != self._user_config_version:
            self._to_reconfigure.add(replica_id)
        return None

    # ---- decisions ------------------------------------------------------------------

    def reconcile(self, now: float) -> list[Command]:
        """Converge towards the target: the commands to carry out now (see :class:`Reconciler`)."""
        return self._reconciler.reconcile(now)

    def _schedule_health(self, record: ReplicaRecord, at: float) -> None:
        record.next_health_check = at
        heapq.heappush(self._health_heap, (at, record.replica_id))
        if self.agenda is not None:
            self.agenda.at(at, (self.app, self.name))

    # ---- bookkeeping ----------------------------------------------------------------

    def _add(self, record: ReplicaRecord, state: ReplicaState) -> None:
        self.replicas.add(state, record.replica_id, record)
        self._per_node[record.node_id] += 1
        self._count(record, None, state)

    def _move(self, record: ReplicaRecord, state: ReplicaState) -> None:
        old = self.replicas.state_of(record.replica_id)
        self.replicas.move(record.replica_id, state)
        self._count(record, old, state)

    def _stop(self, record: ReplicaRecord, timeout_s: float) -> StopReplicaCmd:
        if self.replicas.state_of(record.replica_id) is not S.STOPPING:
            self._move(record, S.STOPPING)
        self._to_reconfigure.discard(record.replica_id)
        return StopReplicaCmd(record, timeout_s)

    def _drop(self, replica_id: str) -> ReplicaRecord | None:
        removed = self.replicas.remove([replica_id])
        if not removed:
            return None
        _, state, record = removed[0]
        self._count(record, state, None)
        self._per_node[record.node_id] -= 1
        if self._per_node[record.node_id] <= 0:
            del self._per_node[record.node_id]
        self._cluster.release(record.node_id, record.request)
        self._to_reconfigure.discard(replica_id)
        if self._queued:
            self._queued = [c for c in self._queued if c.replica.replica_id != replica_id]
        if record.gang_id is not None:
            gang = self.gangs.get(record.gang_id)
            if gang is not None:
                gang.torn_down = True
                gang.ready.discard(replica_id)
                self._gangs._release_if_empty(gang)
        return record

    def _count(self, record: ReplicaRecord, old: ReplicaState | None, new: ReplicaState | None) -> None:
        self.revision += 1
        was_live, is_live = old is not None and old is not S.STOPPING, new is not None and new is not S.STOPPING
        was_serving, is_serving = old in SERVING, new in SERVING
        if was_live != is_live:
            self._live_by_version[record.version] += 1 if is_live else -1
        if was_serving != is_serving:
            self._serving_by_version[record.version] += 1 if is_serving else -1
            self.membership_version += 1

    def _retry_limit(self) -> int:
        limits = self._limits
        gang = self.config.gang()
        units = self.config.num_replicas // gang.gang_size if gang is not None else self.config.num_replicas
        return min(limits.max_constructor_retries, max(1, units) * limits.constructor_retries_per_replica)

    def _converged(self) -> bool:
        version = self.spec.version
        return (
            not self._queued
            and self._serving_by_version[version] == self.config.num_replicas
            and self.replicas.count(LIVE_STATES) == self.config.num_replicas
            and self.replicas.count([S.STOPPING]) == 0
            and not self._to_reconfigure
            and self.replicas.count([S.UPDATING]) == 0
        )

    # ---- views ----------------------------------------------------------------------

    def serving_count(self) -> int:
        """How many replicas take requests now. O(1)."""
        return self.replicas.count(SERVING)

    def serving(self) -> list[ReplicaRecord]:
        """Replicas that take requests (after a controller restart, also those
        that served before it and wait to be recovered)."""
        serving = [record for _, _, record in self.replicas.items(SERVING)]
        if self.replicas.count(_RECOVERING):
            serving.extend(self._recovery.routable_while_recovering())
        return serving

    def status(self) -> tuple[str, str]:
        """``(status, message)`` in Ray Serve's vocabulary (see :func:`deployment_status`)."""
        return deployment_status(self)

    def replica_states(self) -> dict[str, int]:
        """Replica counts by state."""
        return self.replicas.counts()
