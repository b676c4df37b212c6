"""A thread waiting for an answer reads the ROUTER itself (``transport/_leader.py``).

The watch's rules with real ZeroMQ sockets in one process (no threads but the
test's own where a leader must wait); the whole path with real processes."""

from __future__ import annotations

import select
import threading
import time
from typing import Any, Callable, Iterator

import pytest
import zmq

from actors import ActorSystem, ActorSystemShutDown
from tests.conftest import Peer
from tests.helpers import Echo, wait_for
from transport._leader import RouterWatch

PeerFactory = Callable[..., Peer]


class Sockets:
    """A ROUTER with its watch, and a DEALER that talks to it."""

    def __init__(self) -> None:
        self.ctx = zmq.Context()
        self.router = self.ctx.socket(zmq.ROUTER)
        self.router.bind("inproc://leader")
        self.dealer = self.ctx.socket(zmq.DEALER)
        self.dealer.connect("inproc://leader")
        self.lock = threading.RLock()
        self.read: list[bytes] = []
        self.unread = 0
        self.watch = RouterWatch(self.router, self.lock, self.drain, self.note_unread, lambda: True)

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


def test_a_message_whose_signal_the_leader_took_is_reported_unread(sockets: Sockets) -> None:
    sockets.drain()
    sockets.dealer.send(b"pending")
    wait_for(lambda: sockets.router.getsockopt(zmq.EVENTS) & zmq.POLLIN, 5, "the message to arrive")  # takes its signal
    assert sockets.watch.lead(lambda: True, time.monotonic() + 10)  # its own answer is in: gives back at once
    assert sockets.unread == 1 and sockets.read == []  # the I/O thread is told to read it
    sockets.drain()
    assert sockets.read == [b"pending"]


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


# ---- real processes ----------------------------------------------------------------------------


def test_a_thread_asking_in_a_row_reads_its_answers_itself(system: ActorSystem, peer: PeerFactory) -> None:
    ref = system.ref(peer().address, "echo")
    before = system.statistics().transport.caller_leads
    for n in range(200):
        assert ref.ask(n).get(timeout=10) == n
    assert system.statistics().transport.caller_leads - before >= 150  # a few answers may be in before the wait


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
