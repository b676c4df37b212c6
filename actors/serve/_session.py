"""This process's connection to a corral cluster (or the embedded head itself)."""

from __future__ import annotations

import atexit
import dataclasses
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Any

from protocol import GetStatus, ReplicaSet, ServeStatusInfo, SubscribeReplicas

from .._config import Config, config_to_json
from .._ref import ActorRef
from .._system import ActorSystem
from ._app import resolve_markers
from ._controller import CONTROLLER_NAME, ClearCheckpoint, Controller
from ._recovery import load_checkpoint
from ._store import open_store
from ._metrics import METRICS_ACTOR, GetAggregatorStatistics, MetricsAggregator, MetricsRegistry
from ._router import Router
from ._routes import MEMBERSHIP_ACTOR, Membership
from ._worker_args import worker_args

log = logging.getLogger("corral.serve")


class WorkerProcess:
    """A worker started by this process; it exits when our pipe to it closes."""

    def __init__(self, node_id: str, controller: str, resources: dict[str, float], config: Config) -> None:
        self.node_id = node_id
        env = dict(os.environ)
        paths = [p for p in sys.path if p and os.path.isdir(p)]
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys([*paths, env.get("PYTHONPATH", "")]))
        self.proc = subprocess.Popen(
            [sys.executable, *worker_args(controller, node_id, json.dumps(resources), config_to_json(_worker_config(config)))],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.address = ""

    def wait_ready(self, deadline: float) -> None:
        """Wait for the worker to print its address.

        Raises:
            RuntimeError: it exited or did not register in time.
        """
        box: list[str] = []
        reader = threading.Thread(target=lambda: box.append(self.proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(max(0.0, deadline - time.monotonic()))
        line = box[0] if box else ""
        if not line.startswith("ADDRESS "):
            code = self.proc.poll()
            self.kill()
            state = f"exited with code {code}" if code is not None else "did not register in time"
            raise RuntimeError(f"worker {self.node_id} {state}")
        self.address = line.split()[1]

    def stop(self, timeout: float) -> None:
        """Close the pipe (the worker stops its replicas and exits); kill after ``timeout``."""
        if self.proc.poll() is None and self.proc.stdin is not None:
            try:
                self.proc.stdin.close()
            except BrokenPipeError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("worker %s did not stop within %.1fs; killing it", self.node_id, timeout)
        self.kill()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None and not stream.closed:
                try:
                    stream.close()
                except BrokenPipeError:
                    pass


def _worker_config(config: Config) -> Config:
    """A worker binds its own endpoint: never the head's fixed TCP port."""
    if config.transport.port == 0:
        return config
    return dataclasses.replace(config, transport=dataclasses.replace(config.transport, port=0))


@dataclass
class Session:
    """Everything this process needs to talk to the cluster."""

    system: ActorSystem
    config: Config
    controller: ActorRef
    own_system: bool
    workers: list[WorkerProcess] = field(default_factory=list)
    routers: weakref.WeakValueDictionary[tuple[str, str], Router] = field(default_factory=weakref.WeakValueDictionary)
    metrics: MetricsRegistry = field(default_factory=MetricsRegistry)
    _aggregator: ActorRef | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _metrics_lock: threading.Lock = field(default_factory=threading.Lock)
    _closed: threading.Event = field(default_factory=threading.Event)
    _controller_lost: threading.Event = field(default_factory=threading.Event)
    _next_refresh: float = 0.0
    _refreshing: bool = False

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

    def status_info(self) -> ServeStatusInfo:
        return self.ask_controller(GetStatus())  # type: ignore[no-any-return]

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

    def on_peer_down(self, address: str, reason: str) -> None:
        """A process is gone: routers stop sending to its replicas at once."""
        for router in list(self.routers.values()):
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
            for router in list(self.routers.values()):
                router.expire(now)
            if now >= self._next_refresh and not self._refreshing:
                self._refresh_subscriptions(now)

    def on_controller_lost(self) -> None:
        """The controller's process went silent: renew subscriptions soon and
        often until it answers (a restarted controller may not know them)."""
        self._controller_lost.set()
        self._next_refresh = time.monotonic() + self.config.serve.recovery_retry_s

    def _refresh_subscriptions(self, now: float) -> None:
        settings = self.config.serve
        routers = [r for r in list(self.routers.values()) if r.known]
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
                    SubscribeReplicas(router.key[0], router.key[1], subscriber), timeout=settings.control_timeout_s
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
        from ._handle import DeploymentHandle

        try:
            return DeploymentHandle(app, deployment, _router=self.router(app, deployment))
        except Exception as exc:  # the controller is away: subscribe on the first request instead
            log.debug("handle to %s/%s not subscribed yet: %s", app, deployment, exc)
            return DeploymentHandle(app, deployment)

    def resolve(self, value: Any) -> Any:
        return resolve_markers(value, self.make_handle)

    def add_worker(self, resources: dict[str, float], node_id: str | None = None) -> str:
        """Start one more worker process (embedded head only)."""
        if not self.own_system or self.system.ref(self.system.address, CONTROLLER_NAME) != self.controller:
            raise RuntimeError("serve.add_worker() needs the embedded head started by serve.start(workers=...)")
        node_id = node_id or f"worker-{len(self.workers)}"
        worker = WorkerProcess(node_id, str(self.controller), resources, self.config)
        self.workers.append(worker)
        worker.wait_ready(time.monotonic() + self.config.serve.worker_start_timeout_s)
        return node_id

    def close(self) -> None:
        self._closed.set()
        if self.own_system and self.controller.address == self.system.address and self.workers:
            # this shutdown stops every worker: there is nothing left to recover
            try:
                self.controller.ask(ClearCheckpoint(), timeout=self.config.serve.control_timeout_s).get()
            except Exception as exc:
                log.warning("the controller's checkpoint was not cleared: %s", exc)
        if self.own_system and self.controller.address == self.system.address:
            # the controller goes first, so it does not replace replicas of workers that are leaving
            self.system.stop(self.controller)
        for worker in self.workers:
            worker.stop(self.config.stop_timeout_s)
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


_session: Session | None = None
_session_lock = threading.RLock()
_exit_hook_installed = False


def _install_exit_hook() -> None:
    """Make the process exit normally when its main thread ends without
    ``serve.shutdown()`` (a forgotten call, an uncaught exception, Ctrl-C):
    actor threads are daemons, and this hook shuts the session down first."""
    global _exit_hook_installed
    if not _exit_hook_installed:
        _exit_hook_installed = True
        atexit.register(_close_at_exit)


def _close_at_exit() -> None:
    session = _session
    if session is None:
        return
    if threading.current_thread() is threading.main_thread():
        try:
            signal.signal(signal.SIGINT, _exit_at_once)  # a second Ctrl-C does not wait for the clean-up
        except ValueError:
            pass
    bound = session.config.serve.exit_timeout_s
    closer = threading.Thread(target=close_session, name="serve-exit", daemon=True)
    closer.start()
    closer.join(min(1.0, bound))
    if closer.is_alive():
        print("corral: shutting serve down before exiting (Ctrl-C again to exit at once)", file=sys.stderr, flush=True)
        closer.join(max(0.0, bound - 1.0))
    if closer.is_alive():
        print(f"corral: serve did not shut down within {bound:g}s at exit; exiting anyway", file=sys.stderr, flush=True)


def _exit_at_once(_signum: int, _frame: Any) -> None:
    print("corral: interrupted again; exiting without finishing the shutdown", file=sys.stderr, flush=True)
    os._exit(130)


def current_session() -> Session:
    """The session of this process.

    Raises:
        RuntimeError: serve was not started or connected here.
    """
    session = _session
    if session is None:
        raise RuntimeError("corral serve is not running in this process: call serve.start() first")
    return session


def has_session() -> bool:
    return _session is not None


def start_embedded(workers: list[dict[str, float]], config: Config) -> Session:
    """Start a controller in this process and worker processes around it."""
    global _session
    with _session_lock:
        if _session is not None:
            raise RuntimeError("serve is already started in this process; call serve.shutdown() first")
        settings = config.serve
        fresh = settings.checkpoint_recovery == "fresh"
        store = open_store(settings.checkpoint_store, fresh) if settings.checkpoint_store else None
        try:
            restored = load_checkpoint(store, settings.checkpoint_recovery)
        except BaseException:
            if store is not None:
                store.close()
            raise
        system = ActorSystem(config)
        session: Session | None = None
        try:
            controller = system.spawn(Controller, settings, store, restored, name=CONTROLLER_NAME)
            session = _attach(system, controller, config, own_system=True)
            deadline = time.monotonic() + config.serve.worker_start_timeout_s
            for i, resources in enumerate(workers):
                session.workers.append(WorkerProcess(f"worker-{i}", str(controller), resources, config))
            for worker in session.workers:
                worker.wait_ready(deadline)
        except BaseException:
            for worker in session.workers if session is not None else []:
                worker.kill()
            system.shutdown()
            raise
        _session = session
        _install_exit_hook()
        return session


def connect(address: str, config: Config, system: ActorSystem | None = None) -> Session:
    """Connect this process to the controller at ``address`` (``tcp://host:port`` or ``...#controller``).

    Raises:
        ConnectionError: no controller answers there.
    """
    global _session
    with _session_lock:
        if _session is not None:
            raise RuntimeError("serve is already started in this process; call serve.shutdown() first")
        own = system is None
        system = system or ActorSystem(config)
        ref_text = address if "#" in address else f"{address}#{CONTROLLER_NAME}"
        try:
            controller = system.ref(ref_text)
            session = _attach(system, controller, config, own_system=own)
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
        _session = session
        _install_exit_hook()
        return session


def client_bind_host(address: str) -> str | None:
    """Where a client of the cluster at ``address`` binds so the cluster can
    answer it: ipc (None) for a cluster on this machine's loopback, the
    cluster's own interface when it is one of this machine's, else all interfaces."""
    host = address[len("tcp://"):].rsplit(":", 1)[0] if address.startswith("tcp://") else ""
    if not host or host.startswith("127.") or host == "localhost":
        return None
    with socket.socket() as probe:
        try:
            probe.bind((host, 0))
            return host
        except OSError:
            return "0.0.0.0"


def _attach(system: ActorSystem, controller: ActorRef, config: Config, own_system: bool) -> Session:
    session = Session(system, config, controller, own_system)
    system.add_peer_listener(session.on_peer_down)
    system.spawn(Membership, session.on_replica_set, name=MEMBERSHIP_ACTOR)
    threading.Thread(target=session.sweep, name="serve-handle-sweeper", daemon=True).start()
    return session


def close_session() -> None:
    """Stop what this process started (workers, its actor system) and forget the session."""
    global _session
    with _session_lock:
        session, _session = _session, None
    if session is not None:
        session.close()
