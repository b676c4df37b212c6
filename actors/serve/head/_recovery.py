"""The controller's checkpoint and its recovery after a restart.

Mixed into the Controller actor; kept apart so each module reads in one
sitting. The controller writes a checkpoint (desired state, the replicas it
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
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from protocol import (
    CHECKPOINT_FORMAT,
    Checkpoint,
    CheckpointApp,
    CheckpointNode,
    CheckpointSubscriber,
    CorruptCheckpoint,
    DeploymentSpec,
    ListReplicas,
    StopReplica,
    decode_checkpoint,
    decode_fields,
    encode_checkpoint,
)
from transport import NOTHING_LISTENS

from ..._config import ServeSettings
from .._autoscaling import AutoscalingConfigError, AutoscalingDecider, load_policy
from .._errors import CheckpointError
from .._options import DeploymentConfig, DeploymentOptionError
from ._deployment_recovery import reservation_from, reservation_record
from ._deployment_state import DeploymentState
from ._replica_states import ReplicaState
from ._store import CheckpointStore, StoreError

log = logging.getLogger("corral.serve")

_FRESH_HINT = "start with --fresh (ServeSettings.checkpoint_recovery='fresh') to discard it and start empty"



def load_checkpoint(store: CheckpointStore | None, mode: str) -> Checkpoint | None:
    """Read the checkpoint a starting controller recovers from.

    Args:
        store: where it lives (None: nowhere; the controller starts empty).
        mode: ``"auto"``, ``"required"`` or ``"fresh"`` (see ``ServeSettings``).

    Returns:
        The checkpoint, or None to start empty.

    Raises:
        CheckpointError: the store cannot be read, the checkpoint is corrupt,
            or it is missing when ``mode`` is ``"required"``.
    """
    if store is None:
        if mode == "required":
            raise CheckpointError("a checkpoint is required but no checkpoint store is configured")
        return None
    try:
        if mode == "fresh":
            store.clear()
            log.warning("starting empty: any checkpoint in %s was discarded (fresh start)", store.location)
            return None
        blob = store.load()
    except StoreError as exc:
        raise CheckpointError(str(exc)) from None
    if blob is None:
        if mode == "required":
            raise CheckpointError(
                f"no checkpoint in {store.location}: the controller cannot recover the cluster's state; "
                "start with --fresh (ServeSettings.checkpoint_recovery='fresh') to start empty "
                "(every application must then be deployed again)"
            )
        return None
    try:
        return decode_checkpoint(blob)
    except CorruptCheckpoint as exc:
        raise CheckpointError(f"the checkpoint in {store.location} is corrupt ({exc}); {_FRESH_HINT}") from None


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
    started_at: float = 0.0
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


class ControllerRecovery:
    """Checkpoint and recovery methods of the controller (see the module docstring)."""

    settings: ServeSettings
    store: CheckpointStore | None
    recovery: RecoveryStats
    apps: dict[str, Any]
    nodes: dict[str, Any]
    owner: dict[str, tuple[str, str]]
    subscribers: dict[tuple[str, str], set[str]]
    cluster: Any
    system: Any
    limits: Any
    revision: int
    _written: tuple[int, int]

    if TYPE_CHECKING:  # the controller's own methods, used here

        def _add_node(self, node_id: str, address: str, resources: dict[str, float], watch: bool = True) -> None: ...
        def _watch_node(self, node_id: str) -> None: ...
        def _lose_node(self, node_id: str, reason: str) -> None: ...
        def _new_app(self, name: str, ingress: str, deleting: bool = False) -> Any: ...
        def _add_subscriber(self, key: tuple[str, str], subscriber: str) -> None: ...
        def _ask(self, ref: Any, message: Any, what: str, rid: str, timeout: float) -> None: ...
        def _watch_replica(self, rid: str, record: Any) -> None: ...
        def _execute_all(self, state: DeploymentState, cmds: list[Any]) -> None: ...
        def _publish(self, key: tuple[str, str], force: bool = False) -> None: ...

    # ---- writing ----------------------------------------------------------------------

    def _fingerprint(self) -> tuple[int, int]:
        return self.revision, sum(s.revision for app in self.apps.values() for s in app.deployments.values())

    def _maybe_checkpoint(self) -> None:
        """Write the checkpoint if anything in it changed since the last write."""
        if self.store is None:
            return
        fingerprint = self._fingerprint()
        if fingerprint == self._written:
            return
        start = time.perf_counter()
        try:
            blob = encode_checkpoint(self._snapshot())
            self.store.save(blob)
        except Exception as exc:  # the store is down: keep serving, try again next tick
            self.recovery.checkpoint_failures += 1
            if self.recovery.last_error != str(exc):
                log.warning("checkpoint not written (tried again every tick): %s", exc)
            self.recovery.last_error = str(exc)
            return
        self._written = fingerprint
        self.recovery.last_error = ""
        self.recovery.checkpoint_writes += 1
        self.recovery.checkpoint_bytes = len(blob)
        self.recovery.checkpoint_ms_max = max(self.recovery.checkpoint_ms_max, (time.perf_counter() - start) * 1000)

    def _snapshot(self) -> Checkpoint:
        apps = [
            CheckpointApp(app.name, app.ingress, app.deleting, [s.checkpoint() for s in app.deployments.values()])
            for app in self.apps.values()
        ]
        nodes = [CheckpointNode(n.node_id, n.ref.address, dict(n.resources)) for n in self.nodes.values()]
        reservations = [reservation_record(r) for r in self.cluster.reservations]
        subscribers = [CheckpointSubscriber(k[0], k[1], s) for k, subs in self.subscribers.items() for s in sorted(subs)]
        return Checkpoint(CHECKPOINT_FORMAT, self.recovery.epoch, time.time(), apps, nodes, reservations, subscribers)

    def _clear_checkpoint(self) -> str:
        """Remove the checkpoint and write none from now on (the cluster is stopping whole)."""
        if self.store is not None:
            self.store.clear()
            self.store.close()
            self.store = None
        return "cleared"

    # ---- restoring --------------------------------------------------------------------

    def _restore(self, checkpoint: Checkpoint) -> None:
        """Take back a checkpoint's state and ask every worker what it runs."""
        now = time.monotonic()
        self.recovery.epoch = checkpoint.epoch + 1
        self.recovery.started_at = now
        for node in checkpoint.nodes:
            # not watched until it answers: a connection to the old head may take a
            # moment to be replaced, and only recovery_timeout_s gives a worker up
            self._add_node(node.node_id, node.address, node.resources, watch=False)
            self.recovery.waiting[node.node_id] = _Waiting(deadline=now + self.settings.recovery_timeout_s)
        allocations: list[tuple[str, dict[str, float]]] = []
        for entry in checkpoint.apps:
            app = self.apps[entry.name] = self._new_app(entry.name, entry.ingress, entry.deleting)
            for d in entry.deployments:
                spec = decode_fields(DeploymentSpec, d.spec, "spec")
                try:
                    config = DeploymentConfig.from_dict(d.config)
                except DeploymentOptionError as exc:
                    raise CheckpointError(f"deployment {spec.app}/{spec.name} in the checkpoint: {exc}") from None
                state = app.deployments[spec.name] = DeploymentState(spec, config, self.cluster, self.limits)
                state.restore(d)
                state.autoscaler = _autoscaler_of(spec, config)
                for replica in d.replicas:
                    self.owner[replica.replica_id] = (spec.app, spec.name)
                    if replica.gang_id is None:  # gang members hold their reservation's bundles
                        allocations.append((replica.node_id, dict(replica.request)))
        reservations = {r.name: reservation_from(r) for r in checkpoint.reservations}
        for app in self.apps.values():
            for state in app.deployments.values():
                for gang in state.gangs.values():
                    reservations.setdefault(gang.reservation.name, gang.reservation)
        self.cluster.restore(allocations, list(reservations.values()))
        for app in self.apps.values():
            for state in app.deployments.values():
                orphans = {r.node_id for _, r in state.replicas.in_state(ReplicaState.RECOVERING)} - set(self.nodes)
                for node_id in orphans:  # on no worker the checkpoint knows: nobody will answer for them
                    self.recovery.dropped += len(state.recovering_on(node_id))
                    state.recover_node(node_id, set(), set(), now)
        for sub in checkpoint.subscribers:
            self._add_subscriber((sub.app, sub.deployment), sub.subscriber)
        replicas = sum(len(s.replicas) for a in self.apps.values() for s in a.deployments.values())
        log.warning(
            "controller restarted (epoch %d): recovering %d applications, %d replicas on %d workers from %s",
            self.recovery.epoch, len(self.apps), replicas, len(self.nodes), self.store.location if self.store else "?",
        )
        self._written = self._fingerprint()
        self._ask_waiting(now)

    # ---- asking the workers -----------------------------------------------------------

    def _ask_waiting(self, now: float) -> None:
        for node_id, waiting in list(self.recovery.waiting.items()):
            node = self.nodes.get(node_id)
            if node is None:
                del self.recovery.waiting[node_id]
                continue
            if now >= waiting.deadline:
                self.recovery.nodes_given_up += 1
                self._lose_node(node_id, f"it did not say which replicas it runs within {self.settings.recovery_timeout_s}s of the restart")
                continue
            if waiting.asking or now < waiting.next_ask:
                continue
            waiting.asking = True
            timeout = min(max(2 * self.settings.recovery_retry_s, 1.0), self.settings.control_timeout_s)
            self._ask(node.ref, ListReplicas(states=True), "inventory", node_id, timeout)

    def _on_inventory(self, node_id: str, answer: Any, error: str | None) -> None:
        waiting = self.recovery.waiting.get(node_id)
        if waiting is None or node_id not in self.nodes:
            return
        waiting.asking = False
        if error is not None and NOTHING_LISTENS in error:
            # its address refuses connections: the worker died while the controller was down
            del self.recovery.waiting[node_id]
            self.recovery.nodes_given_up += 1
            self._lose_node(node_id, f"it is gone since the restart: {error}")
            return
        if error is not None or not isinstance(answer, dict):
            self.recovery.query_failures += 1
            waiting.failures += 1
            waiting.next_ask = time.monotonic() + self.settings.recovery_retry_s
            if waiting.failures == 1:
                log.warning("worker %s did not say what it runs (asked again every %.1fs): %s",
                            node_id, self.settings.recovery_retry_s, error or f"answer {answer!r}")
            return
        del self.recovery.waiting[node_id]
        self._watch_node(node_id)
        running = {rid for rid, st in answer.items() if st == "running"}
        starting = {rid for rid, st in answer.items() if st != "running"}
        now = time.monotonic()
        known: set[str] = set()
        for app in self.apps.values():
            for state in app.deployments.values():
                on_node = set(state.recovering_on(node_id))
                known.update(on_node)
                self.recovery.adopted += state.recover_node(node_id, running, starting, now)
                self.recovery.dropped += len(on_node - running - starting)
                for rid in on_node & running:
                    record = state.replicas.get(rid)
                    if record is not None and record.recovered_from == "":
                        self._watch_replica(rid, record)
                self._execute_all(state, state.take_queued())
                self._publish((app.name, state.name), force=True)
        node = self.nodes[node_id]
        for rid in set(answer) - known - set(self.owner):
            self.recovery.unknown_stopped += 1
            log.warning("stopping replica %s on worker %s: the checkpoint does not know it", rid, node_id)
            try:
                node.ref.tell(StopReplica(rid, 0.0))
            except Exception as exc:
                log.debug("stop of unknown replica %s not sent: %s", rid, exc)
        self._finish_recovery_if_done()

    def _recovery_tick(self, now: float) -> None:
        if self.recovery.waiting:
            self._ask_waiting(now)
        self._finish_recovery_if_done()

    def _finish_recovery_if_done(self) -> None:
        stats = self.recovery
        if stats.waiting or stats.started_at == 0.0 or stats.finished_after_s is not None:
            return
        for reservation in self._unused_reservations():
            stats.leaked_reservations_released += 1
            log.warning("releasing reservation %s: no replica uses it", reservation.name)
            self.cluster.release_gang(reservation)
        stats.finished_after_s = time.monotonic() - stats.started_at
        log.warning(
            "recovery done in %.2fs: %d replicas re-adopted, %d gone and replaced, %d unknown stopped, "
            "%d leaked reservations released",
            stats.finished_after_s, stats.adopted, stats.dropped, stats.unknown_stopped, stats.leaked_reservations_released,
        )

    def leaked_reservations(self) -> int:
        """Reservations the scheduler holds that no gang uses (0 when all is well)."""
        return len(self._unused_reservations())

    def _unused_reservations(self) -> list[Any]:
        used = {g.reservation.name for a in self.apps.values() for s in a.deployments.values() for g in s.gangs.values()}
        return [r for r in self.cluster.reservations if r.name not in used]

    def recovery_stats(self) -> dict[str, Any]:
        stats = self.recovery
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
            "checkpoint_location": self.store.location if self.store is not None else "",
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
