"""A thread or loop waiting for an answer reads the ROUTER itself (``transport/_leader.py``).

The watch's rules with real ZeroMQ sockets in one process (no threads but the
test's own where a leader must wait); the whole path with real processes."""

from __future__ import annotations

import asyncio
import select
import selectors
import threading
import time
from typing import Any, Callable, Iterator

import pytest
import zmq

from actors import ActorSystem, ActorSystemShutDown
from tests.conftest import Peer
from tests.helpers import Echo, Traffic, wait_for
from transport._leader import RouterWatch
from transport._waker import SpinningSelector, Waker, poll_spinning

PeerFactory = Callable[..., Peer]


class Sockets:
    """A ROUTER with its watch, and a DEALER that talks to it."""

    def __init__(self, uncork: Callable[[Any], None] | None = None, spin_s: float = 0.0) -> None:
        self.ctx = zmq.Context()
        self.router = self.ctx.socket(zmq.ROUTER)
        self.router.bind("inproc://leader")
        self.dealer = self.ctx.socket(zmq.DEALER)
        self.dealer.connect("inproc://leader")
        self.lock = threading.RLock()
        self.read: list[bytes] = []
        self.unread = 0
        self.watch = RouterWatch(self.router, self.lock, self.drain, self.note_unread, lambda: True, uncork, spin_s)

    def drain(self) -> None:
        while True:
            try:
                self.read.append(self.router.recv_multipart(zmq.NOBLOCK)[1])
            except zmq.Again:
                return

    def note_unread(self) -> None:
        self.unread += 1

    def io_thread_would_wake(self) -> bool:
        return bool(select.select([self.watch.fileno()], [], [], 0)[0])

    def close(self) -> None:
        with self.lock:
            self.watch.close()
        self.dealer.close(0)
        self.router.close(0)
        self.ctx.term()


@pytest.fixture
def sockets() -> Iterator[Sockets]:
    s = Sockets()
    yield s
    s.close()


async def until(condition: Callable[[], Any], what: str, timeout: float = 5.0) -> None:
    """Let the running loop turn until ``condition()`` holds, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout}s")
        await asyncio.sleep(0.005)


def test_the_io_thread_is_woken_by_the_router_through_the_watch(sockets: Sockets) -> None:
    sockets.dealer.send(b"hello")
    wait_for(sockets.io_thread_would_wake, 5, "the watch to report the ROUTER readable")
    sockets.drain()
    assert sockets.read == [b"hello"]


def test_a_leader_reads_what_arrives_and_gives_the_router_back(sockets: Sockets) -> None:
    sockets.drain()  # the last reader read the ROUTER empty
    leader = threading.Thread(target=lambda: sockets.watch.lead(lambda: bool(sockets.read), time.monotonic() + 10))
    leader.start()
    wait_for(lambda: sockets.watch.leads == 1, 5, "the thread to lead")
    sockets.dealer.send(b"answer")
    leader.join(10)
    assert not leader.is_alive() and sockets.read == [b"answer"]
    sockets.dealer.send(b"later")  # given back: the I/O thread's watch reports the ROUTER again
    wait_for(sockets.io_thread_would_wake, 5, "the watch to report the ROUTER readable again")


def test_a_spinning_leader_reads_what_comes_and_never_spins_past_its_deadline() -> None:
    sockets = Sockets(spin_s=60.0)
    try:
        sockets.drain()
        leader = threading.Thread(target=lambda: sockets.watch.lead(lambda: bool(sockets.read), time.monotonic() + 30))
        leader.start()
        wait_for(lambda: sockets.watch.leads == 1, 5, "the thread to lead")
        sockets.dealer.send(b"answer")  # comes while it spins
        leader.join(10)
        assert not leader.is_alive() and sockets.read == [b"answer"]
        began = time.monotonic()
        assert sockets.watch.lead(lambda: False, began + 0.2)  # nothing comes: the deadline ends the spin
        assert 0.2 <= time.monotonic() - began < 5
    finally:
        sockets.close()


def test_polling_without_sleeping_returns_what_is_ready_or_nothing_at_its_bound() -> None:
    waker = Waker()
    poller = select.poll()
    poller.register(waker.fileno(), select.POLLIN)
    try:
        began = time.monotonic()
        assert poll_spinning(lambda: poller.poll(0), began + 0.05) == []
        assert 0.05 <= time.monotonic() - began < 5
        waker.wake()
        assert [fd for fd, _ in poll_spinning(lambda: poller.poll(0), time.monotonic() + 60)] == [waker.fileno()]
    finally:
        waker.close()


def test_a_spinning_selector_spins_only_after_a_busy_select_and_never_past_its_timeout() -> None:
    waker = Waker()
    selector = SpinningSelector(60.0)  # a spin longer than any test: its bounds are the timeouts
    selector.register(waker.fileno(), selectors.EVENT_READ)
    try:
        began = time.monotonic()
        assert selector.select(0.05) == [] and 0.05 <= time.monotonic() - began < 5, "not busy yet: it sleeps"
        waker.wake()
        assert [key.fd for key, _ in selector.select(60)] == [waker.fileno()]
        waker.drain()
        began = time.monotonic()
        assert selector.select(0.05) == [], "busy: it spins, but only until the timeout"
        assert 0.05 <= time.monotonic() - began < 5
        threading.Timer(0.05, waker.wake).start()
        assert [key.fd for key, _ in selector.select(None)] == [waker.fileno()], "what comes while it spins is found"
        assert waker.fileno() in selector.get_map() and selector.get_key(waker.fileno()).fd == waker.fileno()
        selector.unregister(waker.fileno())
        assert selector.select(0) == []
    finally:
        selector.close()
        waker.close()


def test_an_event_loop_runs_on_a_spinning_selector() -> None:
    loop = asyncio.SelectorEventLoop(SpinningSelector(0.001))
    try:
        async def two_turns() -> str:
            await asyncio.sleep(0.01)
            return "done"

        assert loop.run_until_complete(two_turns()) == "done"
    finally:
        loop.close()


def test_a_message_whose_signal_the_leader_took_is_reported_unread(sockets: Sockets) -> None:
    sockets.drain()
    sockets.dealer.send(b"pending")
    wait_for(lambda: sockets.router.getsockopt(zmq.EVENTS) & zmq.POLLIN, 5, "the message to arrive")  # takes its signal
    assert sockets.watch.lead(lambda: True, time.monotonic() + 10)  # its own answer is in: gives back at once
    assert sockets.unread == 1 and sockets.read == []  # the I/O thread is told to read it
    sockets.drain()
    assert sockets.read == [b"pending"]


def test_a_leader_that_read_the_router_empty_leaves_what_comes_next_to_wake_the_io_thread(sockets: Sockets) -> None:
    sockets.drain()
    sockets.dealer.send(b"answer")
    assert sockets.watch.lead(lambda: bool(sockets.read), time.monotonic() + 10)
    assert sockets.read == [b"answer"] and sockets.unread == 0  # its last read found nothing more: no second look
    sockets.dealer.send(b"later")
    wait_for(sockets.io_thread_would_wake, 5, "the watch to report what came after the leader")


def test_one_thread_leads_at_a_time_and_a_closed_watch_refuses_leaders(sockets: Sockets) -> None:
    release = threading.Event()
    first = threading.Thread(target=lambda: sockets.watch.lead(release.is_set, time.monotonic() + 10))
    first.start()
    try:
        wait_for(lambda: sockets.watch.leads == 1, 5, "the first thread to lead")
        assert not sockets.watch.lead(lambda: False, time.monotonic() + 10)  # another leads: wait as usual
    finally:
        release.set()
        sockets.watch.wake_leader()
        first.join(10)
    assert not first.is_alive()
    with sockets.lock:
        sockets.watch.close()
    assert not sockets.watch.lead(lambda: False, time.monotonic() + 10)


def test_a_loop_awaiting_answers_reads_them_itself_and_gives_the_router_back_when_idle(
        sockets: Sockets, loop: asyncio.AbstractEventLoop) -> None:
    sockets.drain()

    async def scenario() -> None:
        lead = sockets.watch.lead_loop(asyncio.get_running_loop())
        assert lead is not None and sockets.watch.lead_loop(asyncio.get_running_loop()) is lead  # a second await joins it
        sockets.dealer.send(b"answer")
        await until(lambda: sockets.read, "the loop to read the answer")
        assert sockets.watch.loop_lead is lead and sockets.watch.leads == 1
        lead.done()
        lead.done()
        await until(lambda: sockets.watch.loop_lead is None and lead.fd == -1, "the idle loop to give the ROUTER back")

    loop.run_until_complete(scenario())
    assert sockets.read == [b"answer"] and sockets.unread == 0
    sockets.dealer.send(b"later")  # the I/O thread's watch reports the ROUTER again
    wait_for(sockets.io_thread_would_wake, 5, "the watch to report the ROUTER readable again")


def test_a_loop_that_stops_reading_loses_the_router_when_messages_wait(sockets: Sockets, loop: asyncio.AbstractEventLoop) -> None:
    sockets.drain()
    lead = loop.run_until_complete(_lead_on_running_loop(sockets))  # then the loop stops turning: nobody reads there
    check_from_io_thread(sockets, lead.read + 1)  # stale, but nothing waits: it keeps the lead
    assert sockets.watch.loop_lead is lead
    sockets.dealer.send(b"waiting")
    wait_for(lambda: sockets.router.getsockopt(zmq.EVENTS) & zmq.POLLIN, 5, "the message to arrive")
    check_from_io_thread(sockets, lead.read + 0.001)  # read lately: not yet
    assert sockets.watch.loop_lead is lead
    check_from_io_thread(sockets, lead.read + 1)
    assert sockets.watch.loop_lead is None and lead.over and sockets.unread == 1  # the I/O thread reads it
    loop.run_until_complete(until(lambda: lead.fd == -1, "the loop to stop watching at its next turn"))
    assert sockets.watch.lead(lambda: True, time.monotonic() + 1)  # the lead is free for others


def test_a_closed_loop_loses_the_router_at_the_next_round(sockets: Sockets, loop: asyncio.AbstractEventLoop) -> None:
    lead = loop.run_until_complete(_lead_on_running_loop(sockets))
    loop.close()
    check_from_io_thread(sockets, lead.read)  # closed: at once
    assert sockets.watch.loop_lead is None and lead.fd == -1 and sockets.unread == 1


def test_a_leading_loop_that_blocks_on_an_answer_reads_it_there(sockets: Sockets, loop: asyncio.AbstractEventLoop) -> None:
    sockets.drain()

    async def scenario() -> bool:
        lead = sockets.watch.lead_loop(asyncio.get_running_loop())
        assert lead is not None
        sockets.dealer.send(b"answer")
        return sockets.watch.lead(lambda: bool(sockets.read), time.monotonic() + 10)  # blocks the loop: reads here

    assert loop.run_until_complete(scenario()) and sockets.read == [b"answer"]


def test_a_closed_watch_ends_the_loops_lead(sockets: Sockets, loop: asyncio.AbstractEventLoop) -> None:
    lead = loop.run_until_complete(_lead_on_running_loop(sockets))
    with sockets.lock:
        sockets.watch.close()
    loop.run_until_complete(until(lambda: lead.fd == -1, "the loop to stop watching"))
    assert lead.over and sockets.watch.loop_lead is None
    loop.run_until_complete(_refused_on_running_loop(sockets))


def check_from_io_thread(sockets: Sockets, now: float) -> None:
    """The I/O thread's round at ``now`` (``time.monotonic()``), on a thread of its own as in a transport."""
    def check() -> None:
        with sockets.lock:
            sockets.watch.check_loop(now)

    thread = threading.Thread(target=check)
    thread.start()
    thread.join(10)
    assert not thread.is_alive()


class _NoReaders(asyncio.SelectorEventLoop):
    """A loop that cannot watch descriptors (as some loops cannot)."""

    def add_reader(self, fd: Any, callback: Any, *args: Any) -> None:
        raise NotImplementedError("no readers on this loop")


def test_a_loop_that_cannot_watch_descriptors_does_not_lead() -> None:
    sockets, loop = Sockets(), _NoReaders()
    try:
        loop.run_until_complete(_refused_on_running_loop(sockets))
        assert sockets.watch.loop_lead is None and sockets.watch.leads == 0
        sockets.dealer.send(b"for the io thread")  # the I/O thread's watch reports the ROUTER again
        wait_for(sockets.io_thread_would_wake, 5, "the watch to report the ROUTER readable")
    finally:
        loop.close()
        sockets.close()


async def _lead_on_running_loop(sockets: Sockets) -> Any:
    lead = sockets.watch.lead_loop(asyncio.get_running_loop())
    assert lead is not None
    return lead


async def _refused_on_running_loop(sockets: Sockets) -> None:
    assert sockets.watch.lead_loop(asyncio.get_running_loop()) is None


# ---- real processes ----------------------------------------------------------------------------


def test_a_thread_asking_in_a_row_reads_its_answers_itself(system: ActorSystem, peer: PeerFactory) -> None:
    ref = system.ref(peer().address, "echo")
    before = system.statistics().transport.caller_leads
    for n in range(200):
        assert ref.ask(n).get(timeout=10) == n
    assert system.statistics().transport.caller_leads - before >= 150  # a few answers may be in before the wait


def test_a_coroutine_awaiting_in_a_row_has_its_loop_read_the_answers(system: ActorSystem, peer: PeerFactory) -> None:
    ref = system.ref(peer().address, "echo")
    before = system.statistics().transport.caller_leads

    async def asks() -> list[Any]:
        return [await ref.ask(n) for n in range(200)]

    assert asyncio.run(asks()) == list(range(200))
    assert 1 <= system.statistics().transport.caller_leads - before < 100  # the loop kept the lead from one answer to the next
    assert ref.ask("after").get(timeout=10) == "after"  # the closed loop's lead is gone
    assert system.statistics().transport.peers_lost == 0


def test_a_loop_blocked_by_user_code_loses_the_router_and_other_threads_are_answered(
        system: ActorSystem, peer: PeerFactory) -> None:
    echo = system.ref(peer().address, "echo")
    answered = threading.Event()
    got: list[Any] = []

    def other_thread() -> None:
        got.append(_get(echo.ask("from a thread")))
        answered.set()

    async def scenario() -> Any:
        assert system.reader is not None
        for _ in range(100):  # the loop leads, and keeps the lead a while (a busy machine may take it back once)
            assert await echo.ask(0) == 0
            if system.reader.loop_lead is not None:
                break
        assert system.reader.loop_lead is not None
        threading.Thread(target=other_thread).start()
        assert answered.wait(10)  # blocks the loop; the I/O thread takes the ROUTER back
        return await echo.ask(1)

    assert asyncio.run(scenario()) == 1 and got == ["from a thread"]


def test_answers_keep_coming_while_leaders_come_and_go(system: ActorSystem, peer: PeerFactory) -> None:
    ref = system.ref(peer().address, "echo")
    errors: list[BaseException] = []

    def asker(tag: int) -> None:
        try:
            for n in range(300):
                assert ref.ask([tag, n]).get(timeout=10) == [tag, n]
        except BaseException as exc:  # reported below
            errors.append(exc)

    def pipelined() -> None:
        try:
            futures = [ref.ask(n) for n in range(500)]
            assert [f.get(timeout=10) for f in futures] == list(range(500))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=asker, args=(t,)) for t in range(3)] + [threading.Thread(target=pipelined)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads) and errors == []
    assert system.statistics().transport.peers_lost == 0  # heartbeats went on


def test_peers_that_leave_while_threads_lead_are_closed_without_harming_the_io_thread(
        system: ActorSystem, peer: PeerFactory) -> None:
    stays = system.ref(peer().address, "echo")
    leaving = [peer() for _ in range(3)]
    for p in leaving:
        assert system.ref(p.address, "echo").ask(1).get(timeout=10) == 1  # its DEALER and link monitor exist
    with Traffic(lambda: stays.ask("x").get(timeout=10), threads=2) as traffic:  # a thread leads nearly always
        for p in leaving:
            p.stop(timeout=10)  # its goodbye is most likely read by a leading thread, which closes its DEALER
        wait_for(lambda: system.statistics().transport.peers_lost >= 3, 10, "the peers to be declared gone")
    assert traffic.failures == [] and len(traffic.answers) > 0
    answer = stays.ask(2)  # nobody waits in get(): the I/O thread must read it
    wait_for(answer.done, 10, "the I/O thread to read an answer")
    assert answer.get(0) == 2


def test_a_leader_dispatches_asks_for_this_processes_actors(system: ActorSystem, peer: PeerFactory) -> None:
    local = system.spawn(Echo, name="local")
    relay = system.ref(peer({"relay": "tests.helpers:Relay"}).address, "relay")
    for n in range(20):  # each answer needs the relay's ask to our actor, read by our waiting thread
        assert relay.ask({"to": str(local), "message": n}).get(timeout=10) == n


def test_shutting_down_while_a_thread_leads_ends_its_wait(peer: PeerFactory) -> None:
    client = ActorSystem()
    ref = client.ref(peer({"sleeper": "tests.helpers:Sleeper"}).address, "sleeper")
    outcome: list[Any] = []
    waiter = threading.Thread(target=lambda: outcome.append(_get(ref.ask(5.0))))
    waiter.start()
    try:
        wait_for(lambda: client.statistics().transport.caller_leads >= 1, 5, "the waiting thread to lead")
    finally:
        client.shutdown()
    waiter.join(10)
    assert not waiter.is_alive()
    assert isinstance(outcome[0], ActorSystemShutDown)


def _get(future: Any) -> Any:
    try:
        return future.get(timeout=20)
    except Exception as exc:
        return exc


def test_a_callback_run_by_a_leading_thread_may_not_block(system: ActorSystem, peer: PeerFactory) -> None:
    host = peer({"echo": "tests.helpers:Echo", "sleeper": "tests.helpers:Sleeper"})
    slow = system.ref(host.address, "sleeper").ask(2.0)
    seen: list[Any] = []
    quick = system.ref(host.address, "echo").ask(1)
    quick.add_done_callback(lambda _: seen.append(_get(slow)))  # runs on the thread that reads the answer
    assert quick.get(timeout=10) == 1
    wait_for(lambda: seen, 5, "the callback to run")
    assert isinstance(seen[0], RuntimeError) and "would deadlock" in str(seen[0])
