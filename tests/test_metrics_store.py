"""The controller's metrics store (pure): windows, staleness, sums over handles."""

from __future__ import annotations

from actors.serve.head._metrics_store import MetricsStore
from protocol import HandleMetrics


def report(handle: str, queued: float, running: dict[str, float], waiting: bool = False) -> HandleMetrics:
    return HandleMetrics("app", "d", handle, queued, running, waiting, 0.0)


def test_the_load_sums_queued_and_running_over_handles() -> None:
    store = MetricsStore(staleness_s=30)
    store.ingest(report("h1", 2, {"r1": 3, "r2": 1}), received_at=100)
    store.ingest(report("h2", 0, {"r1": 4}), received_at=100)
    load = store.load(("app", "d"), now=101, look_back_s=30, how="mean")
    assert (load.total_requests, load.handles) == (10, 2)


def test_samples_in_the_window_are_aggregated_per_handle() -> None:
    store = MetricsStore(staleness_s=30)
    store.load(("app", "d"), 0, 30, "mean")  # asks for a 30 s window: history is kept that long
    for at, n in ((90, 2), (95, 4), (100, 9)):
        store.ingest(report("h1", 0, {"r": n}), received_at=at)
    assert store.load(("app", "d"), 100, 30, "mean").total_requests == 5
    assert store.load(("app", "d"), 100, 30, "max").total_requests == 9
    assert store.load(("app", "d"), 100, 7, "min").total_requests == 4


def test_a_stale_report_does_not_count() -> None:
    store = MetricsStore(staleness_s=10)
    store.ingest(report("old", 0, {"r": 50}), received_at=0)
    store.ingest(report("new", 0, {"r": 2}), received_at=15)
    load = store.load(("app", "d"), now=20, look_back_s=30, how="mean")
    assert (load.total_requests, load.handles) == (2, 1)


def test_a_handle_with_requests_waiting_and_no_replica_is_flagged() -> None:
    store = MetricsStore(staleness_s=10)
    store.ingest(report("h", 3, {}, waiting=True), received_at=1)
    assert store.load(("app", "d"), 2, 30, "mean").waiting_with_no_replica


def test_unknown_and_forgotten_deployments_have_no_load() -> None:
    store = MetricsStore(staleness_s=10)
    assert store.load(("x", "y"), 0, 30, "mean").total_requests == 0
    store.ingest(report("h", 1, {}), received_at=0)
    store.forget(("app", "d"))
    assert store.load(("app", "d"), 0, 30, "mean").handles == 0


def test_history_is_kept_only_as_long_as_the_longest_window_asked_for() -> None:
    store = MetricsStore(staleness_s=5)
    for at in range(100):
        store.ingest(report("h", 0, {"r": at}), received_at=float(at))
    assert store.load(("app", "d"), 99, 5, "min").total_requests == 94
    assert len(store._samples[("app", "d")]["h"]) <= 7
