"""This process's connection to a corral cluster: the routers of the
deployments it calls, their replica-set subscriptions, the watch on the
controller, and the process's one metrics aggregator.

Created once per process (by ``serve.start``, a worker's main, or the
embedded head) and passed to what needs it: handles, routers, replicas.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable

from protocol import GetStatus, ReplicaSet, ServeStatusInfo, SubscribeReplicas

from ..._config import Config
from ..._ref import ActorRef
from ..._system import ActorSystem
from .._app import resolve_arguments, resolve_markers
from .._names import CONTROLLER_NAME, MEMBERSHIP_ACTOR, METRICS_ACTOR
from ._handle import DeploymentHandle
from ._membership import Membership
from ._metrics import GetAggregatorStatistics, MetricsAggregator, MetricsRegistry
from ._router import Router

log = logging.getLogger("corral.serve")


@dataclass
class Session:
    """Everything this process needs to talk to the cluster."""

    system: ActorSystem
    config: Config
    controller: ActorRef
    own_system: bool
    workers: list[Any] = field(default_factory=list)  # worker processes this process started (embedded head)
    routers: weakref.WeakValueDictionary[tuple[str, str], Router] = field(default_factory=weakref.WeakValueDictionary)
    handles: dict[tuple[str, str], Any] = field(default_factory=dict)  # serve.get_app_handle's, one per deployment
    metrics: MetricsRegistry = field(default_factory=MetricsRegistry)
    _aggregator: ActorRef | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _metrics_lock: threading.Lock = field(default_factory=threading.Lock)
    _closed: threading.Event = field(default_factory=threading.Event)
    _close_hooks: list[Callable[[], None]] = field(default_factory=list)
    _controller_lost: threading.Event = field(default_factory=threading.Event)
    _next_refresh: float = 0.0
    _refreshing: bool = False
    closed: bool = False  # whether close() was called (a plain flag: every request reads it)

    def register_metrics(self, source: Any) -> int:
        """Register a handle's router or a replica with this process's one
        MetricsAggregator, starting the aggregator on first use."""
        if self._aggregator is None:
            with self._metrics_lock:
                if self._aggregator is None:
                    self._aggregator = self.system.spawn(
                        MetricsAggregator, self.metrics, self.config.serve, self.controller, name=METRICS_ACTOR
                    )
        return self.metrics.register(source)

    def aggregator_statistics(self) -> Any:
        """A snapshot of the aggregator's counters (None before it started)."""
        if self._aggregator is None:
            return None
        return self._aggregator.ask(GetAggregatorStatistics(), timeout=self.config.serve.control_timeout_s).get()

    def ask_controller(self, message: Any) -> Any:
        """Ask the controller and wait (bounded by ``control_timeout_s``)."""
        timeout = self.config.serve.control_timeout_s
        return self.controller.ask(message, timeout=timeout).get()

    def status_info(self, app: str | None = None, replicas: bool = True) -> ServeStatusInfo:
        """The controller's status of every application, or of ``app`` only;
        ``replicas``: with a row per replica."""
        return self.ask_controller(GetStatus(app, replicas))  # type: ignore[no-any-return]

    def router(self, app: str, deployment: str) -> Router:
        """The router of a deployment in this process; the first use subscribes
        the process (one subscription per process, however many handles)."""
        key = (app, deployment)
        router = self.routers.get(key)
        if router is not None and router.known:
            return router
        with self._lock:
            router = self.routers.get(key)
            if router is None:
                router = Router(self, app, deployment)
                self.routers[key] = router
        if not router.known:
            subscriber = f"{self.system.address}#{MEMBERSHIP_ACTOR}"
            router.update(self.ask_controller(SubscribeReplicas(app, deployment, subscriber)))
        return router

    def all_routers(self) -> list[Router]:
        """The routers alive now (a copy: another thread may add one meanwhile)."""
        with self._lock:
            return list(self.routers.values())

    def on_peer_down(self, address: str, reason: str) -> None:
        """A process is gone: routers stop sending to its replicas at once."""
        for router in self.all_routers():
            router.peer_down(address, reason)

    def on_replica_set(self, update: ReplicaSet) -> None:
        router = self.routers.get((update.app, update.deployment))
        if router is not None:
            router.update(update)

    def sweep(self) -> None:
        """Until closed: fail requests that waited at a handle past their
        deadline, and renew the replica-set subscriptions when due."""
        self._next_refresh = time.monotonic() + self.config.serve.subscription_refresh_s
        while not self._closed.wait(0.1):
            now = time.monotonic()
            try:
                for router in self.all_routers():
                    router.expire(now)
                if now >= self._next_refresh and not self._refreshing:
                    self._refresh_subscriptions(now)
            except Exception:  # a bug here must not end the sweeps for good
                log.exception("the handle sweeper failed; it goes on")

    def on_controller_lost(self) -> None:
        """The controller's process went silent: renew subscriptions soon and
        often until it answers (a restarted controller may not know them)."""
        self._controller_lost.set()
        self._next_refresh = time.monotonic() + self.config.serve.recovery_retry_s

    def _refresh_subscriptions(self, now: float) -> None:
        settings = self.config.serve
        routers = [r for r in self.all_routers() if r.known]
        lost = self._controller_lost.is_set()
        self._next_refresh = now + (settings.recovery_retry_s if lost else settings.subscription_refresh_s)
        if not routers:
            return
        subscriber = f"{self.system.address}#{MEMBERSHIP_ACTOR}"
        round_ = _RefreshRound(len(routers))
        self._refreshing = True
        for router in routers:
            try:
                future = self.controller.ask(
                    SubscribeReplicas(router.key[0], router.key[1], subscriber, router.version), timeout=settings.control_timeout_s
                )
            except Exception:
                self._refreshed(round_, router, None)
                continue
            future.add_done_callback(lambda done, router=router: self._refreshed(round_, router, done))

    def _refreshed(self, round_: _RefreshRound, router: Router, done: Any) -> None:
        try:
            update = done.get(0) if done is not None else None
        except Exception:
            update = None
        if update is not None:
            router.update(update)
        if not round_.settle(update is not None):
            return
        self._refreshing = False
        if round_.failed:
            if self._controller_lost.is_set():
                self._next_refresh = time.monotonic() + self.config.serve.recovery_retry_s
        elif self._controller_lost.is_set():
            self._controller_lost.clear()  # it answers again: back to the slow refresh, watched again
            self._watch_controller()
            self._next_refresh = time.monotonic() + self.config.serve.subscription_refresh_s

    def _watch_controller(self) -> None:
        try:
            self.system.watch(self.controller, lambda _ref, _why: self.on_controller_lost())
        except Exception as exc:  # the system is shutting down
            log.debug("not watching the controller: %s", exc)

    def make_handle(self, app: str, deployment: str) -> Any:
        """A handle passed in a replica's arguments. It subscribes at once (the
        controller is up while replicas start), so it keeps serving through a
        controller restart like any handle that knows its replicas."""
        try:
            return DeploymentHandle(app, deployment, _router=self.router(app, deployment))
        except Exception as exc:  # the controller is away: subscribe on the first request instead
            log.debug("handle to %s/%s not subscribed yet: %s", app, deployment, exc)
            return DeploymentHandle(app, deployment, _session=self)

    def resolve(self, value: Any) -> Any:
        """``value`` (a deployment's bound arguments) with its handle markers, at any depth, replaced by handles."""
        return resolve_markers(value, self.make_handle)

    def resolve_arguments(self, args: Any, kwargs: Any) -> tuple[Any, Any]:
        """A request's arguments with the handles passed in them (marked at the top level) made handles."""
        return resolve_arguments(args, kwargs, self.make_handle)

    def on_close(self, hook: Callable[[], None], first: bool = False) -> None:
        """Run ``hook`` when the session closes, before its actor system shuts
        down (the embedded head stops its controller and workers this way);
        ``first``: before the hooks added so far."""
        self._close_hooks.insert(0, hook) if first else self._close_hooks.append(hook)

    def close(self) -> None:
        """Stop what this session started; idempotent."""
        if self._closed.is_set():
            return
        self.closed = True
        self._closed.set()
        for hook in self._close_hooks:
            try:
                hook()
            except Exception as exc:
                log.warning("closing the serve session: %s", exc)
        if self.own_system:
            self.system.shutdown()


class _RefreshRound:
    """One renewal of every subscription: counts answers from any thread."""

    def __init__(self, expected: int) -> None:
        self.left = expected
        self.failed = 0
        self._lock = threading.Lock()

    def settle(self, ok: bool) -> bool:
        """Count one answer; True for the last one."""
        with self._lock:
            self.left -= 1
            self.failed += 0 if ok else 1
            return self.left == 0




def connect(address: str, config: Config, system: ActorSystem | None = None) -> Session:
    """Connect this process to the controller at ``address`` (``tcp://host:port`` or ``...#controller``).

    Args:
        address: the controller's process, or ``ADDRESS#controller``.
        config: settings of the actor system to start (when ``system`` is None).
        system: an actor system this process already runs (a worker's).

    Raises:
        ConnectionError: no controller answers there.
    """
    own = system is None
    system = system or ActorSystem(config)
    ref_text = address if "#" in address else f"{address}#{CONTROLLER_NAME}"
    try:
        controller = system.ref(ref_text)
        session = attach(system, controller, config, own_system=own)
        session.controller.ask(GetStatus(), timeout=min(5.0, config.serve.control_timeout_s)).get()
    except Exception as exc:
        if own:
            system.shutdown()
        hint = "" if config.transport.curve is not None else (
            "; a cluster started with `corral start` admits only holders of its keys: "
            "serve.start(address=..., keys='<its folder>/keys'), the folder `corral start` printed"
        )
        raise ConnectionError(f"no corral cluster answers at {address}: {exc}{hint}") from None
    session._watch_controller()  # once it answered: a death seen later makes us renew subscriptions
    return session


def client_bind_host(address: str) -> str | None:
    """Where a client of the cluster at ``address`` binds so the cluster can
    answer it: ipc (None) for a cluster on this machine's loopback, the
    cluster's own interface when it is one of this machine's, else this
    machine's address on the route to the cluster (a container network's
    gateway, a LAN address), or all interfaces when that cannot be told."""
    host = address[len("tcp://"):].rsplit(":", 1)[0] if address.startswith("tcp://") else ""
    if not host or host.startswith("127.") or host == "localhost":
        return None
    with socket.socket() as probe:
        try:
            probe.bind((host, 0))
            return host
        except OSError:
            pass
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as route:
            route.connect((host, 9))  # no packet is sent: the kernel picks the interface
            return str(route.getsockname()[0])
    except OSError:
        return "0.0.0.0"


def attach(system: ActorSystem, controller: ActorRef, config: Config, own_system: bool) -> Session:
    """A session of this process's actor system with the controller at ``controller``:
    its membership actor, its death listener and its sweeper thread run from now on."""
    session = Session(system, config, controller, own_system)
    system.add_peer_listener(session.on_peer_down)
    system.spawn(Membership, session.on_replica_set, name=MEMBERSHIP_ACTOR)
    threading.Thread(target=session.sweep, name="serve-handle-sweeper", daemon=True).start()
    return session
