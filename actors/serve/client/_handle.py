"""Deployment handles, responses and response generators (the client side)."""

from __future__ import annotations

import threading
import time
from typing import Any, AsyncIterator, Callable, Generator, Iterator

from msgpack import packb as _packb

from protocol import HandleRequest

from ..._errors import AskTimeout
from ..._future import Future
from ..._stream import Stream
from .._app import HANDLE_MARKER, PLAIN_TYPES, check_payload
from .._errors import RequestCancelledError
from ._router import Call, DeploymentNotFoundError, not_handled

_new_request = HandleRequest.__wire_new__  # type: ignore[attr-defined]  # one per remote(): no frozen __init__
_PLAIN_ONLY = PLAIN_TYPES.issuperset  # of the arguments' types: nothing to resolve or mark (one C call)

__all__ = ["DeploymentHandle", "DeploymentNotFoundError", "DeploymentResponse", "DeploymentResponseGenerator"]


class DeploymentHandle:
    """Calls one deployment's replicas, from any process (a replica included).

    ``handle.remote(...)`` calls ``__call__``; ``handle.method.remote(...)``
    or ``handle.options(method_name="method").remote(...)`` call others;
    ``handle.options(stream=True)`` calls generator methods.

    A handle works for the session it was made by (``serve.run``,
    ``serve.get_app_handle``, a replica's arguments). One built directly,
    ``DeploymentHandle(app, deployment)``, uses the session that
    :attr:`session_provider` returns: ``serve.start`` installs it.
    """

    #: Returns this process's session, for handles built directly by user code.
    session_provider: Callable[[], Any] | None = None

    def __init__(
        self,
        app: str,
        deployment: str,
        method: str = "__call__",
        stream: bool = False,
        _router: Any = None,
        _session: Any = None,
        multiplexed_model_id: str = "",
    ) -> None:
        self.app_name = app
        self.deployment_name = deployment
        self.method_name = method
        self.stream = stream
        self.multiplexed_model_id = multiplexed_model_id
        self._router = _router  # keeps the shared router (and its metrics) alive while handles exist
        self._session = _session if _router is None else _router.session
        self._what = f"request to {deployment}.{method}"

    def options(self, *, method_name: str | None = None, stream: bool | None = None,
                multiplexed_model_id: str | None = None) -> DeploymentHandle:
        """A handle calling another method, streaming, or asking for a multiplexed model.

        Raises:
            TypeError: ``multiplexed_model_id`` is not a string.
        """
        if multiplexed_model_id is not None and not isinstance(multiplexed_model_id, str):
            raise TypeError(f"multiplexed_model_id must be a str, got {type(multiplexed_model_id).__name__}")
        return DeploymentHandle(
            self.app_name,
            self.deployment_name,
            method_name or self.method_name,
            self.stream if stream is None else stream,
            self._router,
            self._session,
            self.multiplexed_model_id if multiplexed_model_id is None else multiplexed_model_id,
        )

    def __getattr__(self, name: str) -> DeploymentHandle:
        if name.startswith("_"):
            raise AttributeError(name)
        return DeploymentHandle(self.app_name, self.deployment_name, name, self.stream, self._router, self._session,
                                self.multiplexed_model_id)

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        """Send one request; returns at once.

        Arguments that are DeploymentResponses are resolved first (without
        blocking the caller); handles pass through to the replica.

        Returns:
            A :class:`DeploymentResponse`, or a :class:`DeploymentResponseGenerator`
            for a ``stream=True`` handle.

        Raises:
            TypeError: an argument cannot be encoded (the message names it).
            BackPressureError: too many requests already wait at this handle.
            DeploymentNotFoundError: no such application or deployment.
            RuntimeError: serve is not started or connected in this process.
        """
        router = self._router
        if router is None:
            session = self._session
            if session is None:
                provider = DeploymentHandle.session_provider
                if provider is None:
                    raise RuntimeError("corral serve is not running in this process: call serve.start() first")
                session = provider()
            router = self._router = session.router(self.app_name, self.deployment_name)
        session = router.session
        if session.closed:
            raise RuntimeError("the serve session of this handle was shut down; get a new handle after serve.start()")
        deadline = time.monotonic() + session.config.serve.request_timeout_s
        waiting = _responses_in(args, kwargs)
        if self.stream:
            sink: Any = DeploymentResponseGenerator(deadline, f"stream from {self.deployment_name}.{self.method_name}")
        else:  # .result() reads its answer itself
            sink = DeploymentResponse(Future(self._what, reader=session.system.reader), router.waiting_reason)

        if not waiting:
            _submit_now(router, self._call(router, args, kwargs, deadline, sink), self)
            return sink
        _after(waiting, lambda: _submit_later(router, lambda: self._call(router, args, kwargs, deadline, sink), sink))
        return sink

    def _call(self, router: Any, args: tuple[Any, ...], kwargs: dict[str, Any], deadline: float, sink: Any) -> Call:
        """The call of one ``remote()``, its responses (if any) resolved by now."""
        if not args:
            args_l: list[Any] = []
        elif _PLAIN_ONLY(map(type, args)):
            args_l = list(args)
        else:
            args_l = [a if type(a) in PLAIN_TYPES else _to_wire(a) for a in args]
        kwargs_d = {k: _to_wire(v) for k, v in kwargs.items()} if kwargs else {}
        request = _new_request(self.method_name, args_l, kwargs_d, self.multiplexed_model_id)
        call = Call(request, self.stream, deadline, sink if self.stream else sink._future, sink._attach if self.stream else None)
        sink._router, sink._call = router, call  # what a cancel stops from now on
        return call

    def __reduce__(self) -> Any:
        raise TypeError("handles are passed to deployments through .bind() or as request arguments, not pickled")

    def __repr__(self) -> str:
        return f"DeploymentHandle(app={self.app_name!r}, deployment={self.deployment_name!r}, method={self.method_name!r})"


def _submit_now(router: Any, call: Call, handle: DeploymentHandle) -> None:
    """Send (or queue) a call; one whose arguments cannot be sent is refused here, naming
    the argument, and nothing of it is sent or left queued.

    The arguments are encoded once, when the request is sent; a queued request
    is checked now instead (it is sent later, when nobody could be told)."""
    request = call.request
    try:
        sent = router.submit(call)
    except TypeError:
        check_payload(request.args, request.kwargs, _where(handle), router.pickle)  # names the argument, if it is one
        raise
    if sent or not router.known:
        return
    try:
        _packb((request.args, request.kwargs), use_bin_type=True)
    except (TypeError, ValueError, OverflowError):  # not plain msgpack: arrays, buffers... or unsendable
        try:
            check_payload(request.args, request.kwargs, _where(handle), router.pickle)
        except TypeError as exc:
            router.cancel(call, exc)
            raise


def _responses_in(args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[DeploymentResponse]:
    """The responses among a call's arguments, whose results it waits for (plain arguments: none)."""
    waiting = [] if not args or _PLAIN_ONLY(map(type, args)) else [v for v in args if isinstance(v, DeploymentResponse)]
    if kwargs:
        waiting += [v for v in kwargs.values() if isinstance(v, DeploymentResponse)]
    return waiting


def _where(handle: DeploymentHandle) -> str:
    return f"{handle.deployment_name}.{handle.method_name}.remote()"


def _to_wire(value: Any) -> Any:
    if isinstance(value, DeploymentHandle):
        return {HANDLE_MARKER: [value.app_name, value.deployment_name]}
    if isinstance(value, DeploymentResponse):
        return value._future.get(0)
    return value


def _after(responses: list[DeploymentResponse], then: Any) -> None:
    remaining = [len(responses)]
    lock = threading.Lock()

    def one_done(_: Any) -> None:
        with lock:
            remaining[0] -= 1
            last = remaining[0] == 0
        if last:
            then()

    for response in responses:
        response._future.add_done_callback(one_done)


def _submit_later(router: Any, build: Any, sink: Any) -> None:
    if sink._cancelled:  # cancelled while its arguments were still coming: never sent
        return
    try:
        router.submit(build())
    except BaseException as exc:  # an argument failed or the router refused: the response says so
        (sink._future if isinstance(sink, DeploymentResponse) else sink).set_exception(exc)


def _cancel_sent(sink: Any, error: BaseException) -> None:
    """A response's (or generator's) cancel: out of the handle's queue, or stopped at the
    replica; a call not built yet (its arguments still coming) is never sent."""
    sink._cancelled = True
    if sink._call is not None:
        sink._router.cancel(sink._call, error)


class DeploymentResponse:
    """The eventual result of ``handle.remote(...)``: ``.result()`` or ``await``."""

    __slots__ = ("_future", "_why_waiting", "_router", "_call", "_cancelled", "__weakref__")

    def __init__(self, future: Future[Any], why_waiting: Callable[[], str] | None = None) -> None:
        self._future = future
        self._why_waiting = why_waiting
        self._router: Any = None  # which router and call it stands for, once built (what a cancel stops)
        self._call: Call | None = None
        self._cancelled = False

    def cancel(self) -> None:
        """Cancel the request, as Ray Serve's ``response.cancel()``: one still
        waiting at the handle is never sent; one running is stopped at the
        replica (an ``async def`` method is cancelled; a sync one runs to its
        end, but its answer is dropped) and frees its ``max_ongoing_requests``
        slot at once. :meth:`result` then raises :class:`RequestCancelledError`.
        Does nothing once the result is there."""
        if self._future.done():
            return
        error = RequestCancelledError("the request was cancelled by its caller")
        _cancel_sent(self, error)
        self._future.set_exception(error)

    def result(self, timeout_s: float | None = None) -> Any:
        """Wait for the result.

        Raises:
            TimeoutError: nothing within ``timeout_s`` (or the request deadline);
                the message says when the deployment has no replica to serve it.
            DeployFailedError: the deployment failed to deploy (at once, not after a timeout).
            ReplicaDiedError: the replica died while handling the request.
            Exception: the error the method raised, with its remote traceback.
        """
        try:
            return self._future.get(timeout_s)
        except AskTimeout as exc:
            why = self._why_waiting() if self._why_waiting is not None and not self._future.done() else ""
            if not why:
                raise
            raise AskTimeout(f"{exc}{why}") from None

    def __await__(self) -> Generator[Any, None, Any]:
        return self._future.__await__()


class DeploymentResponseGenerator:
    """Results of a generator method, as they are produced: ``for`` or ``async for``."""

    def __init__(self, deadline: float, what: str) -> None:
        self._deadline = deadline
        self._what = what
        self._cond = threading.Condition()
        self._current: Stream[Any] | None = None
        self._error: BaseException | None = None
        self._router: Any = None
        self._call: Call | None = None
        self._cancelled = False

    def cancel(self) -> None:
        """Cancel the stream: the replica's generator is closed, the slot freed,
        and iterating raises :class:`RequestCancelledError`."""
        if self.done():
            return
        error = RequestCancelledError("the stream was cancelled by its caller")
        self.set_exception(error)
        _cancel_sent(self, error)
        current = self._current
        if current is not None:
            current.cancel("cancelled by its caller")

    # router side
    def _attach(self, stream: Stream[Any]) -> None:
        with self._cond:
            self._current = stream
            self._cond.notify_all()

    def set_exception(self, error: BaseException) -> bool:
        with self._cond:
            if self._error is None:
                self._error = error
            self._cond.notify_all()
        return True

    def done(self) -> bool:
        return self._error is not None

    # caller side
    def _stream(self, after: Stream[Any] | None) -> Stream[Any]:
        with self._cond:
            while self._error is None and (self._current is None or self._current is after):
                remaining = self._deadline - time.monotonic()
                if remaining <= 0:
                    raise AskTimeout(f"{self._what}: no replica took the request in time")
                self._cond.wait(remaining)
            if self._error is not None:
                raise self._error
            assert self._current is not None
            return self._current

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        stream = self._stream(None)
        while True:
            try:
                return stream.next()
            except StopIteration:
                raise
            except Exception as exc:
                if self._cancelled:
                    raise self._error from None  # type: ignore[misc]
                if not not_handled(exc):
                    raise
                stream = self._stream(stream)

    def __aiter__(self) -> AsyncIterator[Any]:
        return self

    async def __anext__(self) -> Any:
        import asyncio

        loop = asyncio.get_running_loop()
        stream = await loop.run_in_executor(None, self._stream, None) if self._current is None else self._stream(None)
        while True:
            try:
                return await stream.__anext__()
            except StopAsyncIteration:
                raise
            except Exception as exc:
                if self._cancelled:
                    raise self._error from None  # type: ignore[misc]
                if not not_handled(exc):
                    raise
                stream = await loop.run_in_executor(None, self._stream, stream)
