"""The controller's metrics side: ingesting pushes, request totals, autoscaling.

Composed into the control plane (:class:`MetricsLedger`), with its own
state; it reads the control plane's deployments.
"""

from __future__ import annotations

import logging
import zlib
from typing import Any

import msgpack

from protocol import (
    HandleMetrics,
    MetricsPush,
    ProtocolError,
    ReplicaMetrics,
    decode_fields,
)

from .._autoscaling import AutoscalingConfigError, PolicyContext, load_policy
from .._options import DeploymentConfig, DeploymentOptionError
from ._deployment_state import DeploymentState
from ._metrics_store import MetricsStore

log = logging.getLogger("corral.serve")


class MetricsLedger:
    """What the metrics aggregators reported, and the autoscaling decisions made on it.

    Its own state: the metrics store (load per deployment), the request
    counters of live and retired replicas, and the push counters.

    Args:
        core: the control plane whose deployments it scales.
    """

    def __init__(self, core: Any) -> None:
        self.core = core
        self.store = MetricsStore(core.settings.staleness_s)
        self.messages = 0
        self.bytes = 0
        self.dropped = 0
        self.reports = 0
        self.by_sender: dict[str, int] = {}
        # request counters: the latest cumulative report of each live replica, plus
        # what replicas that are gone had counted (their late reports are ignored)
        self.replica_counters: dict[tuple[str, str], dict[str, tuple[int, int, list[int], float]]] = {}
        self.retired_counters: dict[tuple[str, str], list[Any]] = {}
        self.retired_replicas: set[str] = set()

    def autoscale(self, app: str, state: DeploymentState, now: float) -> None:
        """Let the deployment's autoscaling policy decide its target from the reported load."""
        # decisions only change when reports do: look twice per push interval (or at once, see on_push)
        state.next_autoscale = now + self.core.settings.metrics_push_interval_s / 2
        decider = state.autoscaler
        cfg = decider.config
        load = self.store.load((app, state.name), now, cfg.look_back_period_s, cfg.aggregation_function)
        current = state.config.num_replicas
        ctx = PolicyContext(cfg, current, state.serving_count(), load.total_requests, load.waiting_with_no_replica)
        wanted = whole_gangs(decider.decide(ctx, now), state.config)
        state.last_load = load.total_requests
        if wanted != current:
            log.info("autoscaling %s/%s: %s", app, state.name, decider.reason)
            state.set_target(state.spec, state.config.replace(num_replicas=wanted))

    def forget(self, key: tuple[str, str]) -> None:
        """A deployment is gone: its load reports go too."""
        self.store.forget(key)

    def on_push(self, push: MetricsPush) -> str:
        """Take one aggregator's batch of handle and replica reports."""
        apps, now = self.core.apps, self.core.now
        self.messages += 1
        if len(self.by_sender) < 10_000 or push.sender in self.by_sender:
            self.by_sender[push.sender] = self.by_sender.get(push.sender, 0) + 1
        self.bytes += len(push.payload)
        try:
            handle_reports, replica_reports = decode_push(push)
        except ValueError as exc:
            self.dropped += 1
            log.debug("dropped a metrics push from %s: %s", push.sender, exc)
            return "dropped"
        for fields in handle_reports:
            try:
                report = decode_fields(HandleMetrics, fields, "handle_metrics")
            except ProtocolError:
                self.dropped += 1
                continue
            app = apps.get(report.app)
            if app is None or report.deployment not in app.deployments:
                self.dropped += 1
                continue
            self.reports += 1
            self.store.ingest(report, now)
            if report.waiting_with_no_replica:
                app.deployments[report.deployment].next_autoscale = 0.0  # scale from zero on the next tick
        for fields in replica_reports:
            try:
                replica = decode_fields(ReplicaMetrics, fields, "replica_metrics")
            except ProtocolError:
                self.dropped += 1
                continue
            if replica.replica_id in self.retired_replicas:
                continue
            counters = (replica.requests_total, replica.errors_total, list(replica.latency_buckets), replica.latency_sum_s)
            self.replica_counters.setdefault((replica.app, replica.deployment), {})[replica.replica_id] = counters
        return "ok"

    def request_totals(self) -> dict[str, dict[str, Any]]:
        """Requests, errors and latency per deployment, counting replicas that are gone."""
        out = {}
        for key, live in self.replica_counters.items():
            app = self.core.apps.get(key[0])
            state = None if app is None else app.deployments.get(key[1])
            retired = self.retired_counters.setdefault(key, [0, 0, [], 0.0])
            for rid in [r for r in live if state is None or r not in state.replicas]:
                _add_counters(retired, live.pop(rid))
                self.retired_replicas.add(rid)
            total = list(retired)
            total[2] = list(total[2])
            for counters in live.values():
                _add_counters(total, counters)
            out[f"{key[0]}/{key[1]}"] = {
                "requests": total[0], "errors": total[1], "latency_buckets": total[2], "latency_sum_s": total[3],
            }
        return out


def _add_counters(into: list[Any], counters: tuple[int, int, list[int], float]) -> None:
    into[0] += counters[0]
    into[1] += counters[1]
    buckets = counters[2]
    if len(into[2]) < len(buckets):
        into[2].extend([0] * (len(buckets) - len(into[2])))
    for i, count in enumerate(buckets):
        into[2][i] += count
    into[3] += counters[3]



def whole_gangs(replicas: int, config: DeploymentConfig) -> int:
    """Round a replica count up to whole gangs."""
    gang = config.gang()
    if gang is None:
        return replicas
    return -(-replicas // gang.gang_size) * gang.gang_size


def decode_push(push: MetricsPush, max_bytes: int = 64 * 1024 * 1024) -> tuple[list[Any], list[Any]]:
    """Unpack a push's payload into its handle and replica report field lists.

    Raises:
        ValueError: the payload is not what a push carries.
    """
    try:
        raw = zlib.decompressobj().decompress(push.payload, max_bytes) if push.compressed else push.payload
        data = msgpack.unpackb(raw, raw=False, strict_map_key=False)
    except Exception as exc:
        raise ValueError(f"unreadable metrics payload: {exc}") from None
    if not (isinstance(data, list) and len(data) == 2 and all(isinstance(x, list) for x in data)):
        raise ValueError("a metrics payload must be [handle_reports, replica_reports]")
    return data[0], data[1]


def load_policies(configs: dict[str, Any]) -> dict[str, Any]:
    """Each deployment's custom autoscaling policy, loaded, by deployment name.

    Raises:
        DeploymentOptionError: a policy cannot be loaded (the message names its deployment).
    """
    policies = {}
    for name, config in configs.items():
        autoscaling = config.autoscaling()
        if autoscaling is not None and autoscaling.policy:
            try:
                policies[name] = load_policy(autoscaling.policy)
            except AutoscalingConfigError as exc:
                raise DeploymentOptionError(f"deployment {name!r}: {exc}") from None
    return policies
