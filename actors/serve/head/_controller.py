"""The Controller actor: the thin shell around :class:`ControlPlane`.

It turns messages, answers and deaths into events, hands them to the control
plane, and carries out the effects it returns: asks and tells to workers and
replicas, watches, replica-set pushes, checkpoint writes. It never blocks:
every ask completes by telling the controller the event the ask named. One
table maps message types to handlers, one maps effect types to what carries
them out.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import deque
from typing import Any, Callable

from protocol import (
    Checkpoint,
    DeleteApp,
    DeployApp,
    FetchPackage,
    GetControllerStats,
    HasPackage,
    UploadPackage,
    GetRoutes,
    GetStatus,
    MetricsPush,
    NodeHello,
    ReplicaExited,
    RegisterNode,
    SubscribeReplicas,
)

from transport import NOTHING_LISTENS, check_endpoint

from ..._actor import Actor
from ..._config import ServeSettings
from ..._future import Future
from ..._gc import FrozenSurvivors
from ..._ticker import Ticker
from .._names import NODE_ACTOR
from . import _effects as fx
from . import _events as ev
from ._control_plane import ControlPlane
from ._gang_coordinator import COORDINATOR_NAME, GangCoordinator, StartGang, StopGang
from ._package_store import PackageStore
from ._store import CheckpointStore

log = logging.getLogger("corral.serve")

_EVENTS = tuple(
    cls for cls in vars(ev).values() if isinstance(cls, type) and dataclasses.is_dataclass(cls) and cls.__module__ == ev.__name__
)


class ClearCheckpoint:
    """Sent (in-process) before an orderly shutdown that stops every worker:
    the checkpoint is removed, nothing is left to recover."""


class _Tick:
    pass


class Controller(Actor):
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
        self.core = ControlPlane(settings, store is not None, store.location if store is not None else "")
        self._restored = restored
        self.loop_ms: deque[float] = deque(maxlen=2000)
        self.ticks = 0
        self._watches: dict[str, int] = {}
        self._ticker: Ticker | None = None
        self.gc = FrozenSurvivors(self.settings.gc_sweep_s) if self.settings.gc_sweep_s else None
        self.coordinator: Any = None
        self.packages = PackageStore()  # shipped code (runtime_env), for the workers
        requests: dict[type, Callable[[Any], Any]] = {
            _Tick: lambda _m: self._tick(),
            DeployApp: lambda m: self._run(ev.Deploy(m)),
            DeleteApp: lambda m: self._run(ev.Delete(m)),
            RegisterNode: self._register,
            NodeHello: lambda m: self._run(ev.Hello(m)),
            ReplicaExited: lambda m: self._run(ev.ReplicaDied(m.replica_id, m.reason)),
            SubscribeReplicas: lambda m: self._run(ev.Subscribe(m)),
            MetricsPush: lambda m: self._run(ev.MetricsPushed(m)),
            GetStatus: lambda m: self._run(ev.StatusAsked(m.app, m.replicas)),
            GetRoutes: lambda m: self.core.route_book.answer(self.core.apps.values(), m.known, m.proxy, time.monotonic()),
            GetControllerStats: self._stats,
            ClearCheckpoint: lambda _m: self._run(ev.ClearAsked()),
            HasPackage: lambda m: self.packages.has(m.digest),
            UploadPackage: lambda m: self.packages.put(m.digest, m.data),
            FetchPackage: lambda m: self.packages.get(m.digest),
        }
        self._table = {**requests, **{cls: self._run for cls in _EVENTS}}
        self._carry: dict[type, Callable[[Any], None]] = {
            fx.Ask: self._ask,
            fx.Tell: self._tell,
            fx.Publish: self._publish,
            fx.StartGang: lambda e: self.coordinator.tell(StartGang(e.gang_id, self._refs(e.members), e.timeout_s)),
            fx.StopGang: lambda e: self.coordinator.tell(StopGang(e.gang_id, self._refs(e.members), e.timeout_s)),
            fx.Watch: self._watch,
            fx.Unwatch: self._unwatch,
            fx.SaveCheckpoint: self._save,
            fx.ClearCheckpoint: self._clear,
        }

    # ---- life cycle -------------------------------------------------------------------

    def on_start(self) -> None:
        self.core.pickle_allowed = self.system.accepts_pickle
        self.coordinator = self.system.spawn(GangCoordinator, self._coordinator_report, _describe, name=COORDINATOR_NAME)
        if self._restored is not None:
            self.core.restore(self._restored, time.monotonic(), time.time())
            self._restored = None
            self._carry_out()
        self._ticker = Ticker(self.actor_ref, _Tick, self.settings.reconcile_interval_s, "controller-ticker").start()
        if self.gc is not None:
            self.gc.install()

    def on_stop(self) -> None:
        if self.gc is not None:
            self.gc.uninstall()
        if self._ticker is not None:
            self._ticker.stop()
        self.system.stop(self.system.ref(self.system.address, COORDINATOR_NAME), wait=False)
        if self.store is not None:
            self.store.close()

    def on_failure(self, *exc_info: Any) -> None:
        if self.gc is not None:
            self.gc.uninstall()
        if self._ticker is not None:
            self._ticker.stop()
        if self.store is not None:
            self.store.close()

    # ---- messages in ------------------------------------------------------------------

    def handlers(self) -> dict[type, Callable[[Any], Any]]:
        return self._table

    def _run(self, event: Any) -> Any:
        answer = self.core.handle(event, time.monotonic(), time.time())
        self._carry_out()
        return answer

    def _register(self, message: RegisterNode) -> Any:
        check_endpoint(message.address)  # raises ValueError naming what is wrong
        return self._run(ev.Register(message))

    def _tick(self) -> None:
        if self._ticker is not None:
            self._ticker.handled()
        start = time.perf_counter()
        self._run(ev.Tick())
        if self.gc is not None:
            self.gc.sweep_if_due()
        self.ticks += 1
        self.loop_ms.append((time.perf_counter() - start) * 1000)

    def _stats(self, message: GetControllerStats) -> dict[str, Any]:
        stats = {**self._run(ev.StatsAsked()), "ticks": self.ticks, "process_cpu_s": time.process_time(),
                 "packages": self.packages.statistics(),
                 "gc": self.gc.statistics() if self.gc is not None else None}
        times = sorted(self.loop_ms)
        if times:
            stats.update(
                loop_samples=len(times),
                loop_ms_p50=times[len(times) // 2],
                loop_ms_p99=times[min(len(times) - 1, int(len(times) * 0.99))],
                loop_ms_max=times[-1],
            )
        if message.reset:
            self.loop_ms.clear()
        return stats

    def _coordinator_report(self, what: str, key: Any, value: Any, error: str | None) -> None:
        if what == "gang_started":
            self._tell_self(ev.GangStarted(tuple(value["members"]), value["answers"]))
        elif what == "start":
            self._tell_self(ev.StartReplied(key, value, error))
        else:
            self._tell_self(ev.StopReplied(key, value, error))

    # ---- effects out ------------------------------------------------------------------

    def _carry_out(self) -> None:
        while True:
            effects = self.core.take_effects()
            if not effects:
                return
            for effect in effects:
                self._carry[type(effect)](effect)

    def _ask(self, effect: fx.Ask) -> None:
        then = effect.then
        try:
            future = self.system.ref(effect.address, effect.actor).ask(effect.message, timeout=effect.timeout_s)
        except Exception as exc:
            self._tell_self(_failed(then, f"{type(exc).__name__}: {exc}"))
            return
        future.add_done_callback(lambda done: self._tell_self(_settled(then, done)))

    def _tell(self, effect: fx.Tell) -> None:
        try:
            self.system.ref(effect.address, effect.actor).tell(effect.message)
        except Exception as exc:
            log.debug("%s to %s#%s not sent: %s", type(effect.message).__name__, effect.address, effect.actor, exc)

    def _publish(self, effect: fx.Publish) -> None:
        for subscriber in effect.subscribers:
            try:
                self.system.ref(subscriber).tell(effect.replica_set)
            except Exception as exc:
                log.debug("replica set not sent to %s: %s", subscriber, exc)

    def _refs(self, members: tuple[tuple[str | None, Any], ...]) -> list[tuple[Any, Any]]:
        return [(None if address is None else self.system.ref(address, NODE_ACTOR), message) for address, message in members]

    def _watch(self, effect: fx.Watch) -> None:
        then = effect.then
        token = self.system.watch(
            self.system.ref(effect.address, effect.actor),
            lambda _ref, reason: self._tell_self(dataclasses.replace(then, reason=reason)),
        )
        if effect.key is not None:
            self._watches[effect.key] = token

    def _unwatch(self, effect: fx.Unwatch) -> None:
        token = self._watches.pop(effect.key, None)
        if token is not None:
            self.system.unwatch(token)

    def _save(self, effect: fx.SaveCheckpoint) -> None:
        if self.store is None:
            return
        start = time.perf_counter()
        error = None
        try:
            self.store.save(effect.blob)
        except Exception as exc:  # the store is down: the control plane tries again next tick
            error = str(exc)
        ms = (time.perf_counter() - start) * 1000
        self.core.handle(ev.CheckpointWritten(effect.fingerprint, len(effect.blob), ms, error), time.monotonic(), time.time())

    def _clear(self, _effect: fx.ClearCheckpoint) -> None:
        if self.store is not None:
            self.store.clear()
            self.store.close()
            self.store = None

    def _tell_self(self, message: Any) -> None:
        try:
            self.actor_ref.tell(message)
        except Exception:
            pass  # the controller is stopping


def _describe(exc: BaseException) -> str:
    error = f"{getattr(exc, 'type_name', '') or type(exc).__name__}: {exc}"
    remote_tb = getattr(exc, "remote_traceback", "")
    return f"{error}\n{remote_tb.rstrip()}" if remote_tb else error


def _settled(then: Any, done: Future[Any]) -> Any:
    try:
        return dataclasses.replace(then, value=done.get(0), error=None)
    except Exception as exc:
        # a failed start shows the constructor's traceback; other failures one line
        error = _describe(exc) if isinstance(then, ev.StartReplied) else f"{getattr(exc, 'type_name', '') or type(exc).__name__}: {exc}"
        return _failed(then, error)


def _failed(then: Any, error: str) -> Any:
    if isinstance(then, ev.InventoryReplied):
        # a worker whose address refuses connections died while the controller was down
        return dataclasses.replace(then, error=error, gone=NOTHING_LISTENS in error)
    return dataclasses.replace(then, error=error)
