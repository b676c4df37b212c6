"""What a leading event loop sends in one turn goes out together (``transport/_cork.py``).

The cork's rules alone; with the watch on real ZeroMQ sockets and a real
loop (who sends the cork when the lead ends); the whole path with real
processes (batches reach the peer, in order, and nothing corked is held up
by a loop that blocks)."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable, Iterator

import pytest

from actors import ActorSystem
from tests.conftest import Peer
from tests.helpers import wait_for
from tests.test_transport_leader import Sockets, check_from_io_thread, until
from transport._cork import Cork
from transport._batches import join_batch
from transport._leader import _LOOP_STALE_S

PeerFactory = Callable[..., Peer]


# ---- the cork alone ----------------------------------------------------------------------------


def test_a_cork_asks_for_one_send_per_turn() -> None:
    cork = Cork()
    assert cork.add("peer", b"1", None)  # the first frame of a turn: schedule the send
    assert not cork.add("peer", b"2", None)  # scheduled already
    cork.scheduled = False  # the send ran
    assert cork.add("other", b"3", None)


def test_a_cork_gives_its_frames_oldest_first_and_is_empty_after() -> None:
    cork = Cork()
    for n in range(5):
        cork.add("peer" if n % 2 else "other", bytes([n]), None)
    assert [f for _, f, _ in cork.take()] == [bytes([n]) for n in range(5)]
    assert len(cork) == 0 and cork.take() == []


def test_a_cork_is_stale_once_its_oldest_frame_waited_the_bound() -> None:
    cork = Cork()
    assert not cork.stale(time.monotonic() + 10, 0.05)  # empty: never stale
    cork.add("peer", b"1", None)
    assert not cork.stale(cork.since + 0.01, 0.05)
    assert cork.stale(cork.since + 0.06, 0.05)


def test_a_cork_groups_frames_for_connected_peers_and_leaves_the_rest_in_order_for_the_queue() -> None:
    cork = Cork()
    for peer, frame in (("a", b"1"), ("new", b"2"), ("a", b"3"), ("b", b"4"), ("new", b"5")):
        cork.add(peer, frame, None)
    groups, later = cork.sort_out(True, lambda peer: peer != "new", 1 << 20)
    sent = {peer: frames for peer, frames, _, _ in groups.take()}
    assert sent == {"a": join_batch([b"1", b"3"]), "b": b"4"}
    assert [(peer, frame) for peer, frame, _ in later] == [("new", b"2"), ("new", b"5")]
    assert len(cork) == 0


def test_a_cork_sends_nothing_past_frames_already_waiting_in_the_queue() -> None:
    cork = Cork()
    cork.add("a", b"1", None)
    cork.add("b", b"2", None)
    groups, later = cork.sort_out(False, lambda peer: True, 1 << 20)  # the hand-off queue holds older frames
    assert list(groups.take()) == [] and [frame for _, frame, _ in later] == [b"1", b"2"]


# ---- the watch sends the cork when the lead ends -----------------------------------------------


class Uncorked:
    """The transport's part, recorded: what each send of a cork took."""

    def __init__(self) -> None:
        self.sends: list[list[bytes]] = []

    def __call__(self, cork: Cork) -> None:
        taken = [frame for _, frame, _ in cork.take()]
        if taken:
            self.sends.append(taken)


@pytest.fixture
def uncorked() -> Uncorked:
    return Uncorked()


@pytest.fixture
def corking(uncorked: Uncorked) -> Iterator[Sockets]:
    s = Sockets(uncorked)
    yield s
    s.close()


async def _lead_and_cork(sockets: Sockets, *frames: bytes) -> Any:
    lead = sockets.watch.lead_loop(asyncio.get_running_loop())
    assert lead is not None
    for frame in frames:
        lead.cork.add("peer", frame, None)
    return lead


def test_a_loop_that_gives_the_lead_back_sends_what_it_corked(
        corking: Sockets, uncorked: Uncorked, loop: asyncio.AbstractEventLoop) -> None:
    corking.drain()

    async def scenario() -> None:
        lead = await _lead_and_cork(corking, b"a", b"b")
        lead.done()
        await until(lambda: lead.over, "the idle loop to give the lead back")

    loop.run_until_complete(scenario())
    assert uncorked.sends == [[b"a", b"b"]]


def test_a_loop_blocked_with_frames_corked_loses_the_lead_and_they_are_sent(
        corking: Sockets, uncorked: Uncorked, loop: asyncio.AbstractEventLoop) -> None:
    corking.drain()
    lead = loop.run_until_complete(_lead_and_cork(corking, b"request"))  # then the loop stops turning
    lead.read = lead.cork.since  # it read when it corked: only the cork's age counts
    check_from_io_thread(corking, lead.cork.since + _LOOP_STALE_S / 5)  # corked lately: it keeps the lead
    assert corking.watch.loop_lead is lead and uncorked.sends == []
    check_from_io_thread(corking, lead.cork.since + 2 * _LOOP_STALE_S)  # nothing waits on the ROUTER, but the cork is stale
    assert lead.over and corking.watch.loop_lead is None and uncorked.sends == [[b"request"]]
    loop.run_until_complete(until(lambda: lead.fd == -1, "the loop to stop watching at its next turn"))


def test_a_leading_loop_that_blocks_on_an_answer_sends_what_it_corked_first(
        corking: Sockets, uncorked: Uncorked, loop: asyncio.AbstractEventLoop) -> None:
    corking.drain()
    order: list[str] = []

    def sent_before_reading() -> bool:
        order.append("sent" if uncorked.sends else "not sent")
        return bool(corking.read)

    async def scenario() -> bool:
        await _lead_and_cork(corking, b"request")
        corking.dealer.send(b"answer")
        return corking.watch.lead(sent_before_reading, time.monotonic() + 10)  # blocks the loop: reads here

    assert loop.run_until_complete(scenario())
    assert uncorked.sends == [[b"request"]] and order[0] == "sent" and corking.read == [b"answer"]


def test_a_closed_loop_has_its_cork_sent_by_the_io_thread(
        corking: Sockets, uncorked: Uncorked, loop: asyncio.AbstractEventLoop) -> None:
    lead = loop.run_until_complete(_lead_and_cork(corking, b"last words"))
    loop.close()
    check_from_io_thread(corking, lead.read)
    assert lead.over and uncorked.sends == [[b"last words"]]


# ---- real processes ----------------------------------------------------------------------------


def test_what_coroutines_send_in_one_turn_reaches_the_peer_in_batches(system: ActorSystem, peer: PeerFactory) -> None:
    ref = system.ref(peer().address, "echo")

    async def scenario() -> list[Any]:
        await _until_the_loop_leads(system, lambda: ref.ask("lead"))
        return list(await asyncio.gather(*(_awaited(ref.ask(n)) for n in range(200))))

    before = system.statistics().transport.batches_sent
    assert asyncio.run(scenario()) == list(range(200))
    assert system.statistics().transport.batches_sent > before  # some asks of a turn went out together
    assert system.statistics().transport.send_failures == 0


def test_a_loop_keeps_its_order_to_a_peer_across_corked_frames_and_a_frame_with_buffers(
        system: ActorSystem, peer: PeerFactory) -> None:
    recorder = system.ref(peer({"recorder": "tests.helpers:Recorder"}).address, "recorder")
    big = b"x" * 20_000  # over the out-of-band threshold: its frame carries a buffer and cannot be corked

    async def scenario() -> Any:
        await _until_the_loop_leads(system, lambda: recorder.ask("dump"))
        for n in range(10):
            recorder.tell(n)
        recorder.tell(big)
        for n in range(10, 20):
            recorder.tell(n)
        return await recorder.ask("dump")

    seen = asyncio.run(scenario())
    assert seen == [*range(10), big, *range(10, 20)]


def test_a_request_sent_by_a_loop_that_then_blocks_is_not_held_up(system: ActorSystem, peer: PeerFactory) -> None:
    ref = system.ref(peer().address, "echo")

    async def scenario() -> Any:
        await _until_the_loop_leads(system, lambda: ref.ask("lead"))
        answer = ref.ask("while the loop is blocked")  # corked, and the loop never ends its turn below
        wait_for(answer.done, 10, "the I/O thread to send the corked ask and read its answer")  # blocks the loop
        return answer.get(0)

    assert asyncio.run(scenario()) == "while the loop is blocked"


async def _awaited(future: Any) -> Any:
    return await future


async def _until_the_loop_leads(system: ActorSystem, ask: Callable[[], Any]) -> None:
    """Await asks until the running loop leads (a busy machine may take the lead back once)."""
    assert system.reader is not None
    for _ in range(100):
        await ask()
        if system.reader.loop_lead is not None and system.reader.loop_lead.loop is asyncio.get_running_loop():
            return
    raise AssertionError("the loop never led in 100 asks")

