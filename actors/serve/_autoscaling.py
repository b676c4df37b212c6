"""Autoscaling: Ray Serve's ``autoscaling_config`` and a pure policy.

The desired replica count is
``ceil(running * (1 + (total_requests / (target * running) - 1) * factor))``,
clamped to ``[min_replicas, max_replicas]``, where ``factor`` is the upscaling
or downscaling factor. A decision must hold for the upscale or downscale delay
before it is applied; with no replica running, waiting requests scale up at once.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable

from .._imports import import_object

_AGGREGATIONS = ("mean", "max", "min")


class AutoscalingConfigError(ValueError):
    """An autoscaling option is wrong; the message names it."""


def _num(field: str, value: Any, minimum: float = 0.0, strict: bool = False, integer: bool = False) -> Any:
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or (not integer and not math.isfinite(value)):
        raise AutoscalingConfigError(f"autoscaling_config.{field}: expected {'an int' if integer else 'a number'}, got {value!r}")
    if value < minimum or (strict and value == minimum):
        raise AutoscalingConfigError(
            f"autoscaling_config.{field}: expected {'an int' if integer else 'a number'} "
            f"{'>' if strict else '>='} {minimum:g}, got {value!r}"
        )
    return value


@dataclass(frozen=True)
class AutoscalingConfig:
    """Ray Serve's autoscaling fields, with its defaults and meaning.

    Attributes:
        target_ongoing_requests: ongoing requests per replica to aim for.
        min_replicas, max_replicas: bounds of the target.
        initial_replicas: replicas to start with (default: min_replicas).
        upscale_delay_s, downscale_delay_s: how long a decision must hold.
        downscale_to_zero_delay_s: the hold before going from 1 to 0 (default: downscale_delay_s).
        upscaling_factor, downscaling_factor: how much of each step to take.
        look_back_period_s: the window of metrics a decision looks at.
        aggregation_function: how samples in the window combine: mean, max or min.
        policy: ``module:function`` of a custom policy, or None for the default.
    """

    target_ongoing_requests: float = 2.0
    min_replicas: int = 1
    max_replicas: int = 1
    initial_replicas: int | None = None
    upscale_delay_s: float = 30.0
    downscale_delay_s: float = 600.0
    downscale_to_zero_delay_s: float | None = None
    upscaling_factor: float = 1.0
    downscaling_factor: float = 1.0
    look_back_period_s: float = 30.0
    aggregation_function: str = "mean"
    policy: str | None = None

    def __post_init__(self) -> None:
        _num("target_ongoing_requests", self.target_ongoing_requests, strict=True)
        _num("min_replicas", self.min_replicas, integer=True)
        _num("max_replicas", self.max_replicas, minimum=1, integer=True)
        if self.min_replicas > self.max_replicas:
            raise AutoscalingConfigError(
                f"autoscaling_config.min_replicas ({self.min_replicas}) must not exceed max_replicas ({self.max_replicas})"
            )
        if self.initial_replicas is not None:
            _num("initial_replicas", self.initial_replicas, integer=True)
            if not self.min_replicas <= self.initial_replicas <= self.max_replicas:
                raise AutoscalingConfigError(
                    f"autoscaling_config.initial_replicas ({self.initial_replicas}) must be within "
                    f"[min_replicas, max_replicas] = [{self.min_replicas}, {self.max_replicas}]"
                )
        for name in ("upscale_delay_s", "downscale_delay_s"):
            _num(name, getattr(self, name))
        if self.downscale_to_zero_delay_s is not None:
            _num("downscale_to_zero_delay_s", self.downscale_to_zero_delay_s)
        for name in ("upscaling_factor", "downscaling_factor", "look_back_period_s"):
            _num(name, getattr(self, name), strict=True)
        if self.aggregation_function not in _AGGREGATIONS:
            raise AutoscalingConfigError(
                f"autoscaling_config.aggregation_function: expected one of {', '.join(_AGGREGATIONS)}, "
                f"got {self.aggregation_function!r}"
            )
        if self.policy is not None and (not isinstance(self.policy, str) or ":" not in self.policy):
            raise AutoscalingConfigError(f"autoscaling_config.policy: expected 'module:function', got {self.policy!r}")

    @classmethod
    def from_value(cls, value: Any) -> AutoscalingConfig | None:
        """Build from a dict (unknown fields are refused), an instance, or None."""
        if value is None or isinstance(value, AutoscalingConfig):
            return value
        if not isinstance(value, dict):
            raise AutoscalingConfigError(f"autoscaling_config: expected a dict, got {value!r}")
        known = {f.name for f in dataclasses.fields(cls)}
        for key in value:
            if key not in known:
                raise AutoscalingConfigError(
                    f"autoscaling_config: unknown field {key!r}; known fields: {', '.join(sorted(known))}"
                )
        return cls(**value)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def start_replicas(self) -> int:
        """How many replicas a new deployment starts with."""
        return self.min_replicas if self.initial_replicas is None else self.initial_replicas


@dataclass(frozen=True)
class PolicyContext:
    """What a policy sees (also what a custom policy gets).

    Attributes:
        config: the autoscaling config.
        current_target: the replica target now.
        running_replicas: replicas that take requests now.
        total_requests: queued plus running requests, aggregated over the window.
        handles_waiting: whether some handle has requests waiting with no replica.
    """

    config: AutoscalingConfig
    current_target: int
    running_replicas: int
    total_requests: float
    handles_waiting: bool


def desired_replicas(ctx: PolicyContext) -> int:
    """The default policy: Ray Serve's formula, clamped to the bounds."""
    cfg = ctx.config
    running = ctx.running_replicas
    if running == 0:  # from zero, as Ray Serve: one step of upscaling_factor, however long the queue
        wanted = max(math.ceil(cfg.upscaling_factor), ctx.current_target) if ctx.total_requests > 0 or ctx.handles_waiting \
            else ctx.current_target
        return max(cfg.min_replicas, min(cfg.max_replicas, wanted))
    ratio = ctx.total_requests / (cfg.target_ongoing_requests * running)
    factor = cfg.upscaling_factor if ratio > 1 else cfg.downscaling_factor
    wanted = math.ceil(running * (1 + (ratio - 1) * factor) - 1e-9)
    if wanted == running and math.ceil(running * ratio - 1e-9) < running:
        wanted -= 1  # a downscaling_factor below 1 rounds back to where it stands: take one replica off, as Ray Serve
    return max(cfg.min_replicas, min(cfg.max_replicas, wanted))


def load_policy(path: str) -> Callable[[PolicyContext], int]:
    """Import a custom policy ``module:function``.

    Raises:
        AutoscalingConfigError: it cannot be imported or is not callable.
    """
    try:
        obj = import_object(path)
    except (ImportError, ValueError) as exc:
        raise AutoscalingConfigError(f"autoscaling_config.policy: cannot import {path!r}: {exc}") from None
    if not callable(obj):
        raise AutoscalingConfigError(f"autoscaling_config.policy: {path!r} is not callable")
    return obj  # type: ignore[no-any-return]


class AutoscalingDecider:
    """Holds a proposed change until its delay has passed. Pure.

    Args:
        config: the autoscaling config.
        policy: the policy function (default: :func:`desired_replicas`).
    """

    def __init__(self, config: AutoscalingConfig, policy: Callable[[PolicyContext], int] | None = None) -> None:
        self.config = config
        self.policy = policy or desired_replicas
        self._proposal: int | None = None
        self._since = 0.0
        self.reason = f"starting with {config.start_replicas} replicas"

    def decide(self, ctx: PolicyContext, now: float) -> int:
        """The target to apply now: the current one unless a change has held long enough."""
        cfg = self.config
        try:
            wanted = int(self.policy(ctx))
        except Exception as exc:  # a custom policy must not stop the controller
            self.reason = f"policy failed ({type(exc).__name__}: {exc}); keeping {ctx.current_target}"
            return ctx.current_target
        wanted = max(cfg.min_replicas, min(cfg.max_replicas, wanted))
        current = ctx.current_target
        if wanted == 0 and current > 1:
            wanted = 1  # to zero only from one, as Ray Serve: N -> 1 after downscale_delay_s, then 1 -> 0
        if wanted == current:
            self._proposal = None
            return current
        if wanted != self._proposal:
            self._proposal, self._since = wanted, now
        if wanted > current:
            delay = 0.0 if ctx.running_replicas == 0 and (ctx.handles_waiting or ctx.total_requests > 0) else cfg.upscale_delay_s
        elif wanted == 0 and cfg.downscale_to_zero_delay_s is not None:
            delay = cfg.downscale_to_zero_delay_s  # (current is 1 here)
        else:
            delay = cfg.downscale_delay_s
        if now - self._since < delay:
            return current
        self._proposal = None
        direction = "up" if wanted > current else "down"
        self.reason = (
            f"scaled {direction} from {current} to {wanted}: {ctx.total_requests:.1f} ongoing requests "
            f"for a target of {cfg.target_ongoing_requests:g} per replica over {ctx.running_replicas} running"
        )
        return wanted


def aggregate(samples: list[float], how: str) -> float:
    """Combine window samples with mean, max or min (0 for none)."""
    if not samples:
        return 0.0
    if how == "max":
        return max(samples)
    if how == "min":
        return min(samples)
    return sum(samples) / len(samples)
