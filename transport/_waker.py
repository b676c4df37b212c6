"""A file descriptor other threads can poke to wake the I/O thread's poll, and a
wait that polls without sleeping for a while first (for a poller, or as an
event loop's selector)."""

from __future__ import annotations

import os
import selectors
import time
from typing import Any, Callable, Mapping


class Waker:
    """An eventfd (Linux) or a pipe that becomes readable after :meth:`wake`."""

    def __init__(self) -> None:
        if hasattr(os, "eventfd"):
            self._read = self._write = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            self._eventfd = True
        else:
            self._read, self._write = os.pipe()
            os.set_blocking(self._read, False)
            os.set_blocking(self._write, False)
            self._eventfd = False
        self._closed = False

    def fileno(self) -> int:
        """The descriptor to poll for readability."""
        return self._read

    def wake(self) -> None:
        """Make the descriptor readable (safe from any thread)."""
        if self._closed:  # its number may belong to another descriptor by now
            return
        try:
            if self._eventfd:
                os.eventfd_write(self._write, 1)
            else:
                os.write(self._write, b"\0")
        except (BlockingIOError, OSError):
            pass  # already readable, or closed during shutdown

    def drain(self) -> None:
        """Consume pending wake-ups."""
        try:
            if self._eventfd:
                os.eventfd_read(self._read)
            else:
                while os.read(self._read, 4096):
                    pass
        except (BlockingIOError, OSError):
            pass

    def close(self) -> None:
        """Close the descriptors. Idempotent."""
        if self._closed:
            return
        self._closed = True
        os.close(self._read)
        if self._write != self._read:
            os.close(self._write)


def poll_spinning(look: Callable[[], Any], until: float) -> Any:
    """Call ``look`` (a poll that does not wait, e.g. ``lambda: poller.poll(0)``) without
    sleeping until it finds something or ``until`` (``time.monotonic()``) passes, yielding
    the CPU between looks. Returns what it last returned (empty if nothing came in time):
    what comes within it costs no wake-up of the polling thread (about 50 us on a VM), at
    the price of that much CPU."""
    while True:
        ready = look()
        if ready or time.monotonic() >= until:
            return ready  # type: ignore[no-any-return]
        os.sched_yield()


class SpinningSelector(selectors.BaseSelector):
    """A selector (for ``asyncio.SelectorEventLoop``) that, for ``spin_s`` after a select
    that found something, looks again without sleeping before it sleeps (as
    :func:`poll_spinning`): what comes within it costs its loop no wake-up. It wraps
    the platform's default selector; ``spin_s`` 0 makes it that selector.

    Args:
        spin_s: how long after a busy select the next ones spin (``TransportConfig.io_spin_s``).
    """

    def __init__(self, spin_s: float) -> None:
        self._inner = selectors.DefaultSelector()
        self._spin_s = spin_s
        self._busy_until = 0.0

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._inner.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._inner.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._inner.modify(fileobj, events, data)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        now = time.monotonic()
        if now < self._busy_until and (timeout is None or timeout > 0):
            until = self._busy_until if timeout is None else min(self._busy_until, now + timeout)
            ready = poll_spinning(lambda: self._inner.select(0), until)
            if ready or timeout is not None and time.monotonic() >= now + timeout:
                return self._note(ready)
            timeout = None if timeout is None else max(0.0, now + timeout - time.monotonic())
        return self._note(self._inner.select(timeout))

    def _note(self, ready: list[tuple[selectors.SelectorKey, int]]) -> list[tuple[selectors.SelectorKey, int]]:
        if ready and self._spin_s > 0:
            self._busy_until = time.monotonic() + self._spin_s
        return ready

    def close(self) -> None:
        self._inner.close()

    def get_key(self, fileobj: Any) -> selectors.SelectorKey:
        return self._inner.get_key(fileobj)

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return self._inner.get_map()
