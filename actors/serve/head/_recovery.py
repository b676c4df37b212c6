"""The controller's checkpoint and its recovery after a restart.

Composed into the control plane (:class:`Recovery`). The controller writes a checkpoint (desired state, the replicas it
started and where, gangs and reservations, nodes, subscribers) whenever
something in it changed, at most once per loop tick. A controller started
from a checkpoint:

1. restores nodes, apps, deployments and the resource book; every replica is
   RECOVERING and stays routable if it served before;
2. asks every worker which replicas it runs (retrying those that do not
   answer, every ``recovery_retry_s``); each answer re-adopts that worker's
   live replicas without restarting them, drops the dead ones and stops the
   ones it never knew;
3. once every worker has answered or is gone (a dead worker is found by the
   heartbeat; one that never answers is given up after
   ``recovery_timeout_s``), releases the gang reservations that no replica
   uses. While any worker is unanswered that clean-up is skipped and tried
   again on the next tick.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from protocol import (
    CHECKPOINT_FORMAT,
    Checkpoint,
    CheckpointApp,
    CheckpointNode,
    CheckpointSubscriber,
    DeploymentSpec,
    ListReplicas,
    StopReplica,
    decode_fields,
    encode_checkpoint,
)

from .._autoscaling import AutoscalingConfigError, AutoscalingDecider, load_policy
from .._errors import CheckpointError
from .._options import DeploymentConfig, DeploymentOptionError
from ._deployment_recovery import reservation_from, reservation_record
from ._deployment_state import DeploymentState
from ._replica_states import ReplicaState
from .._names import NODE_ACTOR
from ._effects import Ask, ClearCheckpoint, SaveCheckpoint, Tell
from ._events import CheckpointWritten, InventoryReplied, NodeRecovered

log = logging.getLogger("corral.serve")

@dataclass
class _Waiting:
    """A worker that has not yet said which replicas it runs."""

    deadline: float
    next_ask: float = 0.0
    asking: bool = False
    failures: int = 0


@dataclass
class RecoveryStats:
    epoch: int = 0
    started_at: float | None = None  # when a restore began (None: started empty)
    finished_after_s: float | None = None
    adopted: int = 0
    dropped: int = 0
    unknown_stopped: int = 0
    query_failures: int = 0
    leaked_reservations_released: int = 0
    nodes_given_up: int = 0
    checkpoint_writes: int = 0
    checkpoint_failures: int = 0
    checkpoint_bytes: int = 0
    checkpoint_ms_max: float = 0.0
    checkpoint_location: str = ""
    last_error: str = ""
    waiting: dict[str, _Waiting] = field(default_factory=dict)


class Recovery:
    """The checkpoint a control plane writes and its recovery after a restart
    (see the module docstring). Its own state: the recovery's progress and
    counters, and what was last written; the rest is the control plane's.

    Args:
        core: the control plane it writes and restores.
        checkpointing: whether a store is configured.
        location: where the store keeps the checkpoint, for messages.
    """

    def __init__(self, core: Any, checkpointing: bool, location: str) -> None:
        self.core = core
        self.checkpointing = checkpointing
        self.location = location
        self.stats = RecoveryStats()
        self.written = (-1, -1)
        self._writing: tuple[int, int] | None = None

    # ---- writing ----------------------------------------------------------------------

    def fingerprint(self) -> tuple[int, int]:
        core = self.core
        return core.revision, sum(s.revision for app in core.apps.values() for s in app.deployments.values())

    def maybe_checkpoint(self) -> None:
        """Ask for a checkpoint write if anything in it changed since the last one."""
        if not self.checkpointing:
            return
        fingerprint = self.fingerprint()
        if fingerprint == self.written or fingerprint == self._writing:
            return
        try:
            blob = encode_checkpoint(self.snapshot())
        except Exception as exc:
            self.on_written(CheckpointWritten(fingerprint, 0, 0.0, str(exc)))
            return
        self._writing = fingerprint
        self.core.emit(SaveCheckpoint(blob, fingerprint))

    def on_written(self, event: CheckpointWritten) -> None:
        """The shell wrote the checkpoint, or could not (the store is down: keep
        serving, try again on the next tick)."""
        self._writing = None
        stats = self.stats
        if event.error is not None:
            stats.checkpoint_failures += 1
            if stats.last_error != event.error:
                log.warning("checkpoint not written (tried again every tick): %s", event.error)
            stats.last_error = event.error
            return
        self.written = event.fingerprint
        stats.last_error = ""
        stats.checkpoint_writes += 1
        stats.checkpoint_bytes = event.size
        stats.checkpoint_ms_max = max(stats.checkpoint_ms_max, event.ms)

    def snapshot(self) -> Checkpoint:
        core = self.core
        apps = [
            CheckpointApp(app.name, app.ingress, app.deleting, [s.checkpoint() for s in app.deployments.values()], app.route_prefix)
            for app in core.apps.values()
        ]
        nodes = [CheckpointNode(n.node_id, n.address, dict(n.resources)) for n in core.nodes.values()]
        reservations = [reservation_record(r) for r in core.cluster.reservations]
        subscribers = [CheckpointSubscriber(k[0], k[1], s) for k, subs in core.subscribers.items() for s in sorted(subs)]
        return Checkpoint(CHECKPOINT_FORMAT, self.stats.epoch, core.wall, apps, nodes, reservations, subscribers)

    def clear(self) -> str:
        """Remove the checkpoint and write none from now on (the cluster is stopping whole)."""
        if self.checkpointing:
            self.checkpointing = False
            self.core.emit(ClearCheckpoint())
        return "cleared"

    # ---- restoring --------------------------------------------------------------------

    def restore(self, checkpoint: Checkpoint) -> None:
        """Take back a checkpoint's state and ask every worker what it runs.

        Raises:
            CheckpointError: the checkpoint names options that are no longer valid.
        """
        core, now = self.core, self.core.now
        self.stats.epoch = checkpoint.epoch + 1
        self.stats.started_at = now
        for node in checkpoint.nodes:
            # not watched until it answers: a connection to the old head may take a
            # moment to be replaced, and only recovery_timeout_s gives a worker up
            core.add_node(node.node_id, node.address, node.resources, watch=False)
            self.stats.waiting[node.node_id] = _Waiting(deadline=now + core.settings.recovery_timeout_s)
        allocations: list[tuple[str, dict[str, float]]] = []
        for entry in checkpoint.apps:
            app = core.apps[entry.name] = core.new_app(entry.name, entry.ingress, entry.deleting)
            app.route_prefix = entry.route_prefix
            for d in entry.deployments:
                spec = decode_fields(DeploymentSpec, d.spec, "spec")
                try:
                    config = DeploymentConfig.from_dict(d.config)
                except DeploymentOptionError as exc:
                    raise CheckpointError(f"deployment {spec.app}/{spec.name} in the checkpoint: {exc}") from None
                state = app.deployments[spec.name] = DeploymentState(spec, config, core.cluster, core.limits)
                state.restore(d)
                state.autoscaler = _autoscaler_of(spec, config)
                core.agenda.adopt(state)
                for replica in d.replicas:
                    core.owner[replica.replica_id] = (spec.app, spec.name)
                    if replica.gang_id is None:  # gang members hold their reservation's bundles
                        allocations.append((replica.node_id, dict(replica.request)))
        reservations = {r.name: reservation_from(r) for r in checkpoint.reservations}
        for app in core.apps.values():
            for state in app.deployments.values():
                for gang in state.gangs.values():
                    reservations.setdefault(gang.reservation.name, gang.reservation)
        core.cluster.restore(allocations, list(reservations.values()))
        for app in core.apps.values():
            for state in app.deployments.values():
                orphans = {r.node_id for _, r in state.replicas.in_state(ReplicaState.RECOVERING)} - set(core.nodes)
                for node_id in orphans:  # on no worker the checkpoint knows: nobody will answer for them
                    self.stats.dropped += len(state.recovering_on(node_id))
                    state.recover_node(node_id, set(), set(), now)
        for sub in checkpoint.subscribers:
            core.add_subscriber((sub.app, sub.deployment), sub.subscriber)
        replicas = sum(len(s.replicas) for a in core.apps.values() for s in a.deployments.values())
        log.warning(
            "controller restarted (epoch %d): recovering %d applications, %d replicas on %d workers from %s",
            self.stats.epoch, len(core.apps), replicas, len(core.nodes), self.location or "?",
        )
        self.written = (-1, -1)  # the new epoch is written now, changed or not: epochs never repeat
        self.maybe_checkpoint()
        self._ask_waiting(now)

    # ---- asking the workers -----------------------------------------------------------

    def reachable(self, node_id: str) -> None:
        """A worker said hello: ask it what it runs now, if it has not said yet."""
        waiting = self.stats.waiting.get(node_id)
        if waiting is not None:
            waiting.next_ask = 0.0

    def forget(self, node_id: str) -> None:
        """A worker is gone: nobody waits for its answer any more."""
        self.stats.waiting.pop(node_id, None)

    def _ask_waiting(self, now: float) -> None:
        core, settings = self.core, self.core.settings
        for node_id, waiting in list(self.stats.waiting.items()):
            node = core.nodes.get(node_id)
            if node is None:
                del self.stats.waiting[node_id]
                continue
            if now >= waiting.deadline:
                self.stats.nodes_given_up += 1
                core.lose_node(node_id, f"it did not say which replicas it runs within {settings.recovery_timeout_s}s of the restart")
                continue
            if waiting.asking or now < waiting.next_ask:
                continue
            waiting.asking = True
            timeout = min(max(2 * settings.recovery_retry_s, 1.0), settings.control_timeout_s)
            core.emit(Ask(node.address, NODE_ACTOR, ListReplicas(states=True), timeout, InventoryReplied(node_id)))

    def on_inventory(self, node_id: str, answer: Any, error: str | None, gone: bool = False) -> None:
        """A worker said which replicas it runs (or could not be asked)."""
        core, settings, stats = self.core, self.core.settings, self.stats
        waiting = stats.waiting.get(node_id)
        if waiting is None or node_id not in core.nodes:
            return
        waiting.asking = False
        if gone:
            # its address refuses connections: the worker died while the controller was down
            del stats.waiting[node_id]
            stats.nodes_given_up += 1
            core.lose_node(node_id, f"it is gone since the restart: {error}")
            return
        if error is not None or not isinstance(answer, dict):
            stats.query_failures += 1
            waiting.failures += 1
            waiting.next_ask = core.now + settings.recovery_retry_s
            if waiting.failures == 1:
                log.warning("worker %s did not say what it runs (asked again every %.1fs): %s",
                            node_id, settings.recovery_retry_s, error or f"answer {answer!r}")
            return
        del stats.waiting[node_id]
        core.watch_node(node_id)
        # a replica process answers [state, its address, its pid]; a thread-mode replica its state
        states = {rid: st[0] if isinstance(st, list) and st else st for rid, st in answer.items()}
        running = {rid for rid, st in states.items() if st == "running"}
        starting = {rid for rid, st in states.items() if st != "running"}
        now = core.now
        for rid, st in answer.items():
            owner = core.state_of(rid) if isinstance(st, list) and len(st) == 3 else None
            record = None if owner is None else owner.replicas.get(rid)
            if record is not None and record.node_id == node_id:
                record.started_at({"address": st[1], "pid": st[2]})
        known: set[str] = set()
        for app in core.apps.values():
            for state in app.deployments.values():
                on_node = set(state.recovering_on(node_id))
                known.update(on_node)
                before = state.adopted_total
                commands = state.handle(NodeRecovered(node_id, frozenset(running), frozenset(starting)), now)
                stats.adopted += state.adopted_total - before
                stats.dropped += len(on_node - running - starting)
                for rid in on_node & running:
                    record = state.replicas.get(rid)
                    if record is not None and record.recovered_from == "":
                        core.watch_replica(rid, record)
                core.execute(state, commands)
                core.publish((app.name, state.name), force=True)
        node = core.nodes[node_id]
        for rid in set(answer) - known - set(core.owner):
            stats.unknown_stopped += 1
            log.warning("stopping replica %s on worker %s: the checkpoint does not know it", rid, node_id)
            core.emit(Tell(node.address, NODE_ACTOR, StopReplica(rid, 0.0)))
        self._finish_if_done()

    def tick(self) -> None:
        """On every loop tick while recovering: ask again, and finish once every worker answered."""
        stats = self.stats
        if stats.started_at is None or stats.finished_after_s is not None:
            return
        if stats.waiting:
            self._ask_waiting(self.core.now)
        self._finish_if_done()

    def _finish_if_done(self) -> None:
        stats = self.stats
        if stats.waiting or stats.started_at is None or stats.finished_after_s is not None:
            return
        for reservation in self._unused_reservations():
            stats.leaked_reservations_released += 1
            log.warning("releasing reservation %s: no replica uses it", reservation.name)
            self.core.cluster.release_gang(reservation)
        stats.finished_after_s = self.core.now - stats.started_at
        log.warning(
            "recovery done in %.2fs: %d replicas re-adopted, %d gone and replaced, %d unknown stopped, "
            "%d leaked reservations released",
            stats.finished_after_s, stats.adopted, stats.dropped, stats.unknown_stopped, stats.leaked_reservations_released,
        )

    def leaked_reservations(self) -> int:
        """Reservations held that no gang uses (0 when all is well)."""
        return len(self._unused_reservations())

    def _unused_reservations(self) -> list[Any]:
        core = self.core
        used = {g.reservation.name for a in core.apps.values() for s in a.deployments.values() for g in s.gangs.values()}
        return [r for r in core.cluster.reservations if r.name not in used]

    def as_dict(self) -> dict[str, Any]:
        stats = self.stats
        return {
            "epoch": stats.epoch,
            "recovering_workers": sorted(stats.waiting),
            "recovery_s": stats.finished_after_s,
            "adopted": stats.adopted,
            "dropped": stats.dropped,
            "unknown_stopped": stats.unknown_stopped,
            "query_failures": stats.query_failures,
            "workers_given_up": stats.nodes_given_up,
            "leaked_reservations_released": stats.leaked_reservations_released,
            "checkpoint_location": self.location if self.checkpointing else "",
            "checkpoint_writes": stats.checkpoint_writes,
            "checkpoint_failures": stats.checkpoint_failures,
            "checkpoint_bytes": stats.checkpoint_bytes,
            "checkpoint_ms_max": round(stats.checkpoint_ms_max, 3),
        }


def _autoscaler_of(spec: DeploymentSpec, config: DeploymentConfig) -> AutoscalingDecider | None:
    autoscaling = config.autoscaling()
    if autoscaling is None:
        return None
    policy = None
    if autoscaling.policy:
        try:
            policy = load_policy(autoscaling.policy)
        except AutoscalingConfigError as exc:
            raise CheckpointError(f"deployment {spec.app}/{spec.name} in the checkpoint: {exc}") from None
    return AutoscalingDecider(autoscaling, policy)
