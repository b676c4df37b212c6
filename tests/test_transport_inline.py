"""Work deferred to the I/O thread: it runs there after the round, off the
socket lock, and a standby thread takes the sockets over when that work runs
past its budget or is about to block. Real ZeroMQ sockets between two transports."""

from __future__ import annotations

import threading
from typing import Any, Callable, Iterator

import pytest

from protocol import Data, Envelope
from tests.helpers import wait_for
from transport import Transport, TransportConfig, about_to_block

FAST = {"heartbeat_interval_s": 0.05, "heartbeat_liveness": 4, "tick_s": 0.02}


class Receiver:
    """A transport whose envelopes go to ``on_data`` (on its I/O thread)."""

    def __init__(self, on_data: Callable[[Transport, Any], None], **cfg: Any) -> None:
        self.seen: list[tuple[Any, int]] = []
        self.down: list[str] = []
        self.on_data = on_data
        self.transport = Transport(TransportConfig(**{**FAST, **cfg}), self._on_envelope, lambda peer, why: self.down.append(why))
        self.address = self.transport.start()

    def _on_envelope(self, env: Envelope) -> None:
        self.seen.append((env.body.value, threading.get_ident()))
        self.on_data(self.transport, env.body.value)


@pytest.fixture
def pair() -> Iterator[Callable[..., tuple[Transport, Receiver]]]:
    made: list[Transport] = []
    released = threading.Event()

    def make(on_data: Callable[[Transport, Any], None], **cfg: Any) -> tuple[Transport, Receiver]:
        receiver = Receiver(on_data, **cfg)
        sender = Transport(TransportConfig(**FAST), lambda env: None, lambda peer, why: None)
        sender.start()
        made.extend([sender, receiver.transport])
        return sender, receiver

    make.released = released  # type: ignore[attr-defined]
    yield make
    released.set()  # work a test held ends before the transports close
    for t in made:
        t.close()


def send(sender: Transport, receiver: Receiver, value: Any) -> None:
    sender.send(receiver.address, Envelope("data", Data(value), 0, None, sender.address, "x"))


def test_deferred_work_runs_on_the_receiving_thread_after_its_round_not_as_the_io_thread(pair: Any) -> None:
    ran: list[tuple[int, bool]] = []

    def on_data(t: Transport, _value: Any) -> None:
        assert t.defer(lambda: ran.append((threading.get_ident(), t.is_io_thread())), lambda w: pytest.fail("not elsewhere"))

    sender, receiver = pair(on_data)
    send(sender, receiver, 1)
    wait_for(lambda: ran, 5, "the deferred work to run")
    assert ran == [(receiver.seen[0][1], False)], "same thread as the callback; user code there is free to wait"
    assert receiver.transport.statistics().inline_takeovers == 0
    assert not receiver.transport.defer(lambda: None, lambda w: None), "only a callback on the I/O thread may defer"


def test_many_short_pieces_past_the_budget_yield_to_the_sockets_and_stay_inline_in_order(pair: Any) -> None:
    ran: list[int] = []
    seen_when: list[int] = []  # how many pieces had run when the second frame was received

    def piece(i: int) -> Callable[[], None]:
        return lambda: (threading.Event().wait(0.001), ran.append(i))  # type: ignore[func-returns-value]

    def on_data(t: Transport, value: Any) -> None:
        if value == "many":
            for i in range(1000):
                assert t.defer(piece(i), lambda w: pytest.fail("a short piece is never moved"))
        else:
            seen_when.append(len(ran))

    sender, receiver = pair(on_data, inline_budget_s=0.05)
    send(sender, receiver, "many")
    wait_for(lambda: ran, 5, "the first piece")
    send(sender, receiver, "ping")
    wait_for(lambda: len(ran) == 1000, 30, "every piece")
    assert ran == list(range(1000)), "in the order deferred"
    assert seen_when and seen_when[0] < 1000, "received between pieces, not after the whole round"
    assert receiver.transport.statistics().inline_takeovers == 0, "no piece ran past the budget"


def test_work_past_its_budget_lets_a_standby_take_the_sockets_and_the_peer_stays_alive(pair: Any) -> None:
    release = threading.Event()

    def on_data(t: Transport, value: Any) -> None:
        if value == "hold":
            t.defer(lambda: release.wait(10), lambda w: pytest.fail("not elsewhere"))

    sender, receiver = pair(on_data, inline_budget_s=0.01)
    sender.watch(receiver.address)
    send(sender, receiver, "hold")
    wait_for(lambda: receiver.seen, 5, "the first frame")
    for i in range(5):
        send(sender, receiver, i)
    wait_for(lambda: len(receiver.seen) == 6, 5, "later frames received while the first work still runs")
    assert receiver.seen[1][1] != receiver.seen[0][1], "a new I/O thread received them"
    threading.Event().wait(0.5)  # several liveness windows (0.2 s) with the first thread held: not a sync
    stats = receiver.transport.statistics()
    assert not release.is_set() and stats.peers_lost == 0 and stats.inline_takeovers == 1
    release.set()
    send(sender, receiver, "after")
    wait_for(lambda: len(receiver.seen) == 7, 5, "a frame after the held work ended")


def test_work_not_started_when_a_standby_took_over_goes_where_its_deferrer_said(pair: Any) -> None:
    release, moved = threading.Event(), []

    def on_data(t: Transport, value: Any) -> None:
        if value == "hold":
            t.defer(lambda: release.wait(10), lambda w: pytest.fail("the running one is never moved"))
            t.defer(lambda: moved.append("ran inline"), lambda w: moved.append("elsewhere"))

    sender, receiver = pair(on_data, inline_budget_s=0.01)
    send(sender, receiver, "hold")
    wait_for(lambda: moved, 5, "the second work to be moved")
    release.set()
    assert moved == ["elsewhere"]


def test_work_about_to_block_hands_the_sockets_on_at_once(pair: Any) -> None:
    answered, outcome = threading.Event(), []

    def on_data(t: Transport, value: Any) -> None:
        if value == "ask":
            def wait_for_answer() -> None:
                about_to_block()  # as Future.get does
                outcome.append(answered.wait(5))
            t.defer(wait_for_answer, lambda w: pytest.fail("not elsewhere"))
        elif value == "answer":
            answered.set()

    sender, receiver = pair(on_data, inline_budget_s=60.0)  # the watcher alone would not take over in time
    send(sender, receiver, "ask")
    wait_for(lambda: receiver.seen, 5, "the ask")
    send(sender, receiver, "answer")
    wait_for(lambda: outcome, 10, "the work to end")
    assert outcome == [True], "the answer was received by a new I/O thread while the work waited"


def test_a_bad_inline_budget_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match="inline_budget_s"):
        TransportConfig(inline_budget_s=0)
