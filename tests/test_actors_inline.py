"""Actors with ``inline_asks``: asks answered on the receiving thread when the
actor is idle, one message at a time and in order (``actors/_inline.py``).

The inbox's rules are tested without sockets (a fake actor, deferred work run
by the test); the whole path with real processes and real ZeroMQ sockets."""

from __future__ import annotations

import queue
import threading
from collections import deque
from typing import Any, Callable

import pytest

from actors import ActorSystem, MessageNotHandled
from actors._inline import SharedInbox
from actors._request import Request
from tests.conftest import Peer

PeerFactory = Callable[..., Peer]


class FakeActor:
    """What the inbox needs of an actor: records what it handled, answers asks."""

    def __init__(self) -> None:
        self.actor_stopped = threading.Event()
        self.handled: list[Any] = []

    def on_receive(self, message: Any) -> Any:
        self.handled.append(message.payload)
        if message.respond is not None:
            message.respond(message.payload, None, "")
        return None


class Tell:
    """What pykka queues for a tell (a message, no reply future)."""

    def __init__(self, message: Any) -> None:
        self.message = message
        self.reply_to = None


def ask(payload: Any, answers: list[Any]) -> Request:
    return Request(payload, lambda value, error, _tb: answers.append(error or value), None)


@pytest.fixture
def inbox() -> tuple[SharedInbox, FakeActor]:
    actor = FakeActor()
    return SharedInbox(actor, drain_s=10.0, slow_s=10.0), actor


class Deferred:
    """Stands in for ``Transport.defer``: keeps the work for the test to run."""

    def __init__(self, taken: bool = True) -> None:
        self.work: deque[tuple[Callable[[], None], Callable[[Any], None]]] = deque()
        self.taken = taken

    def __call__(self, work: Callable[[], None], elsewhere: Callable[[Any], None]) -> bool:
        if self.taken:
            self.work.append((work, elsewhere))
        return self.taken


def test_an_ask_for_an_idle_actor_runs_where_the_deferred_work_runs(inbox: tuple[SharedInbox, FakeActor]) -> None:
    box, actor = inbox
    answers: list[Any] = []
    defer = Deferred()
    assert box.offer(ask("a", answers), defer)
    assert answers == [] and len(defer.work) == 1
    defer.work.popleft()[0]()
    assert answers == ["a"] and actor.handled == ["a"]
    assert box.statistics().inline_runs == 1
    with pytest.raises(queue.Empty):
        box.get_nowait()  # nothing left for the actor's thread


def test_a_message_queued_while_an_ask_is_reserved_waits_behind_it(inbox: tuple[SharedInbox, FakeActor]) -> None:
    box, actor = inbox
    answers: list[Any] = []
    defer = Deferred()
    assert box.offer(ask("first", answers), defer)
    box.put(Tell(Request("tell", None, None)))
    with pytest.raises(queue.Empty):
        box.get_nowait()  # the reserved ask has not run: the actor's thread may not overtake it
    defer.work.popleft()[0]()
    assert actor.handled == ["first"]  # a tell is never run inline
    assert box.get_nowait().message.payload == "tell"


def test_asks_queued_behind_an_inline_ask_are_answered_inline_in_order(inbox: tuple[SharedInbox, FakeActor]) -> None:
    box, actor = inbox
    answers: list[Any] = []
    defer = Deferred()
    assert box.offer(ask(0, answers), defer)
    for n in range(1, 5):
        assert not box.offer(ask(n, answers), defer)  # busy: the caller queues it as usual
        box.put(Tell(ask(n, answers)))
    defer.work.popleft()[0]()
    assert answers == [0, 1, 2, 3, 4]
    assert box.statistics() == (0, 5)


def test_a_reserved_ask_given_back_goes_first_to_the_actors_thread(inbox: tuple[SharedInbox, FakeActor]) -> None:
    box, _ = inbox
    answers: list[Any] = []
    defer = Deferred()
    assert box.offer(ask("reserved", answers), defer)
    box.put(Tell(ask("later", answers)))
    defer.work.popleft()[1](None)  # a standby took the sockets over before it started
    assert box.get_nowait().message.payload == "reserved"
    with pytest.raises(queue.Empty):
        box.get_nowait()  # one at a time
    box.done()
    assert box.get_nowait().message.payload == "later"


def test_an_ask_is_queued_for_the_actors_thread_when_no_io_thread_takes_it(inbox: tuple[SharedInbox, FakeActor]) -> None:
    box, _ = inbox
    assert box.offer(ask("x", []), Deferred(taken=False))
    assert box.get_nowait().message.payload == "x"


def test_tells_and_streaming_asks_are_never_offered_inline(inbox: tuple[SharedInbox, FakeActor]) -> None:
    box, _ = inbox
    defer = Deferred()
    assert not box.offer(Request("tell", None, None), defer)
    assert not box.offer(Request("stream", lambda *_: None, None, emit=lambda item: None), defer)
    assert not defer.work


def test_a_slow_inline_ask_keeps_the_actor_off_the_inline_path(inbox: tuple[SharedInbox, FakeActor]) -> None:
    actor = FakeActor()
    box = SharedInbox(actor, drain_s=10.0, slow_s=0.0)  # every run counts as slow
    defer = Deferred()
    assert box.offer(ask(1, []), defer)
    defer.work.popleft()[0]()
    assert not box.offer(ask(2, []), defer)


def test_a_stopped_actor_is_never_reserved_and_a_reserved_ask_is_refused(inbox: tuple[SharedInbox, FakeActor]) -> None:
    box, actor = inbox
    answers: list[Any] = []
    defer = Deferred()
    assert box.offer(ask("before", answers), defer)
    actor.actor_stopped.set()
    defer.work.popleft()[0]()
    assert isinstance(answers[0], MessageNotHandled) and actor.handled == []
    assert not box.offer(ask("after", answers), defer)


def test_the_actors_thread_waits_for_an_inline_run_and_then_takes_what_queued() -> None:
    actor = FakeActor()
    box = SharedInbox(actor, drain_s=10.0, slow_s=10.0)
    defer = Deferred()
    assert box.offer(ask("inline", []), defer)
    box.put(Tell(Request("tell", None, None)))
    got: list[Any] = []
    getter = threading.Thread(target=lambda: got.append(box.get()))
    getter.start()
    try:
        defer.work.popleft()[0]()
        getter.join(10)
        assert not getter.is_alive()
        assert actor.handled == ["inline"] and got[0].message.payload == "tell"
    finally:
        if getter.is_alive():
            box.done()


# ---- real processes ----------------------------------------------------------------------------


def test_asks_from_another_process_run_on_the_receiving_thread_in_order(system: ActorSystem, peer: PeerFactory) -> None:
    ref = system.ref(peer({"rec": "tests.helpers:InlineRecorder"}).address, "rec")
    window: deque[Any] = deque()
    for n in range(400):
        window.append(ref.ask(["a", n]))
        if len(window) >= 32:
            assert window.popleft().get(timeout=10)[0] == "a"
    while window:
        window.popleft().get(timeout=10)
    seen = ref.ask("dump").get(timeout=10)
    assert [n for _, n, _ in seen] == list(range(400))
    threads = [name for _, _, name in seen]
    assert sum(name.startswith("corral-io") for name in threads) > len(threads) // 2, set(threads)


def test_an_inline_ask_that_waits_lets_a_standby_serve_the_other_asks(system: ActorSystem, peer: PeerFactory) -> None:
    host = peer({"rec": "tests.helpers:InlineRecorder", "stats": "tests.helpers:Stats"})
    ref = system.ref(host.address, "rec")
    slow = ref.ask({"wait": 0.5})
    quick = [ref.ask(["b", n]) for n in range(20)]
    assert system.ref(host.address, "stats").ask("x").get(timeout=10)["actors"] == 2  # the process still answers
    assert [f.get(timeout=10)[1] for f in quick] == list(range(20))
    assert slow.get(timeout=10) == "waited"
    assert system.ref(host.address, "stats").ask("x").get(timeout=10)["transport"]["inline_takeovers"] >= 1


def test_stopping_an_inline_actor_answers_every_ask(system: ActorSystem) -> None:
    from tests.helpers import InlineRecorder

    server = ActorSystem()
    try:
        local = server.spawn(InlineRecorder, name="rec")
        ref = system.ref(server.address, "rec")
        futures = [ref.ask(["c", n]) for n in range(200)]
        server.stop(local, timeout=10)
        outcomes = []
        for future in futures:
            try:
                outcomes.append(future.get(timeout=10))
            except Exception as exc:  # refused after the stop: never run
                outcomes.append(type(exc).__name__)
        assert len(outcomes) == 200
        assert set(map(str, outcomes)) - {str(["c", n]) for n in range(200)} <= {"ActorNotFound", "MessageNotHandled", "ActorStopped"}
    finally:
        server.shutdown()
