"""A one-shot result that threads can block on and coroutines can await."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import weakref
from typing import Any, Callable, Generator, Generic, Protocol, TypeVar

from transport import about_to_block

from ._errors import AskTimeout

T = TypeVar("T")
log = logging.getLogger("corral.actors")

_state_lock = threading.Lock()
_allocate = threading.Lock
_LEAD_S = 1.0  # a waiting thread reads the socket this long at most, then waits as usual


class Reader(Protocol):
    """What brings an answer in (``transport.RouterWatch``): a waiting thread may read it itself."""

    def lead(self, done: Callable[[], bool], deadline: float) -> bool: ...

    def wake_leader(self) -> None: ...

    def lead_loop(self, loop: asyncio.AbstractEventLoop) -> Any: ...


class Future(Generic[T]):
    """The eventual answer to an ``ask``.

    Set exactly once (later sets are ignored). ``get`` blocks the calling
    thread; ``await future`` suspends a coroutine without blocking its loop.

    Args:
        what: a description used in timeout messages, e.g. ``"ask to X"``.
        guard: returns True on a thread that must never block (the I/O thread).
        reader: what the answer comes through, as :meth:`read_with` names it.
    """

    __slots__ = ("_waiter", "_done", "_value", "_error", "_callbacks", "_what", "_guard", "_reader", "_leading", "_awaiter")

    def __init__(self, what: str = "future", guard: Callable[[], bool] | None = None, reader: Reader | None = None) -> None:
        self._waiter: Any = None  # the lock a blocked get() waits on: made by the first that blocks
        self._done = False
        self._value: Any = None
        self._error: BaseException | None = None
        self._callbacks: list[Callable[[Future[T]], None]] | None = None
        self._what = what
        self._guard = guard
        self._reader = reader
        self._leading = 0  # the thread reading the answer's socket while it waits for it (0: none)
        self._awaiter: tuple[asyncio.AbstractEventLoop, asyncio.Future[Any]] | None = None  # the first coroutine awaiting it

    def read_with(self, reader: Reader | None) -> None:
        """Name what the answer comes through (``transport.Transport.reader``): a thread
        waiting in :meth:`get` reads it itself when it can, a wake-up less."""
        self._reader = reader

    def done(self) -> bool:
        """Whether a result or an error is set."""
        return self._done

    def set_result(self, value: T) -> bool:
        """Set the value. Returns False if the future was already done."""
        return self._finish(value, None)

    def set_exception(self, error: BaseException) -> bool:
        """Set the error raised by :meth:`get`. Returns False if already done."""
        return self._finish(None, error)

    def _finish(self, value: Any, error: BaseException | None) -> bool:
        with _state_lock:
            if self._done:
                return False
            self._value = value
            self._error = error
            self._done = True
            callbacks, self._callbacks = self._callbacks, None
            awaiter, self._awaiter = self._awaiter, None
            waiter = self._waiter
        if waiter is not None:
            waiter.release()
        if awaiter is not None:
            wake_threadsafe(*awaiter)
        leading = self._leading
        if leading and leading != threading.get_ident():  # completed elsewhere while its waiter reads the socket
            self._reader.wake_leader()  # type: ignore[union-attr]
        if callbacks:
            for callback in callbacks:
                self._run_callback(callback)
        return True

    def get(self, timeout: float | None = None) -> T:
        """Block until done and return the value.

        Args:
            timeout: seconds to wait; None waits until the ask's own deadline.

        Raises:
            AskTimeout: nothing arrived within ``timeout``.
            RuntimeError: called on a thread that must never block.
            Exception: the error the future was completed with.
        """
        if not self._done:
            if self._guard is not None and self._guard():
                raise RuntimeError(f"{self._what}: Future.get() on the I/O thread would deadlock")
            about_to_block()  # inline work on the I/O thread: a standby takes the sockets first
            left = timeout if self._reader is None or timeout == 0 else self._lead(timeout)
            waiter = self._blocking_waiter()
            if waiter is not None:
                if not waiter.acquire(True, -1 if left is None else max(left, 0)):
                    raise AskTimeout(f"{self._what}: no answer within {timeout}s")
                waiter.release()
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[no-any-return]

    def _blocking_waiter(self) -> Any:
        """The lock to block on until done (held until then), or None when done already."""
        with _state_lock:
            if self._done:
                return None
            if self._waiter is None:
                self._waiter = _allocate()
                self._waiter.acquire()
            return self._waiter

    def _lead(self, timeout: float | None) -> float | None:
        """Read the answer's socket while waiting, for ``_LEAD_S`` at most; returns the time left to wait."""
        began = time.monotonic()
        self._leading = threading.get_ident()
        try:
            self._reader.lead(lambda: self._done, began + (_LEAD_S if timeout is None else min(timeout, _LEAD_S)))  # type: ignore[union-attr]
        finally:
            self._leading = 0
        return None if timeout is None else timeout - (time.monotonic() - began)

    def add_done_callback(self, callback: Callable[[Future[T]], None]) -> None:
        """Call ``callback(self)`` once done (at once if already done), on the
        thread that completes the future. It must be quick and must not block."""
        with _state_lock:
            if not self._done:
                if self._callbacks is None:
                    self._callbacks = []
                self._callbacks.append(callback)
                return
        self._run_callback(callback)

    def _run_callback(self, callback: Callable[[Future[T]], None]) -> None:
        try:
            callback(self)
        except Exception:
            log.exception("done callback of %s failed", self._what)

    def __await__(self) -> Generator[Any, None, T]:
        if not self._done:
            loop = asyncio.get_running_loop()
            waiter = loop.create_future()
            with _state_lock:
                first = not self._done and self._awaiter is None
                if first:
                    self._awaiter = (loop, waiter)  # woken by _finish: no callback object per await
            if not first:
                self.add_done_callback(lambda _: wake_threadsafe(loop, waiter))
            lead = None if self._reader is None else self._reader.lead_loop(loop)  # the loop may read its answer itself
            try:
                yield from waiter.__await__()
            finally:
                if lead is not None:
                    lead.done()
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        state = "pending" if not self._done else ("failed" if self._error else "done")
        return f"<Future {self._what} {state}>"


class _Wakeups:
    """Coroutines of one event loop to wake: answers completed together (one
    batch of the I/O thread) wake the loop once, not once each."""

    __slots__ = ("loop", "lock", "waiters", "__weakref__")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = weakref.ref(loop)  # weak: the table's value must not keep its key alive
        self.lock = threading.Lock()
        self.waiters: list[asyncio.Future[Any]] = []

    def add(self, waiter: asyncio.Future[Any]) -> None:
        with self.lock:
            self.waiters.append(waiter)
            first = len(self.waiters) == 1
        loop = self.loop()
        if first and loop is not None:
            try:
                loop.call_soon_threadsafe(self.flush)
            except RuntimeError:
                with self.lock:  # the loop was closed; nobody awaits any more
                    self.waiters.clear()

    def flush(self) -> None:
        with self.lock:
            waiters, self.waiters = self.waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)


_running_loop = asyncio.events._get_running_loop  # None off any loop; no exception to raise and catch

_loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Wakeups] = weakref.WeakKeyDictionary()
_loops_lock = threading.Lock()


def _wakeups_of(loop: asyncio.AbstractEventLoop) -> _Wakeups:
    wakeups = _loops.get(loop)
    if wakeups is None:
        with _loops_lock:
            wakeups = _loops.get(loop)
            if wakeups is None:
                wakeups = _loops[loop] = _Wakeups(loop)
    return wakeups


def wake_threadsafe(loop: asyncio.AbstractEventLoop, waiter: asyncio.Future[Any]) -> None:
    """Resolve ``waiter`` (with None) on ``loop`` from any thread; waiters of
    one loop woken by one I/O batch cost one ``call_soon_threadsafe``, and
    none on the loop's own thread (a loop that does the process's I/O)."""
    if _running_loop() is loop:
        if not waiter.done():
            waiter.set_result(None)
        return
    _wakeups_of(loop).add(waiter)
