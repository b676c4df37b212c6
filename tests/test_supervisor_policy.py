"""The restart policy of the head's worker supervisor: pure, no processes."""

from __future__ import annotations

from scripts._supervisor import Backoff


def test_a_worker_that_ran_well_is_started_again_after_the_base_pause() -> None:
    due, failures = Backoff(base_s=0.5, healthy_after_s=60).next_start(started_at=0.0, died_at=100.0, failures=3)
    assert (due, failures) == (100.5, 0)


def test_a_worker_that_keeps_dying_young_waits_twice_as_long_each_time_up_to_the_cap() -> None:
    policy = Backoff(base_s=0.5, cap_s=4.0, healthy_after_s=60)
    failures, pauses, now = 0, [], 0.0
    for _ in range(6):
        due, failures = policy.next_start(started_at=now, died_at=now + 1.0, failures=failures)
        pauses.append(due - (now + 1.0))
        now = due
    assert pauses == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
