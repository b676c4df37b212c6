"""A stream's flow-control window: room, credits, closing, and its deadline."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from actors import Config
from actors._window import CREDIT_EVERY, StreamWindow


def test_a_window_has_room_until_size_items_are_in_flight_and_a_credit_makes_room_again() -> None:
    window = StreamWindow(3, time.time() + 10)
    for _ in range(3):
        assert window.has_room()
        window.sent_one()
    assert not window.has_room()
    window.credit(1)
    assert window.has_room() and window.statistics() == {"size": 3, "sent": 3, "taken": 1, "in_flight": 2}
    window.credit(0)  # credits are cumulative: an older one changes nothing
    assert window.taken == 1


def test_waiting_on_a_full_window_past_its_deadline_fails_saying_why() -> None:
    window = StreamWindow(1, time.time() + 0.05)
    window.sent_one()
    with pytest.raises(TimeoutError, match=r"took none of its last 1 items \(window 1\) before the request's deadline"):
        window.wait()
    with pytest.raises(TimeoutError, match="window 1"):
        asyncio.run(window.wait_async())


def test_a_credit_or_a_close_frees_a_waiting_producer() -> None:
    window = StreamWindow(1, time.time() + 30)
    window.sent_one()
    freed = threading.Event()
    waiter = threading.Thread(target=lambda: (window.wait(), freed.set()))
    waiter.start()
    window.credit(1)
    waiter.join(10)
    assert freed.is_set()

    async def wait_then_close() -> None:
        window.sent_one()
        task = asyncio.ensure_future(window.wait_async())
        await asyncio.sleep(0)
        assert not task.done()
        window.close()
        await asyncio.wait_for(task, 10)

    asyncio.run(wait_then_close())
    assert window.has_room(), "a closed window never makes anyone wait again"


def test_a_window_smaller_than_the_credit_interval_is_refused() -> None:
    with pytest.raises(ValueError, match=f"Config.stream_window: expected an int >= {CREDIT_EVERY}, got 4"):
        Config(stream_window=4)
