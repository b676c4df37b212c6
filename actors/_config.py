"""The one typed settings object of a corral process."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from transport import TransportConfig

from ._logging import LOG_FORMATS
from ._window import CREDIT_EVERY


def _check_positive(owner: str, obj: object, names: tuple[str, ...], integer: bool = False) -> None:
    for name in names:
        value = getattr(obj, name)
        ok = isinstance(value, int) if integer else isinstance(value, (int, float))
        if isinstance(value, bool) or not ok or value <= 0:
            kind = "an int" if integer else "a number"
            raise ValueError(f"{owner}.{name}: expected {kind} > 0, got {value!r}")


@dataclass(frozen=True)
class ServeSettings:
    """Settings of the serving layer (controller, workers, handles).

    Attributes:
        reconcile_interval_s: period of the controller's reconcile loop.
        replica_start_timeout_s: a replica whose constructor has not returned
            by then counts as a failed start.
        constructor_retries_per_replica: failed starts allowed per target
            replica before a deployment that never ran is DEPLOY_FAILED ...
        max_constructor_retries: ... capped at this many.
        health_check_failure_threshold: consecutive failed health checks
            after which a replica is replaced.
        run_timeout_s: the longest ``serve.run`` waits for RUNNING.
        worker_start_timeout_s: the longest a worker may take to register.
        control_timeout_s: deadline of control-plane asks (status, deploy...).
        request_timeout_s: deadline of a request sent through a handle.
        metrics_record_interval_s: how often handles' and replicas' load is sampled.
        metrics_push_interval_s: how often each process pushes its samples to the controller.
        metrics_staleness_s: reports older than this are ignored (None: 3 push intervals).
        metrics_mode: ``"process"`` (one push per process) or ``"handle"``
            (one per handle: the old way, kept for the benchmark's comparison).
        checkpoint_store: where the controller keeps its checkpoint
            (``sqlite:///path`` or ``redis://host:port/db``); empty: nowhere,
            a restarted controller starts empty.
        checkpoint_recovery: ``"auto"`` (recover from a checkpoint if there
            is one), ``"required"`` (a checkpoint must be there: the controller
            is being restarted) or ``"fresh"`` (discard any checkpoint).
        recovery_timeout_s: after a restart, workers that have not said which
            replicas they run by then are given up (their replicas replaced).
        recovery_retry_s: how often a worker that did not answer is asked again.
        subscription_refresh_s: how often a process renews its replica-set
            subscriptions (idempotent), so one the controller lost (a restart,
            a cut network) comes back; after the controller is seen to die,
            every ``recovery_retry_s`` until it answers.
        exit_timeout_s: the longest a process whose main thread ended without
            ``serve.shutdown()`` spends shutting serve down before it exits.
        serializer: ``"pickle"`` opts every deployment of the cluster in to
            pickling values with no codec (as a deployment's own
            ``serializer="pickle"`` does; refused on a plain-TCP cluster).
        gc_sweep_s: the controller's process freezes what survives each full
            garbage collection (the next one walks only newer objects: short
            pauses at 16,384 replicas) and thaws and collects everything once
            every ``gc_sweep_s``; None leaves the collector as Python sets it.
    """

    reconcile_interval_s: float = 0.1
    replica_start_timeout_s: float = 300.0
    constructor_retries_per_replica: int = 3
    max_constructor_retries: int = 20
    health_check_failure_threshold: int = 3
    run_timeout_s: float = 600.0
    worker_start_timeout_s: float = 60.0
    control_timeout_s: float = 30.0
    request_timeout_s: float = 300.0
    metrics_record_interval_s: float = 0.5
    metrics_push_interval_s: float = 10.0
    metrics_staleness_s: float | None = None
    metrics_mode: str = "process"
    checkpoint_store: str = ""
    checkpoint_recovery: str = "auto"
    recovery_timeout_s: float = 15.0
    recovery_retry_s: float = 1.0
    subscription_refresh_s: float = 10.0
    exit_timeout_s: float = 10.0
    serializer: str = "msgpack"
    gc_sweep_s: float | None = 600.0

    def __post_init__(self) -> None:
        _check_positive(
            "ServeSettings",
            self,
            (
                "reconcile_interval_s",
                "replica_start_timeout_s",
                "run_timeout_s",
                "worker_start_timeout_s",
                "control_timeout_s",
                "request_timeout_s",
                "metrics_record_interval_s",
                "metrics_push_interval_s",
                "recovery_timeout_s",
                "recovery_retry_s",
                "subscription_refresh_s",
                "exit_timeout_s",
            ),
        )
        _check_positive(
            "ServeSettings",
            self,
            ("constructor_retries_per_replica", "max_constructor_retries", "health_check_failure_threshold"),
            integer=True,
        )
        for optional in ("metrics_staleness_s", "gc_sweep_s"):
            if getattr(self, optional) is not None:
                _check_positive("ServeSettings", self, (optional,))
        if self.serializer not in ("msgpack", "pickle"):
            raise ValueError(f"ServeSettings.serializer: expected 'msgpack' or 'pickle', got {self.serializer!r}")
        if self.metrics_mode not in ("process", "handle"):
            raise ValueError(f"ServeSettings.metrics_mode: expected 'process' or 'handle', got {self.metrics_mode!r}")
        if self.checkpoint_recovery not in ("auto", "required", "fresh"):
            raise ValueError(
                "ServeSettings.checkpoint_recovery: expected 'auto', 'required' or 'fresh', "
                f"got {self.checkpoint_recovery!r}"
            )

    @property
    def staleness_s(self) -> float:
        """Age after which a metrics report is ignored."""
        return self.metrics_staleness_s if self.metrics_staleness_s is not None else 3 * self.metrics_push_interval_s


PROXY_LOCATIONS = ("HeadOnly", "EveryNode", "Disabled")


@dataclass(frozen=True)
class HttpOptions:
    """The HTTP proxies' settings (Ray Serve's ``http_options``).

    Attributes:
        host: the address the proxies listen on.
        port: their port (0: any free one; ``serve.status().proxies`` says which).
        proxy_location: ``"HeadOnly"`` (a proxy in the head), ``"EveryNode"``
            (also one in every worker; on one machine they share the port and
            the kernel spreads connections) or ``"Disabled"``.
        request_timeout_s: a request not answered by then gets 408 and is
            cancelled in the replica (None: ``ServeSettings.request_timeout_s``).
        max_body_bytes: a request body beyond this gets 413.
        keep_alive_timeout_s: how long an idle keep-alive connection stays open.
        routes_refresh_s: how often a proxy asks the controller for its routes
            (and at once when a path matches none).
        show_tracebacks: a 500's body carries the replica's traceback (else it
            is only in the replica's log).
    """

    host: str = "127.0.0.1"
    port: int = 8000
    proxy_location: str = "HeadOnly"
    request_timeout_s: float | None = None
    max_body_bytes: int = 64 * 1024 * 1024
    keep_alive_timeout_s: float = 5.0
    routes_refresh_s: float = 1.0
    show_tracebacks: bool = False

    def __post_init__(self) -> None:
        if self.proxy_location not in PROXY_LOCATIONS:
            raise ValueError(f"http_options.proxy_location: expected one of {PROXY_LOCATIONS}, got {self.proxy_location!r}")
        if not isinstance(self.host, str) or not self.host:
            raise ValueError(f"http_options.host: expected a host name or address, got {self.host!r}")
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise ValueError(f"http_options.port: expected an int in 0..65535, got {self.port!r}")
        _check_positive("http_options", self, ("max_body_bytes",), integer=True)
        _check_positive("http_options", self, ("keep_alive_timeout_s", "routes_refresh_s"))
        if self.request_timeout_s is not None:
            _check_positive("http_options", self, ("request_timeout_s",))

    @classmethod
    def from_dict(cls, options: dict[str, Any] | HttpOptions | None) -> HttpOptions:
        """Options from a dict (unknown keys are an error naming them).

        Raises:
            ValueError: an unknown or invalid option.
        """
        if options is None:
            return cls()
        if isinstance(options, HttpOptions):
            return options
        if not isinstance(options, dict):
            raise ValueError(f"http_options: expected a dict, got {options!r}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(f"http_options: unknown option(s) {unknown}; known: {sorted(known)}")
        return cls(**options)


@dataclass(frozen=True)
class Config:
    """Settings of an :class:`~actors.ActorSystem` and everything above it.

    Attributes:
        transport: how the process binds, heartbeats and bounds its queues.
        ask_timeout_s: the deadline of an ``ask`` that names none.
        stop_timeout_s: how long shutdown waits for each actor to stop.
        log_format: ``"text"`` or ``"json"`` (one object per line): how
            the head, workers and replica processes log.
        stream_window: chunks a stream's producer may have sent that its
            consumer has not taken yet (at least 16); a producer that opts in
            (a replica's generators do) waits while the window is full.
        serve: the serving layer's settings.
        http: the HTTP proxies' settings.
    """

    transport: TransportConfig = field(default_factory=TransportConfig)
    ask_timeout_s: float = 30.0
    stop_timeout_s: float = 10.0
    stream_window: int = 128
    log_format: str = "text"
    serve: ServeSettings = field(default_factory=ServeSettings)
    http: HttpOptions = field(default_factory=HttpOptions)

    def __post_init__(self) -> None:
        if not isinstance(self.transport, TransportConfig):
            raise ValueError(f"Config.transport: expected a TransportConfig, got {self.transport!r}")
        if not isinstance(self.serve, ServeSettings):
            raise ValueError(f"Config.serve: expected a ServeSettings, got {self.serve!r}")
        if not isinstance(self.http, HttpOptions):
            raise ValueError(f"Config.http: expected an HttpOptions, got {self.http!r}")
        _check_positive("Config", self, ("ask_timeout_s", "stop_timeout_s"))
        if self.log_format not in LOG_FORMATS:
            raise ValueError(f"Config.log_format: expected one of {', '.join(LOG_FORMATS)}, got {self.log_format!r}")
        if isinstance(self.stream_window, bool) or not isinstance(self.stream_window, int) or self.stream_window < CREDIT_EVERY:
            raise ValueError(f"Config.stream_window: expected an int >= {CREDIT_EVERY}, got {self.stream_window!r}")


def config_to_json(config: Config) -> str:
    """Serialise a Config (to hand it to a child process)."""
    return json.dumps(dataclasses.asdict(config))


def config_from_json(text: str) -> Config:
    """Rebuild a Config from :func:`config_to_json`'s output, validating every field.

    Raises:
        ValueError: a field is unknown or invalid.
    """
    try:
        data: dict[str, Any] = json.loads(text)
        return Config(
            transport=TransportConfig(**data.pop("transport", {})),
            serve=ServeSettings(**data.pop("serve", {})),
            http=HttpOptions(**data.pop("http", {})),
            **data,
        )
    except (TypeError, json.JSONDecodeError) as exc:
        raise ValueError(f"invalid corral config: {exc}") from None
