"""What a deployment does on each loop tick to converge on its target: roll
to a new version, scale, start replicas where they fit, reconfigure, and
send the health checks that are due. Pure: no I/O, no threads.

Composed into :class:`DeploymentState`, whose replicas, counters and
commands it works on (``self.state``).
"""

from __future__ import annotations

import heapq
import math
from typing import Any

from ._commands import Command, HealthCheckCmd, ReconfigureCmd, ReplicaRecord, StartReplicaCmd
from ._ids import fresh_id
from ._replica_states import LIVE_STATES, ReplicaState

S = ReplicaState
SERVING = (S.RUNNING, S.UPDATING)
# Downscaling stops replicas that do not serve yet first, then the least loaded.
_STOP_ORDER = (S.STARTING, S.PENDING_MIGRATION, S.RECOVERING, S.UPDATING)
# How long a downscale waits for running replicas to tell their current load
# (a health check answers with it) before it goes on with what it last heard.
LOAD_PROBE_S = 1.0


class Reconciler:
    """The reconcile step of one deployment state."""

    def __init__(self, state: Any) -> None:
        self.state = state

    def reconcile(self, now: float) -> list[Command]:
        """Decide what to do now. Pure apart from updating this object."""
        cmds: list[Command] = self.state._queued
        self.state._queued = []
        if self.state.deleting:
            for _, _, record in self.state.replicas.items(LIVE_STATES):
                cmds.append(self.state._stop(record, self.state.config.graceful_shutdown_timeout_s))
            self.state._dirty = len(self.state.replicas) > 0 and bool(cmds)
            return cmds
        self._due_health_checks(now, cmds)
        if self.state._to_reconfigure:
            self._start_reconfigures(cmds)
        target = self.state.config.num_replicas
        live = self.state.replicas.count(LIVE_STATES)
        new_live = self.state._live_by_version[self.state.spec.version]
        gang = self.state.config.gang()
        if gang is not None:
            self.state._gangs._reconcile_gangs(gang, target, cmds, now)
        elif live != new_live:
            self._roll(target, cmds, now)
        elif new_live > target:
            self._downscale(new_live - target, cmds, now)
        elif new_live < target:
            self._start(target - new_live, cmds, now)
        else:
            self.state._waiting = ""
        if new_live <= target or live != new_live:
            self.state._load_probe = None
        if self.state._converged():
            self.state._transition = None
            self.state._note = ""
            self.state._dirty = bool(cmds) or self.state.failed
        elif not cmds and (self.state.failed or now < self.state._failures.retry_at):
            self.state._dirty = not self.state.failed  # a retry is due later: keep looking until it is
        return cmds

    def _roll(self, target: int, cmds: list[Command], now: float) -> None:
        version = self.state.spec.version
        old = [(rid, st, rec) for rid, st, rec in self.state.replicas.items(LIVE_STATES) if rec.version != version]
        for _, state, record in old:
            if state not in SERVING:
                self._retire(record, 0.0, cmds)
        old_serving = [(rid, st, rec) for rid, st, rec in self.state.replicas.items(LIVE_STATES)
                       if rec.version != version and st in SERVING]
        excess = self.state._serving_by_version[version] + len(old_serving) - target
        for record in self._pick_to_stop(min(max(excess, 0), len(old_serving)), old_serving):
            if self.state.replicas.state_of(record.replica_id) in SERVING:  # not taken down with its gang above
                self._retire(record, self.state.config.graceful_shutdown_timeout_s, cmds)
        batch = max(1, math.ceil(0.2 * target))
        room = target + batch - self.state.replicas.count(LIVE_STATES)
        wanted = target - self.state._live_by_version[version]
        if min(room, wanted) > 0:
            self._start(min(room, wanted), cmds, now)

    def _retire(self, record: ReplicaRecord, timeout_s: float, cmds: list[Command]) -> None:
        """Stop an old replica; one of an old gang (the gang layout changed) goes with its whole gang."""
        if record.gang_id is not None and record.gang_id in self.state.gangs:
            self.state._gangs._tear_down_gang(record.gang_id, "replaced by a new version", graceful=timeout_s > 0)
            cmds.extend(self.state.take_queued())
            return
        cmds.append(self.state._stop(record, timeout_s))

    def _downscale(self, n: int, cmds: list[Command], now: float) -> None:
        """Stop ``n`` replicas: ones not serving yet first, then the least loaded
        by a fresh look. The load a health check last reported can be a period
        old, so running replicas are asked first (a health check each) and the
        stop waits for their answers, at most ``LOAD_PROBE_S``."""
        candidates = self.state.replicas.items(LIVE_STATES)
        running = [record for _, state, record in candidates if state is S.RUNNING]
        if 0 < n - (len(candidates) - len(running)) < len(running):  # which running replicas go is a choice
            probe = self.state._load_probe
            if probe is None:
                probe = self.state._load_probe = now + min(LOAD_PROBE_S, self.state.config.health_check_timeout_s)
                for record in running:
                    record.load_fresh = False
                    if not record.health_in_flight:
                        record.health_in_flight = True
                        cmds.append(HealthCheckCmd(record, self.state.config.health_check_timeout_s))
                if self.state.agenda is not None:
                    self.state.agenda.at(probe, (self.state.app, self.state.name))
            if now < probe and not all(record.load_fresh for record in running):
                self.state._waiting = f"asking {len(running)} running replicas their load to stop the least loaded"
                return
        self.state._load_probe = None
        for record in self._pick_to_stop(n, candidates):
            cmds.append(self.state._stop(record, self.state.config.graceful_shutdown_timeout_s))

    def _pick_to_stop(self, n: int, candidates: list[tuple[str, ReplicaState, ReplicaRecord]]) -> list[ReplicaRecord]:
        if n <= 0:
            return []
        order = {state: i for i, state in enumerate(_STOP_ORDER)}
        ranked = sorted(candidates, key=lambda item: (order.get(item[1], len(order)), item[2].ongoing))
        return [record for _, _, record in ranked[:n]]

    def _tracked(self, replica_id: str) -> bool:
        return self.state.replicas.state_of(replica_id) is not None

    def _start(self, n: int, cmds: list[Command], now: float) -> None:
        if self.state.failed or now < self.state._failures.retry_at:
            return
        request = self.state.config.resource_request()
        for _ in range(n):
            placed = self.state._cluster.place_replica(request, self.state._per_node)
            if placed is None:
                self.state._waiting = (
                    f"waiting for resources: {len(cmds)} of {n} new replicas placed, "
                    f"each needs {request or 'nothing'} and no worker has that free"
                )
                return
            node_id, address = placed
            record = ReplicaRecord(
                replica_id=fresh_id(f"{self.state.app}.{self.state.name}.", self._tracked),
                node_id=node_id,
                address=address,
                version=self.state.spec.version,
                request=request,
                user_config_version=self.state._user_config_version,
                created_at=now,
            )
            self.state._add(record, S.STARTING)
            cmds.append(StartReplicaCmd(record, self.state.spec))
        self.state._waiting = ""

    def _start_reconfigures(self, cmds: list[Command]) -> None:
        """A user_config change rolls, as a new version does: at most a fifth
        of the replicas (at least one) reconfigure at a time; the others serve."""
        pending, self.state._to_reconfigure = self.state._to_reconfigure, set()
        room = max(1, math.ceil(0.2 * self.state.serving_count())) - self.state.replicas.count([S.UPDATING])
        for replica_id in sorted(pending):
            record = self.state.replicas.get(replica_id)
            if record is None or self.state.replicas.state_of(replica_id) is not S.RUNNING or room <= 0:
                if record is not None and self.state.replicas.state_of(replica_id) in (S.UPDATING, S.RUNNING):
                    self.state._to_reconfigure.add(replica_id)  # its turn comes when a batch is done
                continue
            room -= 1
            self.state._move(record, S.UPDATING)
            cmds.append(ReconfigureCmd(record, self.state.config.user_config, self.state._user_config_version))

    def _due_health_checks(self, now: float, cmds: list[Command]) -> None:
        heap = self.state._health_heap
        while heap and heap[0][0] <= now:
            due, replica_id = heapq.heappop(heap)
            record = self.state.replicas.get(replica_id)
            if record is None or record.next_health_check != due or record.health_in_flight:
                continue
            if self.state.replicas.state_of(replica_id) is not S.RUNNING:
                continue
            record.health_in_flight = True
            cmds.append(HealthCheckCmd(record, self.state.config.health_check_timeout_s))
