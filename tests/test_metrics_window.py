"""The aggregator's averaging window: a source that did not change is not
sampled again, and its last sample stands in for the skipped intervals."""

from __future__ import annotations

from actors.serve.client._metrics import _Window


def replica_sample(running: int, requests: int = 0) -> tuple[object, ...]:
    return ("replica", "app", "d", "r1", running, (requests, 0, [requests], 0.0))


def test_skipped_intervals_repeat_the_last_sample_in_the_average() -> None:
    window = _Window("replica", ("app", "d", "r1"))
    window.add(replica_sample(0))
    window.skip()
    window.add(replica_sample(3, requests=5))
    window.skip()
    window.skip()
    report = window.report(1.0)
    assert report.running == (0 + 0 + 3 + 3 + 3) / 5
    assert report.requests_total == 5


def test_a_new_window_after_a_push_starts_from_the_last_sample() -> None:
    first = _Window("handle", ("app", "d", "h1"))
    first.add(("handle", "app", "d", "h1", 2, {"r1": 1}, False))
    first.report(1.0)
    second = _Window(first.kind, first.key, counters=first.counters, last=first.last, version=first.version)
    second.skip()
    second.skip()
    report = second.report(2.0)
    assert report.queued == 2 and report.running == {"r1": 1}
