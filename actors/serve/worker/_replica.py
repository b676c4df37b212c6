"""The Replica actor: one instance of the user's class, serving requests."""

from __future__ import annotations

import asyncio
import bisect
import concurrent.futures
import functools
import inspect
import itertools
import logging
import threading
import time
import traceback
from typing import Any, Callable

from protocol import (
    LATENCY_BUCKETS_S,
    CancelRequest,
    DeploymentSpec,
    HandleRequest,
    HealthCheck,
    Reconfigure,
    unseal,
)

from ..._actor import Actor, Request, Respond
from ..._errors import MessageNotHandled
from ..._future import Future
from .._context import ReplicaContext, set_replica_context, swap_replica_context
from .._errors import ReplicaDiedError, ReplicaStoppingError
from .._multiplex import held_model_ids, reset_multiplexed_model_id, set_multiplexed_model_id
from .._names import HTTP_METHOD
from .._options import DeploymentConfig
from ..client._session import Session
from ._http import HttpServer
from ._logs import ACCESS_LOG, log_access
from ._health import HealthProbes, ReplicaHealth
from ._replica_loop import AsyncLimit, Key, ReplicaLoop
from ._user_code import function_instance, load_import_path, method_kind, public_methods, pump_async, pump_sync, returned


_SLOW_FOR_S = 1.0  # a sync method that ran past the transport's inline budget runs in the pool this long


class _Drain:
    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s


class _Drained:
    pass


class Replica(Actor):
    """Constructs the user's class and runs its methods.

    Sync methods run on the thread that received the request (see
    ``run_sync_in_threadpool``), or in a pool of ``max_ongoing_requests``
    threads; ``async def`` methods run on the replica's own event loop. Requests that
    arrive while draining are refused with :class:`ReplicaStoppingError`.

    Args:
        spec: what to construct.
        context: the replica's identity.
        ready: completed when the constructor returned, or with its error.
        session: this process's session: handle markers in the arguments become
            its handles, and the replica's load is reported through its aggregator.
        probes: where its worker answers batched health checks from (thread mode).
    """

    def __init__(
        self,
        spec: DeploymentSpec,
        context: ReplicaContext,
        ready: Future[bool],
        session: Session,
        probes: HealthProbes | None = None,
    ) -> None:
        super().__init__()
        self.spec = spec
        self.context = context
        self.config = DeploymentConfig.from_dict(spec.config)
        self.ready = ready
        self.session = session
        self.instance: Any = None
        self.pool: concurrent.futures.ThreadPoolExecutor | None = None
        self.aloop = ReplicaLoop(context, None, spin_s=session.config.transport.io_spin_s)  # its reader: the system's, once started
        self.methods: dict[str, tuple[Callable[..., Any], str]] = {}
        self.requests_total = 0
        self.errors_total = 0
        self.latency_sum_s = 0.0
        self.latency_counts = [0] * (len(LATENCY_BUCKETS_S) + 1)
        self.in_flight = 0
        self.metrics_changes = 0  # grows with every change the metrics aggregator samples
        self.open: set[Respond] = set()  # how to answer each request running now
        self.async_limit: AsyncLimit | None = None
        self.counts_lock = threading.Lock()  # the counts and the drain's flag; entered directly (a Condition's enter is a Python call)
        self.idle = threading.Condition(self.counts_lock)  # notified when in_flight reaches 0 while draining
        self.draining = False
        self.http: HttpServer | None = None
        self.health: ReplicaHealth | None = None
        self.inline = not self.config.run_sync_in_threadpool  # sync methods run on the receiving thread
        self.slow: dict[str, float] = {}  # sync methods that ran long: in the pool until then (perf_counter)
        self.inline_budget_s = session.config.transport.inline_budget_s
        self.probes = probes

    def on_start(self) -> None:
        set_replica_context(self.context)
        self.aloop.reader = self.system.reader
        try:
            deployment = load_import_path(self.spec.import_path, self.spec.main_file, self.spec.import_dirs)
            cls = getattr(deployment, "func_or_class", deployment)
            accepts_pickle = self.system.accepts_pickle
            args = self.session.resolve(unseal(self.spec.init_args, accepts_pickle))
            kwargs = self.session.resolve(unseal(self.spec.init_kwargs, accepts_pickle))
            self.instance = self._construct(cls, args, kwargs)
            if self.config.user_config is not None and hasattr(self.instance, "reconfigure"):
                self._call_now(self.instance.reconfigure, self.config.user_config)
        except BaseException as exc:
            self.ready.set_exception(exc)
            self.stop()
            return
        self._register_metrics()
        self.pool = concurrent.futures.ThreadPoolExecutor(
            self.config.max_ongoing_requests,
            thread_name_prefix=f"replica-{self.context.replica_id}",
            initializer=set_replica_context,
            initargs=(self.context,),
        )
        self.http = HttpServer(self.instance, self.context.deployment, self._in_pool)
        self.health = ReplicaHealth(self.instance, self.context, self.config.health_check_timeout_s, self._event_loop,
                                    self._health_answer)
        try:  # a replica is ready once its first health check passed, as in Ray Serve
            self.health.run()
        except BaseException as exc:
            self.ready.set_exception(RuntimeError(f"the first health check failed: {type(exc).__name__}: {exc}"))
            self.stop()
            return
        self.system.serve_directly(self.name, (HandleRequest, CancelRequest), self._accept)  # requests skip the inbox
        if self.probes is not None:
            self.probes.add(self.name, self.health.start)
        self.ready.set_result(True)

    def _construct(self, cls: Any, args: Any, kwargs: Any) -> Any:
        """The user's object; an ``async def __init__`` runs on the replica's event loop, as in Ray Serve."""
        if inspect.isfunction(cls):  # a function deployment: its function is the __call__
            return function_instance(cls)
        if not (isinstance(cls, type) and inspect.iscoroutinefunction(cls.__init__)):
            return cls(*args, **kwargs)
        instance = cls.__new__(cls)
        future = asyncio.run_coroutine_threadsafe(self._guarded(instance.__init__(*args, **kwargs)), self._event_loop())
        future.result(self.session.config.serve.replica_start_timeout_s)  # as the controller bounds a start
        return instance

    def _register_metrics(self) -> None:
        self.metrics_token = self.session.register_metrics(self)

    def metrics_sample(self) -> tuple[Any, ...]:
        """What the metrics aggregator records: requests running here."""
        c = self.context
        with self.counts_lock:
            cumulative = list(itertools.accumulate(self.latency_counts))
            counters = (self.requests_total, self.errors_total, cumulative, self.latency_sum_s)
        return ("replica", c.app_name, c.deployment, c.replica_id, self.in_flight, counters)

    def on_stop(self) -> None:
        self._shutdown_executors()

    def on_failure(self, *exc_info: Any) -> None:
        self._shutdown_executors()

    def handlers(self) -> dict[type, Callable[[Any], Any]]:
        return {
            HandleRequest: self._handle,
            HealthCheck: self._check_health,
            Reconfigure: self._reconfigure,
            _Drain: lambda m: self._drain(m.timeout_s),
            _Drained: lambda _m: self.stop(),
        }

    def _check_health(self, _message: HealthCheck) -> dict[str, Any]:
        assert self.health is not None
        return self.health.run()

    def _health_answer(self) -> dict[str, Any]:
        return {"ongoing": self.in_flight, "models": held_model_ids(self.instance)}

    def _reconfigure(self, message: Reconfigure) -> bool:
        self._call_now(self.instance.reconfigure, message.user_config)
        return True

    def _method(self, name: str) -> tuple[Callable[..., Any], str]:
        found = self.methods.get(name)
        if found is None:
            method = getattr(self.instance, name, None)
            if method is None or not callable(method) or name.startswith("_") and name != "__call__":
                raise AttributeError(f"deployment {self.context.deployment!r} has no method {name!r}; "
                                     f"its methods: {', '.join(public_methods(self.instance)) or '(none)'}")
            found = self.methods[name] = (method, method_kind(method))
        return found

    def _handle(self, request: HandleRequest) -> Any:
        """A request that came through the inbox (before the direct lane was open)."""
        done: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def respond(value: Any, error: BaseException | None, _tb: str) -> None:
            if error is None:
                done.set_result(value)
            else:
                done.set_exception(error)

        self._start(request, self.current_emitter(), respond)
        return done

    def _accept(self, request: Request) -> None:
        """The direct lane, on the I/O thread: a sync method runs there after the
        round (deferred), others go to the pool or the event loop (the one
        thread hop before user code); returns at once."""
        respond = request.respond
        if respond is None:
            if isinstance(request.payload, CancelRequest):
                self.aloop.cancel((request.sender, request.payload.msg_id))
            return
        if request.deadline is not None and time.time() > request.deadline:
            self.system._note_expired(self.name)
            return
        try:
            self._start(request.payload, request.emit, respond, (request.sender, request.msg_id))
        except Exception as exc:
            respond(None, exc, "")

    def _start(self, request: HandleRequest, emit: Callable[[Any], None] | None, respond: Respond, key: Key = ("", 0)) -> None:
        if request.method == HTTP_METHOD and self.http is not None:
            method, kind = self.http.serve, "http"  # a proxy forwards an HTTP request, always streaming
        else:
            method, kind = self._method(request.method)
        is_generator = kind in ("gen", "agen", "http")
        if emit is None and is_generator:
            raise TypeError(
                f"method {request.method!r} of deployment {self.context.deployment!r} is a generator; "
                "call it with handle.options(stream=True)"
            )
        with self.counts_lock:  # with the drain's flag, under one lock: a drain never misses a request it let in
            if self.draining:
                raise ReplicaStoppingError(f"replica {self.context.replica_id} is stopping")
            self.in_flight += 1
            self.metrics_changes += 1
            self.open.add(respond)
        started = time.perf_counter()
        if kind in ("async", "agen", "http"):
            try:
                self.aloop.submit(functools.partial(self._begin_async, request, method, kind, emit, respond, started, key))
            except RuntimeError:  # the loop is closed: the replica is stopping, the request never ran
                raise self._never_ran(started, respond) from None
            return
        work = functools.partial(self._run_sync, request, method, kind, emit, respond, started)
        if kind == "sync" and self.inline and self.slow.get(request.method, 0.0) < started:
            if self.system.defer(lambda: respond in self.open and work(), lambda w: self._pooled(w, respond, started, quiet=True)):
                return  # runs on the receiving thread after its round (unless the replica stopped meanwhile): no hop
        self._pooled(work, respond, started)

    def _pooled(self, work: Callable[[], None], respond: Respond, started: float, quiet: bool = False) -> None:
        assert self.pool is not None
        try:
            done = self.pool.submit(work)
        except RuntimeError:  # the pool is shut down: the replica is stopping, the request never ran
            error = self._never_ran(started, respond)
            if quiet:
                return respond(None, error, "")
            raise error from None
        done.add_done_callback(lambda f: self._cancelled(f, respond, started))

    def _run_sync(self, request: HandleRequest, method: Any, kind: str, emit: Any, respond: Respond, started: float) -> None:
        token = set_multiplexed_model_id(request.multiplexed_model_id)
        outer = swap_replica_context(self.context)  # the receiving thread may serve several replicas
        try:
            args, kwargs = self._arguments(request)
            begun = time.perf_counter()  # its own run time: not the wait for a pool thread
            value = pump_sync(method, args, kwargs, emit) if kind == "gen" else method(*args, **kwargs)
            if kind == "sync":
                value = returned(self.context.deployment, request.method, value, emit)
                if (ended := time.perf_counter()) - begun > self.inline_budget_s:  # a slow one goes to the pool for a while
                    self.slow[request.method] = ended + _SLOW_FOR_S
        except BaseException as exc:
            self._answer(respond, started, None, exc, request)
            return
        finally:
            reset_multiplexed_model_id(token)
            swap_replica_context(outer)
        self._answer(respond, started, value, None, request)

    def _arguments(self, request: HandleRequest) -> tuple[Any, Any]:
        args, kwargs = request.args, request.kwargs
        if kwargs or dict in map(type, args or ()):  # (a marked handle is a dict: none in most requests)
            return self.session.resolve_arguments(args, kwargs)
        return args, kwargs

    def _answer(self, respond: Respond, started: float, value: Any, error: BaseException | None, request: Any = None) -> None:
        """Answer first, then count the request done: a drain waiting for it must not stop the replica before its answer left."""
        respond(value, error, "" if error is None else _format(error))
        self._finished(started, error is not None, respond)
        if request is not None and ACCESS_LOG.isEnabledFor(logging.INFO):
            log_access(request, value, error, time.perf_counter() - started)

    def _begin_async(self, request: HandleRequest, method: Any, kind: str, emit: Any, respond: Respond, started: float,
                     key: Key) -> None:
        """On the loop; cancelled by ``key`` when its caller gives up (its HTTP client
        went away, its handle cancelled it): the method is cancelled, a generator closed."""
        try:
            self.aloop.run(functools.partial(self._run_async, request, method, kind, emit, respond, started), key)
        except Exception as exc:  # it never ran: say so, and count it done
            self._answer(respond, started, None, exc, request)

    async def _run_async(self, request: HandleRequest, method: Any, kind: str, emit: Any, respond: Respond, started: float,
                         finished: Callable[[], None]) -> None:
        set_multiplexed_model_id(request.multiplexed_model_id)  # this task's own context
        try:
            try:
                limit = self._limit()
                if not limit.enter_nowait():
                    await limit.enter()
                try:
                    if kind == "http":
                        value = await method(request.args[0], request.args[1], emit)
                    else:
                        args, kwargs = self._arguments(request)
                        if kind == "agen":
                            value = await pump_async(method(*args, **kwargs), emit)
                        else:
                            value = returned(self.context.deployment, request.method, await method(*args, **kwargs), emit)
                            if emit is not None and inspect.isasyncgen(value):  # (returned refused one with no stream)
                                value = await pump_async(value, emit)
                finally:
                    limit.leave()
            except BaseException as exc:
                self._answer(respond, started, None, exc, request)
                return
            self._answer(respond, started, value, None, request)
        finally:
            finished()

    def _in_pool(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Awaitable: ``fn(*args)`` on the replica's pool (a blocking method called from the loop)."""
        assert self.pool is not None
        return self.aloop.get().run_in_executor(self.pool, lambda: fn(*args))

    def _limit(self) -> AsyncLimit:
        if self.async_limit is None:
            self.async_limit = AsyncLimit(self.config.max_ongoing_requests)
        return self.async_limit

    async def _guarded(self, coro: Any) -> Any:
        return await coro

    def _never_ran(self, started: float, respond: Respond) -> MessageNotHandled:
        self._finished(started, True, respond)
        return MessageNotHandled(f"replica {self.context.replica_id} stopped before it ran the request")

    def _cancelled(self, done: concurrent.futures.Future[Any], respond: Respond, started: float) -> None:
        if done.cancelled():  # the pool shut down before it ran: another replica may take it
            self._finished(started, True, respond)
            respond(None, MessageNotHandled("the request was cancelled before it ran (the replica is stopping)"), "")

    def _finished(self, started: float, failed: bool, respond: Respond) -> None:
        elapsed = time.perf_counter() - started
        with self.counts_lock:
            self.open.discard(respond)
            self.in_flight -= 1
            self.metrics_changes += 1
            self.requests_total += 1
            self.errors_total += failed
            self.latency_sum_s += elapsed
            self.latency_counts[bisect.bisect_left(LATENCY_BUCKETS_S, elapsed)] += 1
            if self.in_flight == 0 and self.draining:
                self.idle.notify_all()

    def _call_now(self, fn: Callable[..., Any], *args: Any) -> Any:
        result = fn(*args)
        if inspect.isawaitable(result):
            return asyncio.run_coroutine_threadsafe(self._guarded(result), self._event_loop()).result(
                self.config.health_check_timeout_s
            )
        return result

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        return self.aloop.get()

    def _drain(self, timeout_s: float) -> None:
        with self.counts_lock:
            self.draining = True
        deadline = time.monotonic() + timeout_s
        me = self.actor_ref

        def wait_then_stop() -> None:
            with self.counts_lock:
                while self.in_flight and time.monotonic() < deadline:
                    self.idle.wait(max(0.0, deadline - time.monotonic()))
            try:
                me.tell(_Drained())
            except Exception:
                pass  # already stopped

        threading.Thread(target=wait_then_stop, name=f"drain-{self.context.replica_id}", daemon=True).start()

    def _shutdown_executors(self) -> None:
        self.system.serve_directly(self.name, (), None)
        if self.probes is not None:
            self.probes.remove(self.name)
        with self.counts_lock:
            still_running, self.open = list(self.open), set()
        for respond in still_running:  # past graceful_shutdown_timeout_s: say so before the process says goodbye
            respond(None, ReplicaDiedError(
                f"replica {self.context.replica_id} of deployment {self.context.deployment!r} stopped while handling "
                "the request (graceful_shutdown_timeout_s passed)"), "")
        token = getattr(self, "metrics_token", None)
        if token is not None:
            self.session.metrics.unregister(token)
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
        if self.health is not None:
            self.health.shutdown()
        self.aloop.stop()
        set_replica_context(None)


def _format(exc: BaseException) -> str:
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


def drain_message(timeout_s: float) -> Any:
    """The message that makes a replica stop taking requests and stop once idle."""
    return _Drain(timeout_s)
