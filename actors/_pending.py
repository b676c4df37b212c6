"""The asks of one process that wait for their answers, with their deadlines."""

from __future__ import annotations

import heapq
import threading
import time
from typing import Any, Callable

from ._callbacks import Pending
from ._errors import AskTimeout


_COMPACT_AT = 4096  # deadlines kept before answered ones are swept out


class PendingAsks:
    """Asks waiting for an answer, by message id (thread-safe).

    Each ask is completed exactly once: by its answer (:meth:`settle`), by
    its deadline (:meth:`expire`), by its peer's death (:meth:`fail_peer`) or
    by the system's shutdown (:meth:`fail_all`).
    """

    def __init__(self) -> None:
        self._by_id: dict[int, Pending] = {}
        self._deadlines: list[tuple[float, int]] = []
        self._lock = threading.Lock()
        self.timed_out = 0
        self.late = 0  # answers for asks no longer waiting

    def deadlines_held(self) -> int:
        """Deadlines kept (those of answered asks included, until swept): at most about twice
        the asks waiting, or ``_COMPACT_AT``."""
        return len(self._deadlines)

    def __len__(self) -> int:
        return len(self._by_id)

    def add(self, msg_id: int, pending: Pending, timeout: float) -> Pending:
        """Wait for ask ``msg_id`` until ``timeout`` from now; returns ``pending``."""
        self._by_id[msg_id] = pending
        with self._lock:
            heap = self._deadlines
            heapq.heappush(heap, (time.monotonic() + timeout, msg_id))
            if len(heap) > _COMPACT_AT and len(heap) > 2 * len(self._by_id):
                # answered asks leave their deadline behind until it passes (minutes for a serve
                # request): drop those now and then, so the heap follows what waits, not the rate
                by_id = self._by_id
                self._deadlines = [entry for entry in heap if entry[1] in by_id]
                heapq.heapify(self._deadlines)
        return pending

    def get(self, msg_id: int) -> Pending | None:
        return self._by_id.get(msg_id)

    def pop(self, msg_id: int) -> Pending | None:
        return self._by_id.pop(msg_id, None)

    def settle(self, msg_id: int, error: BaseException | None, value: Any = None, answer: bool = True) -> None:
        """Complete ask ``msg_id`` with ``value`` or ``error`` (a stream's last
        item may travel with its end: a value other than None is pushed first)."""
        pending = self._by_id.pop(msg_id, None)
        if pending is None:
            self.late += answer
            return
        if error is not None:
            pending.future.set_exception(error)
        elif pending.stream:
            if value is not None:
                pending.future.push(value)  # type: ignore[union-attr]
            pending.future.finish()  # type: ignore[union-attr]
        else:
            pending.future.set_result(value)  # type: ignore[union-attr]

    def push(self, msg_id: int, value: Any) -> bool:
        """One item of streaming ask ``msg_id``; False if nobody waits for it."""
        pending = self._by_id.get(msg_id)
        if pending is None or not pending.stream:
            return False
        pending.future.push(value)  # type: ignore[union-attr]
        return True

    def expire(self, now: float) -> None:
        """Fail the asks whose deadline passed."""
        expired = []
        with self._lock:
            heap = self._deadlines
            while heap and heap[0][0] <= now:
                expired.append(heapq.heappop(heap)[1])
        for msg_id in expired:
            pending = self._by_id.pop(msg_id, None)
            if pending is not None:
                self.timed_out += 1
                pending.future.set_exception(AskTimeout(f"ask to {pending.address}#{pending.name}: no answer by its deadline"))

    def fail_peer(self, peer: str, error: Callable[[Pending], BaseException]) -> None:
        """Fail every ask sent to the process at ``peer``."""
        for msg_id, pending in list(self._by_id.items()):
            if pending.address == peer:
                self.settle(msg_id, error(pending), answer=False)

    def fail_all(self, error: Callable[[], BaseException]) -> None:
        for msg_id in list(self._by_id):
            pending = self._by_id.pop(msg_id, None)
            if pending is not None:
                pending.future.set_exception(error())
