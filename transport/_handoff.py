"""The bounded list through which other threads hand work to the I/O thread."""

from __future__ import annotations

import threading
from typing import Any

from ._errors import SendQueueFull, TransportClosed


class Handoff:
    """A bounded, lock-protected list of work items for the I/O thread.

    Args:
        capacity: items that may wait before :meth:`put` refuses.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._lock = threading.Lock()
        self._items: list[Any] = []
        self._closed = False

    def put(self, item: Any, owner: str) -> bool:
        """Add an item; True when the list was empty (the I/O thread must be woken).

        Raises:
            TransportClosed: :meth:`close` was called.
            SendQueueFull: ``capacity`` items already wait.
        """
        with self._lock:
            if self._closed:
                raise TransportClosed(f"transport {owner} is closed")
            if len(self._items) >= self.capacity:
                raise SendQueueFull(f"{len(self._items)} frames already wait for the I/O thread (handoff_capacity)")
            self._items.append(item)
            return len(self._items) == 1

    def close(self, last: Any = None) -> bool:
        """Refuse items from now on, after ``last`` (if any); False if already closed."""
        with self._lock:
            if self._closed:
                return False
            self._closed = True
            if last is not None:
                self._items.append(last)
            return True

    def take(self) -> list[Any]:
        """Every waiting item, oldest first (I/O thread)."""
        with self._lock:
            items, self._items = self._items, []
        return items

    def idle(self) -> bool:
        """Nothing waits and it is open: a frame may go out at once without
        passing one queued before it (the caller holds the transport's socket lock)."""
        return not self._items and not self._closed

    def __len__(self) -> int:
        return len(self._items)
