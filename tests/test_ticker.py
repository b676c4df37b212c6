"""The Ticker: periodic tells that never pile up, and urgent ones at once."""

from __future__ import annotations

import threading

from actors._ticker import Ticker
from tests.helpers import wait_for


class Inbox:
    def __init__(self) -> None:
        self.told: list[str] = []

    def tell(self, message: str) -> None:
        self.told.append(message)


def test_ticks_are_skipped_while_the_last_one_is_unhandled() -> None:
    inbox = Inbox()
    ticker = Ticker(inbox, lambda: "tick", 0.01, "t").start()
    try:
        wait_for(lambda: inbox.told, 5, "a first tick")
        threading.Event().wait(0.1)
        assert inbox.told == ["tick"], "nothing piles up while the tick is unhandled"
        ticker.handled()
        wait_for(lambda: len(inbox.told) == 2, 5, "the next tick")
    finally:
        ticker.stop()


def test_an_urgent_tick_goes_out_at_once_even_with_one_pending() -> None:
    inbox = Inbox()
    urgent = threading.Event()
    ticker = Ticker(inbox, lambda: "tick", 30.0, "t", urgent=urgent, make_urgent=lambda: "now").start()
    try:
        urgent.set()
        wait_for(lambda: inbox.told == ["now"], 5, "the urgent tick")
        urgent.set()
        wait_for(lambda: inbox.told == ["now", "now"], 5, "a second urgent tick while one is pending")
    finally:
        ticker.stop()
        urgent.set()
