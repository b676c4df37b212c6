"""The autoscaling policy and its decision delays (pure)."""

from __future__ import annotations

import pytest

from actors.serve._autoscaling import (
    AutoscalingConfig,
    AutoscalingConfigError,
    AutoscalingDecider,
    PolicyContext,
    aggregate,
    desired_replicas,
)


def ctx(total: float, running: int, target: int | None = None, waiting: bool = False, **cfg: object) -> PolicyContext:
    config = AutoscalingConfig(**{"min_replicas": 0, "max_replicas": 100, **cfg})  # type: ignore[arg-type]
    return PolicyContext(config, running if target is None else target, running, total, waiting)


def test_ray_serves_defaults() -> None:
    cfg = AutoscalingConfig()
    assert (cfg.target_ongoing_requests, cfg.min_replicas, cfg.max_replicas) == (2.0, 1, 1)
    assert (cfg.upscale_delay_s, cfg.downscale_delay_s, cfg.look_back_period_s) == (30.0, 600.0, 30.0)
    assert (cfg.upscaling_factor, cfg.downscaling_factor, cfg.aggregation_function) == (1.0, 1.0, "mean")


@pytest.mark.parametrize(
    ("total", "running", "expected"),
    [(8, 2, 4), (4, 2, 2), (2, 2, 1), (1, 4, 1), (9, 2, 5), (0, 3, 0)],
)
def test_the_formula_targets_the_ongoing_requests_per_replica(total: float, running: int, expected: int) -> None:
    assert desired_replicas(ctx(total, running)) == expected


def test_factors_take_part_of_each_step() -> None:
    assert desired_replicas(ctx(16, 2, upscaling_factor=0.5)) == 5  # ceil(2 * (1 + (4 - 1) * 0.5))
    assert desired_replicas(ctx(2, 8, downscaling_factor=0.5)) == 5  # ceil(8 * (1 + (0.125 - 1) * 0.5))


def test_the_target_is_clamped_to_the_bounds() -> None:
    assert desired_replicas(ctx(100, 1, min_replicas=1, max_replicas=4)) == 4
    assert desired_replicas(ctx(0, 4, min_replicas=2, max_replicas=4)) == 2


def test_with_nothing_running_waiting_requests_scale_up_at_once_by_one_step_of_the_upscaling_factor() -> None:
    decider = AutoscalingDecider(AutoscalingConfig(min_replicas=0, max_replicas=4, upscale_delay_s=30))
    assert decider.decide(ctx(0, 0, target=0, waiting=True, min_replicas=0, max_replicas=4), now=0.0) == 1
    # as Ray Serve: from zero, one step (1 x upscaling_factor) however long the queue; the formula takes over once running
    assert decider.decide(ctx(6, 0, target=0, waiting=True, min_replicas=0, max_replicas=4), now=0.0) == 1
    factor = AutoscalingDecider(AutoscalingConfig(min_replicas=0, max_replicas=4, upscaling_factor=2.5))
    assert factor.decide(ctx(6, 0, target=0, waiting=True, min_replicas=0, max_replicas=4, upscaling_factor=2.5), now=0.0) == 3


def test_a_fractional_downscaling_factor_still_reaches_its_target() -> None:
    # ceil(2 * (1 + (0 - 1) * 0.2)) = 2 = running: stuck before; Ray Serve takes one replica off
    assert desired_replicas(ctx(0, 2, downscaling_factor=0.2)) == 1
    assert desired_replicas(ctx(0, 5, downscaling_factor=0.2)) == 4
    assert desired_replicas(ctx(0, 1, downscaling_factor=0.2)) == 0
    assert desired_replicas(ctx(4, 2, downscaling_factor=0.2)) == 2, "at its target: nothing to take off"
    config = AutoscalingConfig(min_replicas=0, max_replicas=5, downscale_delay_s=1, downscaling_factor=0.2)
    decider, target, now = AutoscalingDecider(config), 5, 0.0
    while target > 0 and now < 100:
        target = decider.decide(PolicyContext(config, target, target, 0.0, False), now)
        now += 0.5
    assert target == 0, "an idle deployment reaches zero, a replica at a time"


def test_scaling_to_zero_goes_through_one_replica_with_each_its_delay() -> None:
    config = AutoscalingConfig(min_replicas=0, max_replicas=8, downscale_delay_s=1, downscale_to_zero_delay_s=300)
    decider = AutoscalingDecider(config)
    idle4 = PolicyContext(config, 4, 4, 0.0, False)
    assert decider.decide(idle4, now=0.0) == 4
    assert decider.decide(idle4, now=1.0) == 1, "N -> 1 after downscale_delay_s"
    idle1 = PolicyContext(config, 1, 1, 0.0, False)
    assert decider.decide(idle1, now=1.5) == 1
    assert decider.decide(idle1, now=200.0) == 1, "1 -> 0 waits for downscale_to_zero_delay_s"
    assert decider.decide(idle1, now=301.5) == 0


def test_a_decision_must_hold_for_the_delay_before_it_is_applied() -> None:
    config = AutoscalingConfig(min_replicas=1, max_replicas=10, upscale_delay_s=5, downscale_delay_s=20)
    decider = AutoscalingDecider(config)
    busy = PolicyContext(config, 2, 2, 12.0, False)
    assert decider.decide(busy, now=0.0) == 2
    assert decider.decide(busy, now=4.9) == 2
    assert decider.decide(busy, now=5.0) == 6
    assert "scaled up from 2 to 6" in decider.reason
    idle = PolicyContext(config, 6, 6, 0.0, False)
    assert decider.decide(idle, now=10.0) == 6
    assert decider.decide(idle, now=29.9) == 6
    assert decider.decide(idle, now=30.0) == 1


def test_a_wavering_decision_restarts_its_delay() -> None:
    config = AutoscalingConfig(min_replicas=1, max_replicas=10, upscale_delay_s=5)
    decider = AutoscalingDecider(config)
    assert decider.decide(PolicyContext(config, 2, 2, 12.0, False), now=0.0) == 2
    assert decider.decide(PolicyContext(config, 2, 2, 4.0, False), now=3.0) == 2
    assert decider.decide(PolicyContext(config, 2, 2, 12.0, False), now=4.0) == 2
    assert decider.decide(PolicyContext(config, 2, 2, 12.0, False), now=8.9) == 2
    assert decider.decide(PolicyContext(config, 2, 2, 12.0, False), now=9.0) == 6


def test_going_to_zero_uses_its_own_delay() -> None:
    config = AutoscalingConfig(min_replicas=0, max_replicas=2, downscale_delay_s=1, downscale_to_zero_delay_s=10)
    decider = AutoscalingDecider(config)
    idle = PolicyContext(config, 1, 1, 0.0, False)
    assert decider.decide(idle, now=0.0) == 1
    assert decider.decide(idle, now=9.9) == 1
    assert decider.decide(idle, now=10.0) == 0


def test_a_failing_custom_policy_keeps_the_target_and_says_why() -> None:
    config = AutoscalingConfig(min_replicas=1, max_replicas=4, upscale_delay_s=0)

    def broken(_: PolicyContext) -> int:
        raise ZeroDivisionError("oops")

    decider = AutoscalingDecider(config, broken)
    assert decider.decide(PolicyContext(config, 2, 2, 8.0, False), now=0.0) == 2
    assert "policy failed (ZeroDivisionError: oops)" in decider.reason


@pytest.mark.parametrize(
    ("fields", "text"),
    [
        ({"min_replicas": 3, "max_replicas": 2}, "min_replicas (3) must not exceed max_replicas (2)"),
        ({"upscale_delay_s": -1}, "upscale_delay_s: expected a number >= 0"),
        ({"downscale_delay_s": -0.5}, "downscale_delay_s: expected a number >= 0"),
        ({"target_ongoing_requests": 0}, "target_ongoing_requests: expected a number > 0"),
        ({"aggregation_function": "median"}, "aggregation_function: expected one of mean, max, min"),
        ({"initial_replicas": 9, "max_replicas": 4}, "initial_replicas (9) must be within"),
        ({"max_replicas": 0}, "max_replicas: expected an int >= 1"),
        ({"upscaling_factor": 0}, "upscaling_factor: expected a number > 0"),
    ],
)
def test_invalid_autoscaling_configs_name_the_field(fields: dict[str, object], text: str) -> None:
    with pytest.raises(AutoscalingConfigError, match=text.replace("(", r"\(").replace(")", r"\)")):
        AutoscalingConfig.from_value(fields)


def test_unknown_autoscaling_fields_are_refused() -> None:
    with pytest.raises(AutoscalingConfigError, match="unknown field 'target_num'"):
        AutoscalingConfig.from_value({"target_num": 3})


def test_aggregation_over_the_window() -> None:
    assert aggregate([1, 2, 6], "mean") == 3
    assert aggregate([1, 2, 6], "max") == 6
    assert aggregate([1, 2, 6], "min") == 1
    assert aggregate([], "mean") == 0
