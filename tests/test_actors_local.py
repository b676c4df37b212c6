"""The actor runtime inside one process: spawn, tell, ask, errors, stop, watch."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from actors import Actor, ActorNotFound, ActorStopped, ActorSystem, AskTimeout, Future
from tests.helpers import Echo, Recorder, Sleeper, wait_for


def test_ask_returns_the_answer_of_receive(system: ActorSystem) -> None:
    ref = system.spawn(Echo, name="echo")
    assert ref.ask({"x": [1, 2]}).get(timeout=5) == {"x": [1, 2]}


def test_tells_are_handled_in_the_order_sent(system: ActorSystem) -> None:
    ref = system.spawn(Recorder, name="rec")
    for i in range(200):
        ref.tell(i)
    assert ref.ask("dump").get(timeout=5) == list(range(200))


def test_an_exception_in_receive_reaches_the_asker_and_the_actor_keeps_serving(system: ActorSystem) -> None:
    ref = system.spawn(Echo, name="echo")
    with pytest.raises(ValueError, match="bad input"):
        ref.ask({"raise": "ValueError", "text": "bad input"}).get(timeout=5)
    assert ref.ask(1).get(timeout=5) == 1


def test_spawning_a_taken_name_is_refused(system: ActorSystem) -> None:
    system.spawn(Echo, name="echo")
    with pytest.raises(ValueError, match="already runs"):
        system.spawn(Echo, name="echo")


@pytest.mark.parametrize("name", ["", "a#b", None])
def test_a_malformed_actor_name_is_refused(system: ActorSystem, name: object) -> None:
    with pytest.raises(ValueError, match="actor name"):
        system.spawn(Echo, name=name)  # type: ignore[arg-type]


def test_spawning_something_that_is_not_an_actor_class_is_refused(system: ActorSystem) -> None:
    with pytest.raises(TypeError, match="subclass of actors.Actor"):
        system.spawn(dict, name="x")  # type: ignore[arg-type]


def test_an_actor_cannot_be_constructed_outside_spawn() -> None:
    with pytest.raises(RuntimeError, match="ActorSystem.spawn"):
        Echo.start()


def test_asking_an_unknown_local_actor_fails_at_once(system: ActorSystem) -> None:
    with pytest.raises(ActorNotFound, match="no actor named 'ghost'"):
        system.ref(system.address, "ghost").ask(1)


def test_get_with_a_short_timeout_raises_ask_timeout(system: ActorSystem) -> None:
    ref = system.spawn(Sleeper, name="sleepy")
    future = ref.ask(0.5)
    with pytest.raises(AskTimeout, match="no answer within 0.05s"):
        future.get(timeout=0.05)
    assert future.get(timeout=5) == "slept"


def test_an_ask_fails_by_its_own_deadline_even_when_get_waits_forever(system: ActorSystem) -> None:
    ref = system.spawn(Sleeper, name="sleepy")
    ref.tell(1.0)
    future = ref.ask(0, timeout=0.2)
    with pytest.raises(AskTimeout, match="deadline"):
        future.get()
    assert system.statistics().timed_out_asks == 1


def test_messages_left_in_inbox_after_stop_get_an_error(system: ActorSystem) -> None:
    ref = system.spawn(Sleeper, name="sleepy")
    ref.tell(0.3)
    system.stop(ref, wait=False)
    waiting = [ref.ask(0) for _ in range(3)]
    for future in waiting:
        with pytest.raises(ActorStopped, match="stopped before handling"):
            future.get(timeout=5)


def test_a_tell_that_raises_stops_the_actor_and_its_watchers_are_told(system: ActorSystem) -> None:
    ref = system.spawn(Echo, name="echo")
    seen: list[str] = []
    system.watch(ref, lambda r, why: seen.append(why))
    ref.tell({"raise": "ValueError", "text": "crash"})
    wait_for(lambda: seen, 5, "watch callback")
    assert "ValueError: crash" in seen[0]
    with pytest.raises(ActorNotFound):
        ref.ask(1)


def test_watching_an_actor_that_does_not_exist_calls_back_at_once(system: ActorSystem) -> None:
    seen: list[str] = []
    system.watch(system.ref(system.address, "ghost"), lambda r, why: seen.append(why))
    assert seen and "no actor named 'ghost'" in seen[0]


def test_unwatch_cancels_the_callback(system: ActorSystem) -> None:
    ref = system.spawn(Echo, name="echo")
    seen: list[str] = []
    token = system.watch(ref, lambda r, why: seen.append(why))
    system.unwatch(token)
    system.stop(ref)
    assert seen == []


def test_a_future_can_be_awaited_from_asyncio(system: ActorSystem) -> None:
    ref = system.spawn(Echo, name="echo")

    async def main() -> list[int]:
        return list(await asyncio.gather(*(ref.ask(i) for i in range(50))))

    assert asyncio.run(main()) == list(range(50))


def test_every_coroutine_awaiting_one_future_is_woken_and_a_cancelled_one_is_not_in_the_way() -> None:
    future: Future[str] = Future("shared")

    async def main() -> list[Any]:
        async def wait() -> str:
            return await future

        first, second, cancelled = (asyncio.ensure_future(wait()) for _ in range(3))
        await asyncio.sleep(0)  # all three await it now (the first without a callback, the others with one)
        cancelled.cancel()
        threading.Thread(target=future.set_result, args=("done",)).start()  # completed off the loop
        return list(await asyncio.gather(first, second, cancelled, return_exceptions=True))

    results = asyncio.run(asyncio.wait_for(main(), 10))
    assert results[:2] == ["done", "done"] and isinstance(results[2], asyncio.CancelledError)


def test_awaiting_a_failed_future_raises_its_error(system: ActorSystem) -> None:
    ref = system.spawn(Echo, name="echo")

    async def main() -> None:
        await ref.ask({"raise": "KeyError", "text": "k"})

    with pytest.raises(KeyError):
        asyncio.run(main())


def test_a_future_is_set_once_and_later_sets_are_ignored() -> None:
    future: Future[int] = Future("f")
    assert future.set_result(1)
    assert not future.set_exception(RuntimeError("late"))
    assert future.get(0) == 1


def test_future_callbacks_run_once_done_even_if_added_late() -> None:
    future: Future[int] = Future("f")
    calls: list[int] = []
    future.add_done_callback(lambda f: calls.append(f.get(0)))
    future.set_result(7)
    future.add_done_callback(lambda f: calls.append(f.get(0) + 1))
    assert calls == [7, 8]


def test_blocking_on_a_future_from_a_guarded_thread_is_refused() -> None:
    future: Future[int] = Future("f", guard=lambda: True)
    with pytest.raises(RuntimeError, match="would deadlock"):
        future.get(1)


def test_shutdown_stops_every_actor_and_leaves_no_thread_behind() -> None:
    before = set(threading.enumerate())
    sys_ = ActorSystem()
    sys_.spawn(Echo, name="a")
    sys_.spawn(Recorder, name="b")
    sys_.shutdown()
    wait_for(lambda: set(threading.enumerate()) <= before, 5, "threads to end")
    with pytest.raises(ActorStopped):
        sys_.spawn(Echo, name="c")


class Greeter(Actor):
    def __init__(self, greeting: str) -> None:
        super().__init__()
        self.greeting = greeting

    def receive(self, message: object) -> object:
        return f"{self.greeting}, {message} (from {self.name})"


def test_constructor_arguments_reach_the_actor_and_it_knows_its_name(system: ActorSystem) -> None:
    ref = system.spawn(Greeter, "hello", name="greeter")
    assert ref.ask("you").get(timeout=5) == "hello, you (from greeter)"


class Deferring(Actor):
    """Answers later from a worker thread, so it can take messages meanwhile."""

    def __init__(self) -> None:
        super().__init__()
        import concurrent.futures as cf

        self.pool = cf.ThreadPoolExecutor(4)
        self.gate = threading.Event()

    def receive(self, message: object) -> object:
        if message == "open":
            self.gate.set()
            return "opened"
        if message == "fail":
            return self.pool.submit(_raise_later)
        return self.pool.submit(lambda: (self.gate.wait(5), "late answer")[1])

    def on_stop(self) -> None:
        self.pool.shutdown(wait=False)


def _raise_later() -> None:
    raise LookupError("deferred failure")


def test_a_receive_that_returns_a_future_answers_when_it_completes_and_keeps_taking_messages(system: ActorSystem) -> None:
    ref = system.spawn(Deferring, name="deferring")
    pending = ref.ask("wait")
    assert ref.ask("open").get(timeout=5) == "opened"
    assert pending.get(timeout=5) == "late answer"
    with pytest.raises(LookupError, match="deferred failure"):
        ref.ask("fail").get(timeout=5)


def test_a_deferred_answer_reaches_another_process_with_its_traceback(system: ActorSystem, make_system: object) -> None:
    other = make_system()  # type: ignore[operator]
    system.spawn(Deferring, name="deferring")
    remote = other.ref(system.address, "deferring")
    with pytest.raises(LookupError, match="deferred failure") as info:
        remote.ask("fail").get(timeout=5)
    assert "_raise_later" in info.value.remote_traceback


class Cancelling(Actor):
    """Answers with a future that is cancelled before it runs."""

    def receive(self, message: object) -> object:
        import concurrent.futures as cf

        future: cf.Future[object] = cf.Future()
        future.cancel()
        return future


def test_a_deferred_answer_cancelled_before_it_ran_is_reported_as_not_handled(system: ActorSystem, make_system: object) -> None:
    from actors import MessageNotHandled

    system.spawn(Cancelling, name="cancelling")
    remote = make_system().ref(system.address, "cancelling")  # type: ignore[operator]
    with pytest.raises(MessageNotHandled, match="cancelled before it ran"):
        remote.ask(1).get(timeout=5)
