"""A worker's batched health checks: each replica's probe, answered together, bounded."""

from __future__ import annotations

import concurrent.futures
import threading
from typing import Any, Iterator

import pytest

from actors.serve._context import ReplicaContext
from actors.serve.worker._health import HealthProbes, ReplicaHealth


def _done(value: Any) -> concurrent.futures.Future[Any]:
    future: concurrent.futures.Future[Any] = concurrent.futures.Future()
    future.set_result(value)
    return future


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """Set at teardown, so a check held by a test never outlives it."""
    event = threading.Event()
    yield event
    event.set()


def test_checks_that_answer_at_once_are_answered_at_once_in_the_order_asked() -> None:
    probes = HealthProbes()
    probes.add("replica/a", lambda: _done({"ongoing": 1, "models": []}))
    probes.add("replica/b", lambda: _done({"ongoing": 0, "models": ["m"]}))
    answer = probes.check(["replica/b", "replica/a"], timeout_s=5.0)
    assert answer.done(), "no thread and no wait when nothing blocks"
    assert answer.result(0) == [{"ongoing": 0, "models": ["m"]}, {"ongoing": 1, "models": []}]


def test_a_replica_not_in_the_process_or_removed_is_an_error_naming_it() -> None:
    probes = HealthProbes()
    probes.add("replica/a", lambda: _done({"ongoing": 0}))
    probes.remove("replica/a")
    (entry,) = probes.check(["replica/a"], timeout_s=1.0).result(0)
    assert entry == {"error": "LookupError: no replica actor 'replica/a' runs in this process"}


def test_a_check_that_raises_fails_only_its_own_entry() -> None:
    def broken() -> concurrent.futures.Future[Any]:
        raise RuntimeError("probe broke")

    failed: concurrent.futures.Future[Any] = concurrent.futures.Future()
    failed.set_exception(ValueError("flag says sick"))
    probes = HealthProbes()
    probes.add("replica/a", broken)
    probes.add("replica/b", lambda: failed)
    probes.add("replica/c", lambda: _done({"ongoing": 0}))
    assert probes.check(["replica/a", "replica/b", "replica/c"], 1.0).result(0) == [
        {"error": "RuntimeError: probe broke"}, {"error": "ValueError: flag says sick"}, {"ongoing": 0}]


def test_a_hung_check_fails_its_entry_after_the_timeout_and_the_others_are_answered(release: threading.Event) -> None:
    hung: concurrent.futures.Future[Any] = concurrent.futures.Future()
    release_hung = threading.Thread(target=lambda: release.wait(30) and hung.set_result({"ongoing": 9}), daemon=True)
    release_hung.start()
    probes = HealthProbes()
    probes.add("replica/hung", lambda: hung)
    probes.add("replica/ok", lambda: _done({"ongoing": 0}))
    answer = probes.check(["replica/hung", "replica/ok"], timeout_s=0.2)
    assert not answer.done()
    assert answer.result(5) == [
        {"error": "TimeoutError: check_health did not return within health_check_timeout_s=0.2s"}, {"ongoing": 0}]


class _Checked:
    def __init__(self, outcome: BaseException | None) -> None:
        self.outcome = outcome

    def check_health(self) -> None:
        if self.outcome is not None:
            raise self.outcome


def _health(instance: Any, timeout_s: float = 5.0) -> ReplicaHealth:
    context = ReplicaContext("app.D.r1", "D", "app", "worker-0", None)
    return ReplicaHealth(instance, context, timeout_s, lambda: pytest.fail("no event loop needed"), lambda: {"ongoing": 2})


def test_a_replica_without_check_health_answers_its_load_at_once() -> None:
    health = _health(object())
    assert health.start().result(0) == {"ongoing": 2}
    assert health.run() == {"ongoing": 2}


def test_a_replica_check_runs_off_the_callers_thread_and_its_error_is_the_answer() -> None:
    health, well = _health(_Checked(RuntimeError("disk full"))), _health(_Checked(None))
    try:
        with pytest.raises(RuntimeError, match="disk full"):
            health.start().result(5)
        with pytest.raises(RuntimeError, match="disk full"):
            health.run()
        assert well.start().result(5) == {"ongoing": 2}
    finally:
        health.shutdown()
        well.shutdown()
