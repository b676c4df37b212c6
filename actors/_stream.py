"""Many answers to one ask: a thread-safe, awaitable sequence with an end."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from typing import Any, AsyncIterator, Callable, Generic, Iterator, TypeVar

from ._errors import AskCancelled, AskTimeout
from ._window import CREDIT_EVERY

T = TypeVar("T")
_END = object()


class Stream(Generic[T]):
    """Items pushed by the runtime as they arrive, then an end (or an error).

    Iterate it with ``for`` (each step waits up to the stream's deadline) or
    ``async for``. Items are kept until read.

    Args:
        what: a description for error messages.
        deadline: monotonic time after which waiting for the next item fails.
        guard: returns True on a thread that must never block.
    """

    def __init__(self, what: str, deadline: float, guard: Callable[[], bool] | None = None) -> None:
        self._what = what
        self._deadline = deadline
        self._guard = guard
        self._cond = threading.Condition()
        self._items: deque[Any] = deque()
        self._error: BaseException | None = None
        self._ended = False
        self._wakers: list[Callable[[], None]] = []
        self._callbacks: list[Callable[[Stream[T]], None]] = []
        self.canceller: Callable[[], None] | None = None  # set by the runtime: tells the producer to stop
        self.credit: Callable[[int], None] | None = None  # set by the runtime: tells the producer what was taken
        self._taken = 0
        self._credited = 0

    def push(self, item: T) -> None:
        """Add an item (runtime side)."""
        with self._cond:
            if self._ended:
                return
            self._items.append(item)
            self._cond.notify_all()
            wakers, self._wakers = self._wakers, []
        for wake in wakers:
            wake()

    def finish(self, error: BaseException | None = None) -> bool:
        """End the stream, with an error if it failed. Returns False if already ended."""
        with self._cond:
            if self._ended:
                return False
            self._ended = True
            self._error = error
            self._items.append(_END)
            self._cond.notify_all()
            wakers, self._wakers = self._wakers, []
            callbacks, self._callbacks = self._callbacks, []
        for wake in wakers:
            wake()
        for callback in callbacks:
            try:
                callback(self)
            except Exception:  # a callback must not break the producer
                pass
        return True

    def cancel(self, reason: str = "cancelled by the caller") -> bool:
        """Stop waiting for items and ask the producer to stop (a generator
        being run for it is closed). Returns False if the stream had ended."""
        if not self.finish(AskCancelled(f"{self._what}: {reason}")):
            return False
        canceller, self.canceller = self.canceller, None
        if canceller is not None:
            canceller()
        return True

    def add_done_callback(self, callback: Callable[[Stream[T]], None]) -> None:
        """Call ``callback(self)`` once the stream has ended (at once if it has)."""
        with self._cond:
            if not self._ended:
                self._callbacks.append(callback)
                return
        callback(self)

    @property
    def error(self) -> BaseException | None:
        """The error the stream ended with, if any."""
        return self._error

    def set_exception(self, error: BaseException) -> bool:
        """Same as ``finish(error)`` (so a stream can stand where a future does)."""
        return self.finish(error)

    def done(self) -> bool:
        return self._ended

    def next(self, timeout: float | None = None) -> T:
        """The next item, waiting at most ``timeout`` (and never past the deadline).

        Raises:
            StopIteration: the stream ended normally.
            AskTimeout: nothing came in time.
            Exception: the error the stream ended with.
        """
        limit = self._deadline if timeout is None else min(self._deadline, time.monotonic() + timeout)
        with self._cond:
            while not self._items:
                if self._guard is not None and self._guard():
                    raise RuntimeError(f"{self._what}: waiting on the I/O thread would deadlock")
                remaining = limit - time.monotonic()
                if remaining <= 0:
                    raise AskTimeout(f"{self._what}: no next item in time")
                self._cond.wait(remaining)
            item = self._items[0]
            if item is _END:
                if self._error is not None:
                    raise self._error
                raise StopIteration
            self._items.popleft()
            self._taken += 1
            if self.credit is None or self._taken - self._credited < CREDIT_EVERY:
                return item  # type: ignore[no-any-return]
            self._credited = taken = self._taken
        self.credit(taken)
        return item  # type: ignore[no-any-return]

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        return self.next()

    def __aiter__(self) -> AsyncIterator[T]:
        return self

    async def __anext__(self) -> T:
        loop = asyncio.get_running_loop()
        while True:
            with self._cond:
                ready = bool(self._items)
                if not ready:
                    waiter = loop.create_future()
                    self._wakers.append(lambda: _wake(loop, waiter))
            if ready:
                try:
                    return self.next(0)
                except StopIteration:
                    raise StopAsyncIteration from None
            remaining = self._deadline - time.monotonic()
            try:
                await asyncio.wait_for(waiter, max(0.0, remaining))
            except asyncio.TimeoutError:
                raise AskTimeout(f"{self._what}: no next item in time") from None


def _wake(loop: asyncio.AbstractEventLoop, waiter: asyncio.Future[Any]) -> None:
    def resolve() -> None:
        if not waiter.done():
            waiter.set_result(None)

    try:
        loop.call_soon_threadsafe(resolve)
    except RuntimeError:
        pass  # loop closed
