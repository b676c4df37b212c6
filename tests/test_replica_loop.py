"""A replica's event loop (``actors/serve/worker/_replica_loop.py``): how requests reach it.

The loop alone (a thread of its own, no sockets); then with a real peer
process, whose loop reads the requests itself once it leads the ROUTER; then
a replica whose ``async def`` method blocks its loop."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, Callable, Iterator

import pytest

from actors import ActorSystem, serve
from actors.serve._context import ReplicaContext
from actors.serve.worker._replica_loop import AsyncLimit, ReplicaLoop
from tests import serve_apps
from tests.conftest import Peer
from tests.helpers import wait_for

PeerFactory = Callable[..., Peer]


@pytest.fixture
def lane() -> Iterator[ReplicaLoop]:
    replica_loop = ReplicaLoop(ReplicaContext("r1", "D", "app", "node"), None)
    yield replica_loop
    replica_loop.stop()
    if replica_loop.thread is not None:
        replica_loop.thread.join(5)


def test_starts_submitted_off_the_loop_run_on_it_in_the_order_submitted(lane: ReplicaLoop) -> None:
    ran: list[tuple[int, str]] = []
    for n in range(200):
        lane.submit(lambda n=n: ran.append((n, threading.current_thread().name)))
    wait_for(lambda: len(ran) == 200, 5, "every start to run")
    assert [n for n, _ in ran] == list(range(200))
    assert {name for _, name in ran} == {"replica-loop-r1"}


def test_a_start_submitted_on_the_loop_runs_before_submit_returns(lane: ReplicaLoop) -> None:
    async def submit_there() -> list[str]:
        ran: list[str] = []
        lane.submit(lambda: ran.append("ran"))
        return ran  # read before this coroutine yields

    assert asyncio.run_coroutine_threadsafe(submit_there(), lane.get()).result(5) == ["ran"]


def test_an_async_limit_lets_in_as_many_as_it_allows_and_the_rest_in_the_order_they_came() -> None:
    async def scenario() -> list[str]:
        limit, order = AsyncLimit(2), []
        gates = {name: asyncio.Event() for name in "abcd"}

        async def request(name: str) -> None:
            if not limit.enter_nowait():
                await limit.enter()
            order.append(f"in {name}")
            await gates[name].wait()
            limit.leave()

        tasks = [asyncio.ensure_future(request(name)) for name in "abcd"]
        for _ in range(3):
            await asyncio.sleep(0)  # (a turn of the loop, not a wait for time)
        assert order == ["in a", "in b"] and limit.inside == 2
        gates["b"].set()
        gates["c"].set()
        gates["d"].set()
        for _ in range(6):
            await asyncio.sleep(0)
        gates["a"].set()
        await asyncio.gather(*tasks)
        assert limit.inside == 0
        return order

    assert asyncio.run(scenario()) == ["in a", "in b", "in c", "in d"]


def test_an_async_limit_forgets_a_waiter_cancelled_and_passes_on_a_place_given_to_a_cancelled_one() -> None:
    async def scenario() -> None:
        limit = AsyncLimit(1)
        assert limit.enter_nowait()
        waiting = asyncio.ensure_future(limit.enter())
        await asyncio.sleep(0)
        waiting.cancel()  # cancelled while it waits: gone from the queue
        await asyncio.gather(waiting, return_exceptions=True)
        given = asyncio.ensure_future(limit.enter())
        after = asyncio.ensure_future(limit.enter())
        await asyncio.sleep(0)
        limit.leave()  # the place goes to ``given``...
        given.cancel()  # ...cancelled before it ran: the place passes on to ``after``
        await asyncio.gather(given, return_exceptions=True)
        await asyncio.wait_for(after, 5)
        assert limit.inside == 1 and not limit.enter_nowait()
        limit.leave()
        assert limit.inside == 0 and limit.enter_nowait()

    asyncio.run(scenario())


def test_a_start_that_raises_does_not_keep_the_others_from_running(lane: ReplicaLoop) -> None:
    ran: list[int] = []

    def broken() -> None:
        raise RuntimeError("this start is broken")

    lane.get()
    lane.submit(lambda: ran.append(1))
    lane.submit(broken)
    lane.submit(lambda: ran.append(2))
    wait_for(lambda: ran == [1, 2], 5, "the starts around the broken one")


def test_a_running_request_is_cancelled_by_its_key_and_forgotten_once_done(lane: ReplicaLoop) -> None:
    outcome: list[str] = []

    forever = _until_cancelled(outcome)

    lane.submit(lambda: lane.run(forever, ("caller", 7)))
    wait_for(lambda: ("caller", 7) in lane.tasks, 5, "the request to run")
    lane.cancel(("caller", 99))  # not running: nothing happens
    lane.cancel(("caller", 7))
    wait_for(lambda: outcome == ["cancelled"], 5, "the request to be cancelled")
    wait_for(lambda: not lane.tasks, 5, "the request to be forgotten")


def test_a_request_cancelled_in_the_turn_it_started_still_runs_its_coroutine_to_say_so(lane: ReplicaLoop) -> None:
    outcome: list[str] = []

    forever = _until_cancelled(outcome)

    def start_then_cancel() -> None:  # both read in one batch: the cancel comes before the task ran
        lane.run(forever, ("caller", 8))
        lane.cancel(("caller", 8))

    lane.submit(start_then_cancel)
    wait_for(lambda: outcome == ["cancelled"], 5, "the coroutine to hear of its cancellation")
    wait_for(lambda: not lane.tasks, 5, "the request to be forgotten (its finished() ran)")


def test_a_request_with_no_ask_id_is_not_kept_for_cancelling(lane: ReplicaLoop) -> None:
    done = threading.Event()

    async def quick(finished: Callable[[], None]) -> None:
        done.set()
        finished()

    lane.submit(lambda: lane.run(quick, ("caller", 0)))
    assert done.wait(5) and not lane.tasks


def test_submitting_to_a_stopped_loop_raises_and_queues_nothing(lane: ReplicaLoop) -> None:
    lane.get()
    lane.stop()
    assert lane.thread is not None
    lane.thread.join(5)
    with pytest.raises(RuntimeError, match="closed"):
        lane.submit(lambda: None)
    assert not lane._starts


# ---- real processes ----------------------------------------------------------------------------


def test_once_it_leads_a_replica_loop_reads_its_requests_itself_with_no_thread_hop(
        system: ActorSystem, peer: PeerFactory) -> None:
    ref = system.ref(peer({"lane": "tests.helpers:LoopLane"}).address, "lane")

    async def until_read_on_the_loop() -> list[Any]:
        for n in range(200):  # a request run on the loop makes it lead; the next ones are read there
            answers = await asyncio.gather(*(_awaited(ref.ask(n * 10 + k)) for k in range(10)))
            assert [a[2] for a in answers] == [n * 10 + k for k in range(10)]
            assert {a[1] for a in answers} == {"replica-loop-lane"}, "every request runs on the loop"
            if any(read_on == "replica-loop-lane" for read_on, _, _ in answers):
                return answers
        raise AssertionError("no request was read on the replica's loop in 2,000")

    answers = asyncio.run(until_read_on_the_loop())
    assert any(read_on == "replica-loop-lane" for read_on, _, _ in answers)


@pytest.mark.parametrize("isolation", ["process", "thread"])
def test_an_async_method_that_blocks_its_loop_neither_kills_its_replica_nor_holds_up_sync_requests(
        serve_cluster: Any, isolation: str) -> None:
    handle = serve.run(serve_apps.Echo.options(max_ongoing_requests=8, isolation=isolation).bind(), name="blocking", route_prefix=None)
    for n in range(20):  # the loop leads the ROUTER while async requests run
        assert handle.async_echo.remote(n).result(timeout_s=10) == {"async": n}
    blocked = handle.blocking.remote(1.5)  # five liveness windows of the tests' transport (0.3 s), loop held
    wait_for(lambda: handle.remote("x").result(timeout_s=10) == "x", 5, "a sync request served beside it")
    started = time.monotonic()
    assert handle.remote("y").result(timeout_s=10) == "y" and time.monotonic() - started < 0.5, \
        "the I/O thread took the ROUTER back from the blocked loop"
    assert blocked.result(timeout_s=10) == "blocked 1.5", "its process was never taken for dead"
    assert handle.async_echo.remote("after").result(timeout_s=10) == {"async": "after"}


def _until_cancelled(outcome: list[str]) -> Callable[[Callable[[], None]], Any]:
    """A request's coroutine that waits until cancelled, noting it in ``outcome``."""

    async def forever(finished: Callable[[], None]) -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            outcome.append("cancelled")
            raise
        finally:
            finished()

    return forever


async def _awaited(future: Any) -> Any:
    return await future
