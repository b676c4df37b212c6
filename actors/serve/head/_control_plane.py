"""The control plane, sans I/O: applications, deployments, workers, the
resource book and the revision, driven by events and answering with effects.

Theory of operation: :meth:`ControlPlane.handle` takes one event (a request,
an answer to one of its own asks, a death, a tick) with the time, changes the
state, returns the request's answer, and leaves the effects to carry out in
:meth:`take_effects` (asks, tells, watches, replica-set pushes, checkpoint
writes). It never blocks, sends, reads a clock or touches a socket: the
Controller actor does, and feeds the outcomes back as events. Each
deployment's decisions are :class:`DeploymentState`'s; placement is a pure
call into the :class:`Cluster` this object owns. Recovery after a restart,
the metrics ledger and the status views are separate objects that share
this one's state, composed, never mixed in.
"""

from __future__ import annotations

import logging
import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

from protocol import Checkpoint, ReplicaSet

from ..._config import ServeSettings
from .._autoscaling import AutoscalingDecider
from .._names import NODE_ACTOR
from .._options import DeploymentConfig, DeploymentOptionError
from . import _effects as fx
from . import _events as ev
from ._agenda import Agenda
from ._commands import Command
from ._controller_metrics import MetricsLedger, load_policies, whole_gangs
from ._command_effects import CommandEffects
from ._controller_views import StatusViews
from ._route_book import RouteBook
from ._deployment_state import DeploymentState, make_limits
from ._placement import Cluster
from ._recovery import Recovery
from ._replica_states import ReplicaState

log = logging.getLogger("corral.serve")


@dataclass
class App:
    """An application: its deployments by name, and which one is the ingress."""

    name: str
    ingress: str
    deployments: dict[str, DeploymentState]
    deleting: bool = False
    route_prefix: str | None = None


@dataclass
class NodeRecord:
    """A registered worker."""

    node_id: str
    address: str
    resources: dict[str, float]
    pid: int = 0  # the worker process and its resident memory, from its last hello
    rss: int = 0


class ControlPlane:
    """The control plane's state and decisions (pure; see the module docstring).

    Args:
        settings: the serving layer's settings.
        checkpointing: whether checkpoints are written (a store is configured).
        store_location: where they go, for messages.
    """

    def __init__(self, settings: ServeSettings, checkpointing: bool = False, store_location: str = "") -> None:
        self.settings = settings
        self.agenda = Agenda()
        self.route_book = RouteBook(self.emit)
        self.pickle_allowed = False  # the shell says whether the cluster's transport is authenticated or local
        self.limits = make_limits(settings.constructor_retries_per_replica, settings.max_constructor_retries,
                                  settings.health_check_failure_threshold)
        self.cluster = Cluster()
        self.apps: dict[str, App] = {}
        self.nodes: dict[str, NodeRecord] = {}
        self.owner: dict[str, tuple[str, str]] = {}
        self.subscribers: dict[tuple[str, str], set[str]] = {}
        self.published: dict[tuple[str, str], int] = {}
        self.revision = 0
        self.now = 0.0
        self.wall = 0.0
        self.recovery = Recovery(self, checkpointing, store_location)
        self.ledger = MetricsLedger(self)
        self.views = StatusViews(self)
        self._commands = CommandEffects(self)
        self._effects: list[Any] = []
        self._followups: list[Any] = []
        self._handlers: dict[type, Callable[[Any], Any]] = {
            ev.Tick: lambda _e: self.tick(),
            ev.Deploy: lambda e: self._deploy(e.request),
            ev.Delete: lambda e: self._delete(e.request.name),
            ev.Register: lambda e: self._register(e.request),
            ev.Hello: lambda e: self._hello(e.request),
            ev.Subscribe: lambda e: self._subscribe(e.request),
            ev.MetricsPushed: lambda e: self.ledger.on_push(e.push),
            ev.StatusAsked: lambda e: self.views.status(e.app, e.replicas),
            ev.StatsAsked: lambda _e: self.views.stats(),
            ev.ClearAsked: lambda _e: self.recovery.clear(),
            ev.StartReplied: self._on_start_replied,
            ev.GangStarted: self._on_gang_started,
            ev.StopReplied: self._on_replica_event,
            ev.HealthReplied: self._on_replica_event,
            ev.HealthBatchReplied: lambda e: self._followups.extend(ev.health_replies(e)),
            ev.Reconfigured: self._on_replica_event,
            ev.InventoryReplied: lambda e: self.recovery.on_inventory(e.node_id, e.value, e.error, e.gone),
            ev.CheckpointWritten: self.recovery.on_written,
            ev.NodeDied: lambda e: self.lose_node(e.node_id, e.reason),
            ev.ReplicaDied: self._on_replica_event,
            ev.SubscriberDied: self._on_subscriber_died,
        }

    # ---- the interface ----------------------------------------------------------------

    def handle(self, event: Any, now: float, wall: float = 0.0) -> Any:
        """Apply one event at monotonic time ``now`` (``wall``: UNIX time); returns
        the answer to a request event (None for others).

        Raises:
            TypeError: an event of an unknown kind.
            ValueError, DeploymentOptionError, RuntimeError: a request that is
                refused; nothing of it was applied.
        """
        handler = self._handlers.get(type(event))
        if handler is None:
            raise TypeError(f"the control plane does not handle {type(event).__name__} events")
        self.now, self.wall = now, wall
        answer = handler(event)
        while self._followups:  # outcomes known at once (a worker already gone), handled after this event
            follow = self._followups.pop(0)
            self._handlers[type(follow)](follow)
        return answer

    def take_effects(self) -> list[Any]:
        """What to carry out now, oldest first; each effect is handed out once."""
        self._commands.flush()
        effects, self._effects = self._effects, []
        return effects

    def restore(self, checkpoint: Checkpoint, now: float, wall: float = 0.0) -> None:
        """Start from a checkpoint (see :class:`Recovery`): every worker is asked what it runs.

        Raises:
            CheckpointError: the checkpoint names options that are no longer valid.
        """
        self.now, self.wall = now, wall
        self.recovery.restore(checkpoint)

    def emit(self, effect: Any) -> None:
        """Add an effect for the shell to carry out."""
        self._effects.append(effect)

    def later(self, event: Any) -> None:
        """Handle ``event`` once the current one is done (an outcome known at once)."""
        self._followups.append(event)

    # ---- requests ---------------------------------------------------------------------

    def _register(self, message: Any) -> str:
        if not message.node_id or "#" in message.node_id:
            raise ValueError(f"node id must be non-empty without '#', got {message.node_id!r}")
        for name, amount in message.resources.items():
            if not name or not amount >= 0:
                raise ValueError(f"resource {name!r} of node {message.node_id!r} must be a number >= 0, got {amount!r}")
        if message.node_id in self.nodes:
            self.lose_node(message.node_id, "it registered again (restarted)")
        self.add_node(message.node_id, message.address, message.resources)
        for app in self.apps.values():
            for state in app.deployments.values():
                state.mark_dirty()  # replicas or gangs waiting for room may fit now
        log.info("worker %s joined from %s with %s", message.node_id, message.address, message.resources)
        return str(message.node_id)

    def add_node(self, node_id: str, address: str, resources: dict[str, float], watch: bool = True) -> None:
        self.cluster.add_node(node_id, address, resources)
        self.nodes[node_id] = NodeRecord(node_id, address, dict(resources))
        if watch:
            self.watch_node(node_id)
        self.revision += 1

    def watch_node(self, node_id: str) -> None:
        node = self.nodes[node_id]
        self.emit(fx.Watch(node.address, NODE_ACTOR, ev.NodeDied(node_id), key=f"node:{node_id}"))

    def _hello(self, message: Any) -> dict[str, Any]:
        node = self.nodes.get(message.node_id)
        if node is None or node.address != message.address:
            return {"known": False, "stop": []}
        self.recovery.reachable(message.node_id)
        if len(message.worker) == 2:
            node.pid, node.rss = message.worker
        for rid, info in message.processes.items():
            state = self.state_of(rid)
            record = None if state is None else state.replicas.get(rid)
            if record is not None and len(info) == 2 and record.node_id == message.node_id:
                record.pid, record.rss_bytes = info
        return {"known": True, "stop": [rid for rid in message.replicas if not self._runs_on(rid, message.node_id)]}

    def _runs_on(self, rid: str, node_id: str) -> bool:
        """Whether the controller has replica ``rid`` on that worker (O(1): hellos cost what they list)."""
        state = self.state_of(rid)
        record = None if state is None else state.replicas.get(rid)
        return record is not None and record.node_id == node_id

    def _deploy(self, message: Any) -> str:
        if not message.name or "#" in message.name:
            raise ValueError(f"application name must be non-empty without '#', got {message.name!r}")
        names = [spec.name for spec in message.deployments]
        if message.ingress not in names:
            raise ValueError(f"ingress deployment {message.ingress!r} is not among the deployments {names}")
        configs = {spec.name: self._checked_config(spec) for spec in message.deployments}
        policies = load_policies(configs)
        app = self.apps.get(message.name)
        if app is not None and app.deleting:
            raise RuntimeError(f"application {message.name!r} is being deleted; deploy it again once it is gone")
        prefix = self.route_book.check(self.apps.values(), message.name, message.route_prefix)
        if app is None:
            app = self.apps[message.name] = self.new_app(message.name, message.ingress)
        app.ingress, app.route_prefix = message.ingress, prefix
        self.revision += 1
        for spec in message.deployments:
            config = configs[spec.name]
            spec = _with_gang_version(spec, config)
            autoscaling = config.autoscaling()
            state = app.deployments.get(spec.name)
            keep = state is not None and state.autoscaler is not None and state.config.autoscaling_config == config.autoscaling_config
            if autoscaling is not None:
                start = state.config.num_replicas if keep else autoscaling.start_replicas  # type: ignore[union-attr]
                config = config.replace(num_replicas=whole_gangs(start, config))
            if state is None:
                state = app.deployments[spec.name] = self.agenda.adopt(DeploymentState(spec, config, self.cluster, self.limits))
            else:
                state.deleting = False
                state.set_target(spec, config)
            if autoscaling is None:
                state.autoscaler = None
            elif not keep:
                state.autoscaler = AutoscalingDecider(autoscaling, policies.get(spec.name))
            self.agenda.adopt(state)  # again: whether it autoscales may have changed
        for name, state in app.deployments.items():
            if name not in configs:
                state.delete()
        self.tick()
        self.route_book.announce(self.apps.values())
        return "ok"

    def pickles(self, config: DeploymentConfig) -> bool:
        """Whether a deployment's values with no codec are pickled (its own opt-in or the cluster's)."""
        return config.serializer == "pickle" or self.settings.serializer == "pickle"

    def _checked_config(self, spec: Any) -> DeploymentConfig:
        try:
            config = DeploymentConfig.from_dict(spec.config)
        except DeploymentOptionError as exc:
            raise DeploymentOptionError(f"deployment {spec.name!r}: {exc}") from None
        if self.pickles(config) and not self.pickle_allowed:
            raise DeploymentOptionError(
                f"deployment {spec.name!r}: serializer='pickle' (its own or ServeSettings.serializer) is refused on "
                "this cluster: its transport is plain "
                "TCP without CurveZMQ, and a pickle from anyone who can reach a port runs their code. Start the "
                "cluster with keys (`corral start` does) or on ipc (one machine) to opt in"
            )
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
        return config

    def new_app(self, name: str, ingress: str, deleting: bool = False) -> App:
        return App(name, ingress, {}, deleting)

    def _delete(self, name: str) -> str:
        app = self.apps.get(name)
        if app is None:
            return "not found"
        app.deleting = True
        self.revision += 1
        for state in app.deployments.values():
            state.delete()
        self.tick()
        self.route_book.announce(self.apps.values())
        return "deleting"

    def _subscribe(self, message: Any) -> ReplicaSet:
        key = (message.app, message.deployment)
        self.add_subscriber(key, message.subscriber)
        return self.views.replica_set(key, message.known_version)

    def add_subscriber(self, key: tuple[str, str], subscriber: str) -> None:
        subscribers = self.subscribers.setdefault(key, set())
        if subscriber not in subscribers:
            subscribers.add(subscriber)
            self.revision += 1
            address, _, actor = subscriber.rpartition("#")
            self.emit(fx.Watch(address, actor, ev.SubscriberDied(subscriber)))

    # ---- the loop ---------------------------------------------------------------------

    def tick(self) -> None:
        """One pass of the reconcile loop: it looks only at the deployments on the
        agenda (changed, or a check due) and the autoscaled ones, never at all."""
        now = self.now
        self.recovery.tick()
        agenda = self.agenda
        for key in list(agenda.autoscaled):
            state = self._state(key)
            if state is None:
                agenda.autoscaled.discard(key)
            elif state.autoscaler is not None and not state.deleting and now >= state.next_autoscale:
                self.ledger.autoscale(key[0], state, now)
        for key in agenda.take(now):
            state = self._state(key)
            if state is None:
                continue
            if not state.needs_reconcile(now):
                if state._dirty:  # waiting for its replicas to be recovered: look again next tick
                    agenda.dirty.add(key)
                continue
            self.execute(state, state.handle(ev.Tick(), now))
            app = self.apps[key[0]]
            if state.finished_deleting:
                del app.deployments[key[1]]
                agenda.autoscaled.discard(key)
                self.revision += 1
                self.ledger.forget(key)
                self.publish(key, force=True)
            else:
                self.publish(key)
                if state._health_heap:  # its next check, whoever scheduled it
                    agenda.at(state._health_heap[0][0], key)
            if app.deleting and not app.deployments:
                del self.apps[app.name]
                self.revision += 1
        self.recovery.maybe_checkpoint()

    def _state(self, key: tuple[str, str]) -> DeploymentState | None:
        app = self.apps.get(key[0])
        return None if app is None else app.deployments.get(key[1])

    def execute(self, state: DeploymentState, cmds: list[Command]) -> None:
        """Turn a deployment's commands into effects (see :class:`CommandEffects`)."""
        self._commands.run(state, cmds)

    # ---- answers and deaths -----------------------------------------------------------

    def state_of(self, replica_id: str) -> DeploymentState | None:
        owner = self.owner.get(replica_id)
        if owner is None:
            return None
        app = self.apps.get(owner[0])
        return None if app is None else app.deployments.get(owner[1])

    def watch_replica(self, rid: str, record: Any) -> None:
        self.emit(fx.Watch(record.address, record.actor, ev.ReplicaDied(rid)))

    def _on_start_replied(self, event: ev.StartReplied) -> None:
        state = self.state_of(event.replica_id)
        if state is None:
            return
        if event.error is not None:
            log.warning("replica %s failed to start: %s", event.replica_id, event.error)
        self.execute(state, state.handle(event, self.now))
        record = state.replicas.get(event.replica_id)
        if event.error is None and record is not None:
            self.watch_replica(event.replica_id, record)
        self.publish((state.app, state.name))

    def _on_gang_started(self, event: ev.GangStarted) -> None:
        state = self.state_of(event.members[0]) if event.members else None
        if state is None:
            return
        self.execute(state, state.handle(event, self.now))
        for rid in event.members:
            record = state.replicas.get(rid)
            if record is not None and state.replicas.state_of(rid) is ReplicaState.RUNNING:
                self.watch_replica(rid, record)
        self.publish((state.app, state.name))

    def _on_replica_event(self, event: Any) -> None:
        """A replica stopped, answered a health check or a reconfigure, or died."""
        state = self.state_of(event.replica_id)
        if state is None:
            return
        self.execute(state, state.handle(event, self.now))
        if isinstance(event, (ev.StopReplied, ev.ReplicaDied)):
            self.owner.pop(event.replica_id, None)
        self.publish((state.app, state.name))

    def _on_subscriber_died(self, event: ev.SubscriberDied) -> None:
        for subscribers in self.subscribers.values():
            subscribers.discard(event.subscriber)
        self.revision += 1

    def lose_node(self, node_id: str, reason: str) -> None:
        """A worker is gone: its replicas are replaced (whole gangs for gangs)."""
        node = self.nodes.pop(node_id, None)
        if node is None:
            return
        self.revision += 1
        self.recovery.forget(node_id)
        self.emit(fx.Unwatch(f"node:{node_id}"))
        level = logging.INFO if reason == "stopped" else logging.WARNING
        log.log(level, "worker %s is gone: %s", node_id, reason)
        for app in self.apps.values():
            for state in app.deployments.values():
                self.execute(state, state.handle(ev.NodeDied(node_id, reason), self.now))
                self.publish((app.name, state.name))
        self.cluster.remove_node(node_id)

    def publish(self, key: tuple[str, str], force: bool = False) -> None:
        """Push a deployment's replica set to its subscribers if it changed."""
        subscribers = self.subscribers.get(key)
        if not subscribers:
            return
        if not force and self.published.get(key) == self.views.replica_set_version(key):
            return  # unchanged: checked before building a set of every replica
        update = self.views.replica_set(key)
        self.published[key] = update.version
        self.emit(fx.Publish(tuple(sorted(subscribers)), update))


def _with_gang_version(spec: Any, config: DeploymentConfig) -> Any:
    """Gangs are part of what a replica is: another gang layout (or none) replaces
    every replica, as a new version does, so no gang is ever left partial."""
    gang = config.gang()
    if gang is None:
        return spec
    layout = f"{gang.gang_size}-{gang.gang_placement_strategy}-{gang.runtime_failure_policy}"
    return dataclasses.replace(spec, version=f"{spec.version}+gang{layout}")
