"""The Controller actor: desired state, the reconcile loop, replica membership.

A thin shell: every decision is made by :class:`DeploymentState` (pure). The
controller never blocks: each ask it makes completes by telling the
controller an internal message, handled like any other.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from protocol import (
    Checkpoint,
    DeleteApp,
    DeployApp,
    GetControllerStats,
    GetStatus,
    HealthCheck,
    MetricsPush,
    NodeHello,
    Reconfigure,
    RegisterNode,
    ReplicaSet,
    StartReplica,
    StopReplica,
    SubscribeReplicas,
)
from transport import check_endpoint

from ..._actor import Actor
from ..._config import ServeSettings
from ..._future import Future
from ..._ref import ActorRef
from ..._ticker import Ticker
from .._autoscaling import AutoscalingConfigError, AutoscalingDecider, load_policy
from .._names import NODE_ACTOR
from .._options import DeploymentConfig, DeploymentOptionError
from ._controller_metrics import ControllerMetrics, whole_gangs
from ._controller_views import ControllerViews
from ._deployment_state import (
    Command,
    DeploymentState,
    HealthCheckCmd,
    ReconfigureCmd,
    StartReplicaCmd,
    StopReplicaCmd,
    make_limits,
)
from ._gang_coordinator import COORDINATOR_NAME, GangCoordinator, StartGang, StopGang
from ._metrics_store import MetricsStore
from ._recovery import ControllerRecovery, RecoveryStats
from ._replica_states import ReplicaState
from ._scheduler import SCHEDULER_NAME, Scheduler, SchedulerClient
from ._store import CheckpointStore

log = logging.getLogger("corral.serve")



@dataclass
class _App:
    name: str
    ingress: str
    deployments: dict[str, DeploymentState]
    deleting: bool = False


@dataclass
class _Node:
    node_id: str
    ref: ActorRef
    watch_token: int | None
    resources: dict[str, float]


class _Tick:
    pass


class ClearCheckpoint:
    """Sent (in-process) before an orderly shutdown that stops every worker:
    the checkpoint is removed, nothing is left to recover."""


@dataclass
class _Result:
    """An ask made by the controller completed; ``error`` is None on success."""

    what: str
    replica_id: str
    value: Any
    error: str | None


@dataclass
class _Died:
    what: str  # "node" or "replica" or "subscriber"
    key: str
    reason: str


class Controller(ControllerMetrics, ControllerViews, ControllerRecovery, Actor):
    """The head's controller, named ``"controller"``.

    Args:
        settings: the serving layer's settings.
        store: where to keep the checkpoint (None: nowhere).
        restored: a checkpoint to recover from (see :func:`load_checkpoint`).
    """

    def __init__(self, settings: ServeSettings, store: CheckpointStore | None = None, restored: Checkpoint | None = None) -> None:
        super().__init__()
        self.settings = settings
        self.store = store
        self.recovery = RecoveryStats()
        self.revision = 0
        self._written = (-1, -1)
        self._restored = restored
        self.limits = make_limits(
            settings.constructor_retries_per_replica,
            settings.max_constructor_retries,
            settings.health_check_failure_threshold,
        )
        self.cluster: SchedulerClient = None  # type: ignore[assignment]  # set in on_start
        self.coordinator: ActorRef = None  # type: ignore[assignment]
        self.apps: dict[str, _App] = {}
        self.nodes: dict[str, _Node] = {}
        self.owner: dict[str, tuple[str, str]] = {}
        self.subscribers: dict[tuple[str, str], set[str]] = {}
        self.published: dict[tuple[str, str], int] = {}
        self.loop_ms: deque[float] = deque(maxlen=2000)
        self.ticks = 0
        self.metrics = MetricsStore(settings.staleness_s)
        self.metrics_messages = 0
        self.metrics_bytes = 0
        self.metrics_dropped = 0
        self.metrics_reports = 0
        self.metrics_by_sender: dict[str, int] = {}
        # request counters: the latest cumulative report of each live replica, plus
        # what replicas that are gone had counted (their late reports are ignored)
        self.replica_counters: dict[tuple[str, str], dict[str, tuple[int, int, list[int], float]]] = {}
        self.retired_counters: dict[tuple[str, str], list[Any]] = {}
        self.retired_replicas: set[str] = set()
        self._ticker: Ticker | None = None

    # ---- life cycle -------------------------------------------------------------------

    def on_start(self) -> None:
        scheduler = self.system.spawn(Scheduler, name=SCHEDULER_NAME)
        self.cluster = SchedulerClient(scheduler, self.settings.control_timeout_s)
        report = lambda what, key, value, error: self._tell_self(_Result(what, key, value, error))  # noqa: E731
        self.coordinator = self.system.spawn(GangCoordinator, report, _describe, name=COORDINATOR_NAME)
        if self._restored is not None:
            self._restore(self._restored)
            self._restored = None
        self._ticker = Ticker(self.actor_ref, _Tick, self.settings.reconcile_interval_s, "controller-ticker").start()

    def on_stop(self) -> None:
        self._ticker.stop()
        for name in (COORDINATOR_NAME, SCHEDULER_NAME):
            self.system.stop(self.system.ref(self.system.address, name), wait=False)
        if self.store is not None:
            self.store.close()

    def on_failure(self, *exc_info: Any) -> None:
        self._ticker.stop()
        if self.store is not None:
            self.store.close()

    # ---- messages ---------------------------------------------------------------------

    def receive(self, message: Any) -> Any:
        kind = type(message)
        if kind is _Tick:
            return self._tick()
        if kind is _Result:
            return self._on_result(message)
        if kind is _Died:
            return self._on_died(message)
        if kind is MetricsPush:
            return self._on_metrics(message)
        if kind is DeployApp:
            return self._deploy(message)
        if kind is DeleteApp:
            return self._delete(message.name)
        if kind is GetStatus:
            return self._status()
        if kind is RegisterNode:
            return self._register(message)
        if kind is NodeHello:
            return self._hello(message)
        if kind is SubscribeReplicas:
            return self._subscribe(message)
        if kind is ClearCheckpoint:
            return self._clear_checkpoint()
        if kind is GetControllerStats:
            stats = self._stats()
            if message.reset:
                self.loop_ms.clear()
            return stats
        raise TypeError(f"the controller does not handle {kind.__name__} messages")

    def _register(self, message: RegisterNode) -> str:
        check_endpoint(message.address)
        if not message.node_id or "#" in message.node_id:
            raise ValueError(f"node id must be non-empty without '#', got {message.node_id!r}")
        for name, amount in message.resources.items():
            if not name or not amount >= 0:
                raise ValueError(f"resource {name!r} of node {message.node_id!r} must be a number >= 0, got {amount!r}")
        if message.node_id in self.nodes:
            self._lose_node(message.node_id, "it registered again (restarted)")
        self._add_node(message.node_id, message.address, message.resources)
        for app in self.apps.values():
            for state in app.deployments.values():
                state.mark_dirty()  # replicas or gangs waiting for room may fit now
        log.info("worker %s joined from %s with %s", message.node_id, message.address, message.resources)
        return message.node_id

    def _add_node(self, node_id: str, address: str, resources: dict[str, float], watch: bool = True) -> None:
        self.cluster.add_node(node_id, address, resources)
        ref = self.system.ref(address, NODE_ACTOR)
        self.nodes[node_id] = _Node(node_id, ref, None, dict(resources))
        if watch:
            self._watch_node(node_id)
        self.revision += 1

    def _watch_node(self, node_id: str) -> None:
        node = self.nodes[node_id]
        node.watch_token = self.system.watch(node.ref, self._on_death("node", node_id))

    def _hello(self, message: NodeHello) -> dict[str, Any]:
        node = self.nodes.get(message.node_id)
        if node is None or node.ref.address != message.address:
            return {"known": False, "stop": []}
        waiting = self.recovery.waiting.get(message.node_id)
        if waiting is not None:
            waiting.next_ask = 0.0  # it is reachable: ask it what it runs now
        mine = {
            rid
            for app in self.apps.values()
            for state in app.deployments.values()
            for rid, _, record in state.replicas.items()
            if record.node_id == message.node_id
        }
        return {"known": True, "stop": [rid for rid in message.replicas if rid not in mine]}

    def _deploy(self, message: DeployApp) -> str:
        if not message.name or "#" in message.name:
            raise ValueError(f"application name must be non-empty without '#', got {message.name!r}")
        names = [spec.name for spec in message.deployments]
        if message.ingress not in names:
            raise ValueError(f"ingress deployment {message.ingress!r} is not among the deployments {names}")
        configs = {}
        for spec in message.deployments:
            try:
                config = DeploymentConfig.from_dict(spec.config)
            except DeploymentOptionError as exc:
                raise DeploymentOptionError(f"deployment {spec.name!r}: {exc}") from None
            request = config.resource_request()
            gang = config.gang()
            if gang is not None and self.cluster.nodes and not self.cluster.could_ever_hold(
                request, gang.gang_size, gang.gang_placement_strategy
            ):
                raise DeploymentOptionError(
                    f"deployment {spec.name!r}: a gang of {gang.gang_size} x {request or 'nothing'} "
                    f"({gang.gang_placement_strategy}) does not fit on the workers even when they are empty"
                )
            if request and self.cluster.nodes and not self.cluster.could_ever_fit(request):
                raise DeploymentOptionError(
                    f"deployment {spec.name!r}: option 'actor_options' asks for {request} per replica, "
                    "more than any worker has"
                )
            configs[spec.name] = config
        policies = {}
        for spec in message.deployments:
            autoscaling = configs[spec.name].autoscaling()
            if autoscaling is not None and autoscaling.policy:
                try:
                    policies[spec.name] = load_policy(autoscaling.policy)
                except AutoscalingConfigError as exc:
                    raise DeploymentOptionError(f"deployment {spec.name!r}: {exc}") from None
        app = self.apps.get(message.name)
        if app is not None and app.deleting:
            raise RuntimeError(f"application {message.name!r} is being deleted; deploy it again once it is gone")
        if app is None:
            app = self.apps[message.name] = self._new_app(message.name, message.ingress)
        app.ingress = message.ingress
        self.revision += 1
        for spec in message.deployments:
            config = configs[spec.name]
            autoscaling = config.autoscaling()
            state = app.deployments.get(spec.name)
            keep = state is not None and state.autoscaler is not None and state.config.autoscaling_config == config.autoscaling_config
            if autoscaling is not None:
                start = state.config.num_replicas if keep else autoscaling.start_replicas  # type: ignore[union-attr]
                config = config.replace(num_replicas=whole_gangs(start, config))
            if state is None:
                state = app.deployments[spec.name] = DeploymentState(spec, config, self.cluster, self.limits)
            else:
                state.deleting = False
                state.set_target(spec, config)
            if autoscaling is None:
                state.autoscaler = None
            elif not keep:
                state.autoscaler = AutoscalingDecider(autoscaling, policies.get(spec.name))
        for name, state in app.deployments.items():
            if name not in configs:
                state.delete()
        self._tick()
        return "ok"

    def _new_app(self, name: str, ingress: str, deleting: bool = False) -> _App:
        return _App(name, ingress, {}, deleting)

    def _delete(self, name: str) -> str:
        app = self.apps.get(name)
        if app is None:
            return "not found"
        app.deleting = True
        self.revision += 1
        for state in app.deployments.values():
            state.delete()
        self._tick()
        return "deleting"

    def _subscribe(self, message: SubscribeReplicas) -> ReplicaSet:
        key = (message.app, message.deployment)
        self._add_subscriber(key, message.subscriber)
        return self._replica_set(key)

    def _add_subscriber(self, key: tuple[str, str], subscriber: str) -> None:
        subscribers = self.subscribers.setdefault(key, set())
        if subscriber not in subscribers:
            subscribers.add(subscriber)
            self.revision += 1
            self.system.watch(self.system.ref(subscriber), self._on_death("subscriber", subscriber))

    # ---- the loop ---------------------------------------------------------------------

    def _tick(self) -> None:
        if self._ticker is not None:
            self._ticker.handled()
        start = time.perf_counter()
        now = time.monotonic()
        if self.recovery.started_at and self.recovery.finished_after_s is None:
            self._recovery_tick(now)
        for app in list(self.apps.values()):
            for name, state in list(app.deployments.items()):
                if state.autoscaler is not None and not state.deleting and now >= state.next_autoscale:
                    self._autoscale(app.name, state, now)
                if not state.needs_reconcile(now):
                    continue
                self._execute_all(state, state.reconcile(now))
                if state.finished_deleting:
                    del app.deployments[name]
                    self.revision += 1
                    self.metrics.forget((app.name, name))
                    self._publish((app.name, name), force=True)
                else:
                    self._publish((app.name, name))
            if app.deleting and not app.deployments:
                del self.apps[app.name]
                self.revision += 1
        self._maybe_checkpoint()
        self.ticks += 1
        self.loop_ms.append((time.perf_counter() - start) * 1000)

    def _execute_all(self, state: DeploymentState, cmds: list[Command]) -> None:
        """Carry out commands; a gang's member starts and stops go to the coordinator together."""
        starts: dict[str, list[Any]] = {}
        stops: dict[str, list[Any]] = {}
        for cmd in cmds:
            gang_id = cmd.replica.gang_id
            if gang_id is not None and isinstance(cmd, StartReplicaCmd):
                starts.setdefault(gang_id, []).append(cmd)
            elif gang_id is not None and isinstance(cmd, StopReplicaCmd):
                stops.setdefault(gang_id, []).append(cmd)
            else:
                self._execute(state, cmd)
        for gang_id, members in starts.items():
            refs = []
            for cmd in members:
                self.owner[cmd.replica.replica_id] = (state.app, state.name)
                node = self.nodes.get(cmd.replica.node_id)
                if node is None:
                    self._tell_self(_Result("start", cmd.replica.replica_id, None, f"worker {cmd.replica.node_id} is gone"))
                    continue
                refs.append((node.ref, StartReplica(cmd.replica.replica_id, cmd.replica.node_id, cmd.spec, cmd.gang)))
            if refs:
                self.coordinator.tell(StartGang(gang_id, refs, self.settings.replica_start_timeout_s))
        for gang_id, members in stops.items():
            timeout = max(cmd.timeout_s for cmd in members)
            refs = [
                (getattr(self.nodes.get(cmd.replica.node_id), "ref", None), StopReplica(cmd.replica.replica_id, cmd.timeout_s))
                for cmd in members
            ]
            self.coordinator.tell(StopGang(gang_id, refs, timeout + self.settings.control_timeout_s))

    def _execute(self, state: DeploymentState, cmd: Command) -> None:
        record = cmd.replica
        rid = record.replica_id
        if isinstance(cmd, StartReplicaCmd):
            self.owner[rid] = (state.app, state.name)
            node = self.nodes.get(record.node_id)
            if node is None:
                self._tell_self(_Result("start", rid, None, f"worker {record.node_id} is gone"))
                return
            self._ask(
                node.ref, StartReplica(rid, record.node_id, cmd.spec, cmd.gang), "start", rid, self.settings.replica_start_timeout_s
            )
        elif isinstance(cmd, StopReplicaCmd):
            node = self.nodes.get(record.node_id)
            if node is None:
                self._tell_self(_Result("stop", rid, None, None))
                return
            self._ask(node.ref, StopReplica(rid, cmd.timeout_s), "stop", rid, cmd.timeout_s + self.settings.control_timeout_s)
        elif isinstance(cmd, HealthCheckCmd):
            self._ask(self.system.ref(record.address, record.actor), HealthCheck(), "health", rid, cmd.timeout_s)
        elif isinstance(cmd, ReconfigureCmd):
            self._ask(
                self.system.ref(record.address, record.actor),
                Reconfigure(cmd.user_config),
                f"reconfigure:{cmd.user_config_version}",
                rid,
                self.settings.control_timeout_s,
            )

    def _ask(self, ref: ActorRef, message: Any, what: str, rid: str, timeout: float) -> None:
        try:
            future = ref.ask(message, timeout=timeout)
        except Exception as exc:
            self._tell_self(_Result(what, rid, None, f"{type(exc).__name__}: {exc}"))
            return
        future.add_done_callback(lambda done: self._tell_self(_settled(what, rid, done)))

    def _tell_self(self, message: Any) -> None:
        try:
            self.actor_ref.tell(message)
        except Exception:
            pass  # the controller is stopping

    def _on_death(self, what: str, key: str) -> Any:
        return lambda _ref, reason: self._tell_self(_Died(what, key, reason))

    # ---- results ----------------------------------------------------------------------

    def _state_of(self, replica_id: str) -> DeploymentState | None:
        owner = self.owner.get(replica_id)
        if owner is None:
            return None
        app = self.apps.get(owner[0])
        return None if app is None else app.deployments.get(owner[1])

    def _watch_replica(self, rid: str, record: Any) -> None:
        self.system.watch(self.system.ref(record.address, record.actor), self._on_death("replica", rid))

    def _on_result(self, result: _Result) -> None:
        now = time.monotonic()
        if result.what == "inventory":
            self._on_inventory(result.replica_id, result.value, result.error)
            return
        if result.what == "gang_started":
            members = result.value
            state = self._state_of(members[0]) if members else None
            if state is None:
                return
            for rid in members:
                state.on_started(rid, now)
            for rid in members:
                record = state.replicas.get(rid)
                if record is not None and state.replicas.state_of(rid) in (ReplicaState.RUNNING,):
                    self._watch_replica(rid, record)
            self._execute_all(state, state.take_queued())
            self._publish((state.app, state.name))
            return
        state = self._state_of(result.replica_id)
        rid = result.replica_id
        if state is None:
            return
        if result.what == "start":
            if result.error is None:
                state.on_started(rid, now)
                record = state.replicas.get(rid)
                if record is not None:
                    self._watch_replica(rid, record)
            else:
                log.warning("replica %s failed to start: %s", rid, result.error)
                state.on_start_failed(rid, result.error, now)
                self._execute_all(state, state.take_queued())
        elif result.what == "stop":
            state.on_stopped(rid)
            self.owner.pop(rid, None)
        elif result.what == "health":
            ongoing = result.value.get("ongoing", 0) if isinstance(result.value, dict) else 0
            stop = state.on_health(rid, result.error is None, ongoing, result.error or "", now)
            if stop is not None:
                self._execute_all(state, [stop, *state.take_queued()])
        elif result.what.startswith("reconfigure:"):
            stop = state.on_reconfigured(rid, int(result.what.split(":", 1)[1]), result.error)
            if stop is not None:
                self._execute(state, stop)
        self._publish((state.app, state.name))

    def _on_died(self, died: _Died) -> None:
        if died.what == "node":
            self._lose_node(died.key, died.reason)
        elif died.what == "replica":
            state = self._state_of(died.key)
            if state is not None:
                state.on_died(died.key, died.reason)
                self.owner.pop(died.key, None)
                self._execute_all(state, state.take_queued())
                self._publish((state.app, state.name))
        else:
            for subscribers in self.subscribers.values():
                subscribers.discard(died.key)
            self.revision += 1

    def _lose_node(self, node_id: str, reason: str) -> None:
        node = self.nodes.pop(node_id, None)
        if node is None:
            return
        self.revision += 1
        self.recovery.waiting.pop(node_id, None)
        if node.watch_token is not None:
            self.system.unwatch(node.watch_token)
        level = logging.INFO if reason == "stopped" else logging.WARNING
        log.log(level, "worker %s is gone: %s", node_id, reason)
        for app in self.apps.values():
            for state in app.deployments.values():
                state.on_node_lost(node_id, reason)
                self._publish((app.name, state.name))
        self.cluster.remove_node(node_id)

    # ---- views ------------------------------------------------------------------------

    def _publish(self, key: tuple[str, str], force: bool = False) -> None:
        subscribers = self.subscribers.get(key)
        if not subscribers:
            return
        if not force and self.published.get(key) == self._replica_set_version(key):
            return  # unchanged: checked before building a set of every replica
        update = self._replica_set(key)
        self.published[key] = update.version
        for subscriber in list(subscribers):
            try:
                self.system.ref(subscriber).tell(update)
            except Exception as exc:
                log.debug("replica set for %s not sent to %s: %s", key, subscriber, exc)

def _describe(exc: BaseException) -> str:
    error = f"{getattr(exc, 'type_name', '') or type(exc).__name__}: {exc}"
    remote_tb = getattr(exc, "remote_traceback", "")
    return f"{error}\n{remote_tb.rstrip()}" if remote_tb else error


def _settled(what: str, rid: str, done: Future[Any]) -> _Result:
    try:
        return _Result(what, rid, done.get(0), None)
    except Exception as exc:
        # a failed start shows the constructor's traceback; other failures one line
        error = _describe(exc) if what == "start" else f"{getattr(exc, 'type_name', '') or type(exc).__name__}: {exc}"
        return _Result(what, rid, None, error)
