"""Flow control of one stream: a window of items its producer has sent and its
consumer has not taken yet.

The consumer tells what it has taken (``StreamCredit``, cumulative) every
``CREDIT_EVERY`` items; a producer that opts in waits, bounded by its
request's deadline, while the window is full. A window is at least
``CREDIT_EVERY`` items, so a blocked producer is always freed by the credits
its consumer sends while it drains what it already holds.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

CREDIT_EVERY = 16


class StreamWindow:
    """One producer's side of a stream's flow control (thread-safe).

    Args:
        size: items that may be sent and not yet taken.
        deadline: wall-clock time (``time.time()``, the request's deadline)
            past which waiting for room fails.
    """

    __slots__ = ("size", "deadline", "sent", "taken", "closed", "_cond", "_waiters")

    def __init__(self, size: int, deadline: float) -> None:
        self.size = size
        self.deadline = deadline
        self.sent = 0
        self.taken = 0
        self.closed = False  # cancelled, or the consumer gone: never wait again
        self._cond = threading.Condition()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    def sent_one(self) -> None:
        with self._cond:
            self.sent += 1

    def has_room(self) -> bool:
        return self.closed or self.sent - self.taken < self.size

    def credit(self, taken: int) -> None:
        """The consumer has taken ``taken`` items in all (any thread)."""
        with self._cond:
            if taken <= self.taken:
                return
            self.taken = taken
            if not self.has_room():
                return
            self._cond.notify_all()
            waiters, self._waiters = self._waiters, []
        _wake(waiters)

    def close(self) -> None:
        """Stop any wait for room, now and later (a cancel, the consumer gone)."""
        with self._cond:
            self.closed = True
            self._cond.notify_all()
            waiters, self._waiters = self._waiters, []
        _wake(waiters)

    def wait(self) -> None:
        """Block until there is room (a producer on its own thread).

        Raises:
            TimeoutError: the deadline passed with the window still full.
        """
        with self._cond:
            while not self.has_room():
                remaining = self._remaining()
                if remaining <= 0:
                    raise self._timed_out()
                self._cond.wait(min(remaining, 1.0))

    async def wait_async(self) -> None:
        """Wait on the running loop until there is room.

        Raises:
            TimeoutError: the deadline passed with the window still full.
        """
        loop = asyncio.get_running_loop()
        while True:
            with self._cond:
                if self.has_room():
                    return
                waiter = loop.create_future()
                self._waiters.append((loop, waiter))
            remaining = self._remaining()
            if remaining <= 0:
                raise self._timed_out()
            try:
                await asyncio.wait_for(waiter, min(remaining, 1.0))
            except asyncio.TimeoutError:
                pass  # look again: the deadline decides

    def statistics(self) -> dict[str, Any]:
        return {"size": self.size, "sent": self.sent, "taken": self.taken, "in_flight": self.sent - self.taken}

    def _remaining(self) -> float:
        return self.deadline - time.time()

    def _timed_out(self) -> TimeoutError:
        return TimeoutError(f"the stream's consumer took none of its last {self.sent - self.taken} items "
                            f"(window {self.size}) before the request's deadline")


def _wake(waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]]) -> None:
    for loop, waiter in waiters:
        try:
            loop.call_soon_threadsafe(_resolve, waiter)
        except RuntimeError:
            pass  # that loop is closed


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class StreamWindows:
    """The windows of the streams this process produces for other processes,
    by (asker's address, ask id). Opened and credited on the I/O thread, ended
    on the threads that answer: single dict operations, atomic under the GIL."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._windows: dict[tuple[str, int], StreamWindow] = {}

    def open(self, asker: str, msg_id: int, deadline: float) -> StreamWindow:
        window = self._windows[(asker, msg_id)] = StreamWindow(self.size, deadline)
        return window

    def credit(self, asker: str, msg_id: int, taken: int) -> None:
        window = self._windows.get((asker, msg_id))
        if window is not None:
            window.credit(taken)

    def end(self, asker: str, msg_id: int, close: bool = False) -> None:
        """The stream was answered (``close``: or cancelled, freeing its producer)."""
        if self._windows:
            window = self._windows.pop((asker, msg_id), None)
            if window is not None and close:
                window.close()

    def close_peer(self, asker: str) -> None:
        """The asker's process is gone: nobody will credit its streams."""
        for key in [key for key in list(self._windows) if key[0] == asker]:  # a copy: answering threads pop meanwhile
            window = self._windows.pop(key, None)
            if window is not None:
                window.close()
