"""The asks a process waits on, with their deadlines (``actors/_pending.py``): pure logic."""

from __future__ import annotations

import time

from actors import AskTimeout, Future
from actors._callbacks import Pending
from actors._pending import _COMPACT_AT, PendingAsks


def _ask(asks: PendingAsks, msg_id: int, timeout: float) -> Future[int]:
    future: Future[int] = Future(f"ask {msg_id}")
    asks.add(msg_id, Pending(future, "ipc://peer", "actor"), timeout)
    return future


def test_answered_asks_do_not_leave_their_deadlines_behind_for_long() -> None:
    asks = PendingAsks()
    for msg_id in range(10 * _COMPACT_AT):  # a long run of asks answered at once, with a long deadline
        _ask(asks, msg_id, 300.0)
        asks.settle(msg_id, None, msg_id)
    assert len(asks) == 0 and asks.deadlines_held() <= _COMPACT_AT + 1


def test_asks_still_waiting_keep_their_deadlines_when_answered_ones_are_swept() -> None:
    asks = PendingAsks()
    waiting = [_ask(asks, msg_id, 0.01) for msg_id in range(10)]
    for msg_id in range(10, 10 + 3 * _COMPACT_AT):
        _ask(asks, msg_id, 300.0)
        asks.settle(msg_id, None, msg_id)
    asks.expire(time.monotonic() + 1)
    for future in waiting:
        assert future.done()
        try:
            future.get(0)
        except AskTimeout:
            continue
        raise AssertionError("a waiting ask was not failed at its deadline")
    assert asks.timed_out == 10 and len(asks) == 0
