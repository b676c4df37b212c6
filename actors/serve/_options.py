"""Deployment options: Ray Serve's names and defaults, validated once, here.

Pure: no I/O. Every error names the option and what was expected.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import msgpack

from ._packages import PackageError, check_runtime_env
from ._autoscaling import AutoscalingConfig, AutoscalingConfigError
from ._gangs import GangConfigError, GangSchedulingConfig

# Options accepted by @serve.deployment and .options(); "name" and "version" are
# the deployment's identity, the rest its config.
_ALIASES = {"ray_actor_options": "actor_options"}
_ACTOR_OPTION_KEYS = ("num_cpus", "num_gpus", "memory", "resources")
# Ray Serve options corral does not take, with what to use instead (refused by name unless None)
_NOT_YET: dict[str, str] = {
    "placement_group_bundles": "not supported; use gang_scheduling_config for replicas that must be placed together",
    "placement_group_strategy": "not supported; use gang_scheduling_config.gang_placement_strategy",
    "logging_config": "not supported; replicas log through Python's logging to their worker's output",
    "request_router_config": "not supported; routing is power of two choices on in-flight requests",
    "route_prefix": "is given to serve.run(..., route_prefix=...) or in a config file, not to a deployment",
}
ISOLATION_MODES = ("process", "thread")


class DeploymentOptionError(ValueError):
    """A deployment option has a wrong value; the message names the option."""


def _fail(option: str, expected: str, value: Any) -> DeploymentOptionError:
    return DeploymentOptionError(f"deployment option {option!r}: expected {expected}, got {value!r}")


def _number(option: str, value: Any, minimum: float = 0.0, strict: bool = False, integer: bool = False) -> Any:
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or (not integer and not math.isfinite(value)):
        raise _fail(option, "an int" if integer else "a number", value)
    if value < minimum or (strict and value == minimum):
        raise _fail(option, f"{'an int' if integer else 'a number'} {'>' if strict else '>='} {minimum:g}", value)
    return value


def _encodable(option: str, value: Any) -> Any:
    try:
        msgpack.packb(value, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise DeploymentOptionError(f"deployment option {option!r} must be msgpack-encodable: {exc}") from None
    return value


def _actor_options(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _fail("actor_options", "a dict", value)
    out: dict[str, Any] = {}
    for key, item in value.items():
        if key not in _ACTOR_OPTION_KEYS:
            raise DeploymentOptionError(
                f"deployment option 'actor_options': unknown key {key!r}; known keys: {', '.join(_ACTOR_OPTION_KEYS)}"
            )
        if key == "resources":
            if not isinstance(item, dict):
                raise _fail("actor_options.resources", "a dict of resource name to amount", item)
            out[key] = {}
            for name, amount in item.items():
                if not isinstance(name, str) or not name:
                    raise _fail("actor_options.resources", "non-empty string resource names", name)
                out[key][name] = float(_number(f"actor_options.resources.{name}", amount))
        else:
            out[key] = float(_number(f"actor_options.{key}", item))
    return out


@dataclass(frozen=True)
class DeploymentConfig:
    """The options of one deployment, with Ray Serve's defaults.

    Attributes:
        num_replicas: how many replicas to run.
        max_ongoing_requests: requests one replica runs at once.
        max_queued_requests: requests a handle may queue; -1 is unlimited.
        user_config: passed to ``reconfigure`` on change, without a restart.
        health_check_period_s: time between two health checks of a replica.
        health_check_timeout_s: a health check slower than this failed.
        graceful_shutdown_timeout_s: in-flight requests get this long on stop.
        graceful_shutdown_wait_loop_s: accepted for Ray Serve compatibility.
        actor_options: ``num_cpus``, ``num_gpus``, ``memory``, ``resources``.
        autoscaling_config: Ray Serve's autoscaling fields; when set, the
            replica count follows load and ``num_replicas`` is not used.
        gang_scheduling_config: replicas in gangs that start, fail and stop as one.
        isolation: ``"process"`` (each replica in its own process, the default)
            or ``"thread"`` (replicas packed as threads inside their worker's
            process: light, but sharing its GIL and its fate).
        serializer: ``"msgpack"`` (msgpack values plus the payload codecs:
            buffers, numpy arrays, dataclasses, pydantic models) or
            ``"pickle"`` (anything else pickled too; only on a CURVE or ipc cluster).
        run_sync_in_threadpool: run sync methods in a pool of
            ``max_ongoing_requests`` threads. By default (False, as in Ray
            Serve) a sync method runs on the thread that received the request,
            a thread hop less; one that runs past the transport's
            ``inline_budget_s`` or waits (a call to another deployment) lets a
            standby thread take over receiving, so requests still overlap.
    """

    num_replicas: int = 1
    max_ongoing_requests: int = 5
    max_queued_requests: int = -1
    user_config: Any = None
    health_check_period_s: float = 10.0
    health_check_timeout_s: float = 30.0
    graceful_shutdown_timeout_s: float = 20.0
    graceful_shutdown_wait_loop_s: float = 2.0
    actor_options: dict[str, Any] = field(default_factory=dict)
    autoscaling_config: dict[str, Any] | None = None
    gang_scheduling_config: dict[str, Any] | None = None
    isolation: str = "process"
    serializer: str = "msgpack"
    run_sync_in_threadpool: bool = False

    def __post_init__(self) -> None:
        _number("num_replicas", self.num_replicas, integer=True)
        _number("max_ongoing_requests", self.max_ongoing_requests, minimum=1, integer=True)
        if self.max_queued_requests != -1:
            _number("max_queued_requests", self.max_queued_requests, minimum=0, integer=True)
        _encodable("user_config", self.user_config)
        for name in ("health_check_period_s", "health_check_timeout_s", "graceful_shutdown_wait_loop_s"):
            _number(name, getattr(self, name), strict=True)
        _number("graceful_shutdown_timeout_s", self.graceful_shutdown_timeout_s)
        object.__setattr__(self, "actor_options", _actor_options(self.actor_options))
        if not isinstance(self.run_sync_in_threadpool, bool):
            raise _fail("run_sync_in_threadpool", "a bool", self.run_sync_in_threadpool)
        if self.serializer not in ("msgpack", "pickle"):
            raise _fail("serializer", "'msgpack' or 'pickle'", self.serializer)
        if self.isolation not in ISOLATION_MODES:
            raise _fail("isolation", "'process' or 'thread'", self.isolation)
        if self.isolation == "thread" and self.actor_options.get("num_gpus"):
            raise DeploymentOptionError(
                "deployment option 'actor_options.num_gpus' needs isolation='process': GPUs are given to a "
                "replica's process through CUDA_VISIBLE_DEVICES, which threads of one process cannot have apart"
            )
        try:
            autoscaling = AutoscalingConfig.from_value(self.autoscaling_config)
        except AutoscalingConfigError as exc:
            raise DeploymentOptionError(f"deployment option {exc}") from None
        object.__setattr__(self, "autoscaling_config", None if autoscaling is None else autoscaling.to_dict())
        try:
            gang = GangSchedulingConfig.from_value(self.gang_scheduling_config)
        except GangConfigError as exc:
            raise DeploymentOptionError(f"deployment option {exc}") from None
        object.__setattr__(self, "gang_scheduling_config", None if gang is None else gang.to_dict())
        if gang is not None and self.num_replicas % gang.gang_size:
            raise DeploymentOptionError(
                f"deployment option 'num_replicas' ({self.num_replicas}) must be a multiple of "
                f"gang_scheduling_config.gang_size ({gang.gang_size})"
            )

    def gang(self) -> GangSchedulingConfig | None:
        """The gang scheduling config, or None for independent replicas."""
        g = self.gang_scheduling_config
        return None if g is None else GangSchedulingConfig(**g)

    def autoscaling(self) -> AutoscalingConfig | None:
        """The autoscaling config, or None for a fixed replica count."""
        return None if self.autoscaling_config is None else AutoscalingConfig(**self.autoscaling_config)

    def replace(self, **options: Any) -> DeploymentConfig:
        """A copy with some options changed (validated like the constructor)."""
        return dataclasses.replace(self, **options)

    def to_dict(self) -> dict[str, Any]:
        """The options as a msgpack-encodable map."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DeploymentConfig:
        """Build from :meth:`to_dict`'s output, validating every option.

        Raises:
            DeploymentOptionError: an option is unknown or has a wrong value.
        """
        unknown = set(data) - set(_CONFIG_FIELDS)
        if unknown:
            raise DeploymentOptionError(f"unknown deployment options {sorted(unknown)}")
        return cls(**data)

    def resource_request(self) -> dict[str, float]:
        """What one replica reserves on its node: CPU, GPU, memory and custom resources."""
        opts = self.actor_options
        request = {"CPU": opts.get("num_cpus", 0.0)}
        if opts.get("num_gpus"):
            request["GPU"] = opts["num_gpus"]
        if opts.get("memory"):
            request["memory"] = opts["memory"]
        request.update(opts.get("resources", {}))
        return {k: v for k, v in request.items() if v > 0}


_CONFIG_FIELDS = tuple(f.name for f in dataclasses.fields(DeploymentConfig))
KNOWN_OPTIONS = ("name", "version", "runtime_env", *_CONFIG_FIELDS, *_ALIASES, *_NOT_YET)


def split_options(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split user options into identity (name, version) and config fields.

    Raises:
        DeploymentOptionError: an option is unknown, given twice through an
            alias, or not available yet.
    """
    identity: dict[str, Any] = {}
    config: dict[str, Any] = {}
    for key, value in options.items():
        canonical = _ALIASES.get(key, key)
        if key in _NOT_YET:
            if value is None:
                continue
            raise DeploymentOptionError(f"deployment option {key!r}: {_NOT_YET[key]}")
        if canonical == "runtime_env":
            try:
                identity["runtime_env"] = check_runtime_env(value) or None
            except PackageError as exc:
                raise DeploymentOptionError(f"deployment option {exc}") from None
        elif canonical in ("name", "version"):
            if value is not None and (not isinstance(value, str) or not value):
                raise _fail(key, "a non-empty string", value)
            identity[canonical] = value
        elif canonical in _CONFIG_FIELDS:
            if canonical in config:
                raise DeploymentOptionError(f"deployment option {canonical!r} given twice (once as {key!r})")
            config[canonical] = value
        else:
            raise DeploymentOptionError(
                f"unknown deployment option {key!r}; known options: {', '.join(sorted(KNOWN_OPTIONS))}"
            )
    replicas = config.get("num_replicas")
    if isinstance(replicas, int) and not isinstance(replicas, bool) and replicas == 0:
        raise DeploymentOptionError(
            "deployment option 'num_replicas': expected an int >= 1, got 0 (as in Ray Serve; to scale to zero "
            "when idle, use autoscaling_config with min_replicas=0)"
        )
    if config.get("autoscaling_config") is not None and "num_replicas" in config:
        raise DeploymentOptionError(
            "deployment options 'num_replicas' and 'autoscaling_config' cannot be given together; "
            "use autoscaling_config.initial_replicas"
        )
    return identity, config
