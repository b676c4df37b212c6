"""The dashboard's pure parts: the last hour's series, dead nodes, the views' 404s."""

from __future__ import annotations

import pytest

from actors.serve._status import ApplicationStatusOverview, DeploymentStatusOverview, ServeStatus
from protocol import LATENCY_BUCKETS_S
from scripts.dashboard import DeploymentSample, History, NotFound, Snapshot
from scripts.dashboard import _views as views
from scripts.dashboard._history import quantile_ms


def cumulative(per_bucket: dict[int, int]) -> list[int]:
    counts = [per_bucket.get(i, 0) for i in range(len(LATENCY_BUCKETS_S) + 1)]
    return [sum(counts[: i + 1]) for i in range(len(counts))]


def test_rates_and_latency_quantiles_come_from_the_counters_deltas() -> None:
    history = History(points=10)
    history.add(100.0, {"a/D": DeploymentSample(1, 1, 100, 0, cumulative({3: 100}))})
    history.add(110.0, {"a/D": DeploymentSample(3, 3, 300, 20, cumulative({3: 100, 5: 196, 12: 4}))})
    series = history.series["a/D"].as_json()
    assert series["running"] == [1, 3] and series["target"] == [1, 3]
    assert series["rps"] == [0.0, 20.0] and series["error_rps"] == [0.0, 2.0]
    assert 10.0 <= series["p50_ms"][1] <= 25.0, "the 200 new requests sit in the 10-25 ms bucket but four"
    assert 2500.0 <= series["p99_ms"][1] <= 5000.0


def test_a_counter_that_went_down_counts_as_started_again() -> None:
    history = History(points=10)
    history.add(0.0, {"a/D": DeploymentSample(2, 2, 500, 0, cumulative({2: 500}))})
    history.add(5.0, {"a/D": DeploymentSample(2, 2, 10, 0, cumulative({2: 10}))})
    assert history.series["a/D"].as_json()["rps"][-1] == 2.0


def test_series_and_dead_nodes_are_bounded_by_points_and_the_window() -> None:
    history = History(window_s=60.0, points=3)
    for t in range(5):
        history.add(float(t), {"a/D": DeploymentSample(1, 1, t, 0, [])})
        history.see_nodes(float(t), {"n1": "tcp://a", "n2": "tcp://b"})
    assert len(history.series["a/D"].t) == 3
    history.see_nodes(10.0, {"n1": "tcp://a"})
    assert history.nodes["n2"]["state"] == "DEAD" and history.nodes["n1"]["state"] == "ALIVE"
    history.see_nodes(100.0, {"n1": "tcp://a"})
    history.add(100.0, {})
    assert "n2" not in history.nodes and "a/D" not in history.series, "gone for longer than the window"


def test_a_latency_histogram_with_nothing_has_no_quantile() -> None:
    assert quantile_ms([0] * (len(LATENCY_BUCKETS_S) + 1), 0.5) is None


def test_views_of_unknown_things_raise_not_found_naming_them() -> None:
    status = ServeStatus(applications={"a": ApplicationStatusOverview("RUNNING", "", "D", {"D": DeploymentStatusOverview("HEALTHY", "", {"RUNNING": 1}, 1)})})
    snap = Snapshot(status=status)
    assert views.application(snap, "a")["deployments"][0]["running"] == 1
    with pytest.raises(NotFound, match="no application 'b'"):
        views.application(snap, "b")
    with pytest.raises(NotFound, match="no deployment 'E' in application 'a'"):
        views.deployment(snap, "a", "E")
    with pytest.raises(NotFound, match="no replica 'r'"):
        views.replica(snap, "r")


def test_the_vendored_chart_library_is_the_recorded_npm_release() -> None:
    import hashlib
    import json

    from scripts._vendor import VENDOR, VERSION

    record = json.loads((VENDOR / "VENDORED.json").read_text())
    assert record["version"] == VERSION
    for name, digest in record["sha256"].items():
        assert hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() == digest, f"{name} differs from npm's {VERSION}"
