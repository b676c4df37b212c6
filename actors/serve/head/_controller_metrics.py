"""The controller's metrics side: ingesting pushes, request totals, autoscaling.

Mixed into the Controller actor (it uses the controller's apps, metrics
store and counters); kept apart so each module reads in one sitting.
"""

from __future__ import annotations

import logging
import time
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

from .._autoscaling import PolicyContext
from .._options import DeploymentConfig
from ._deployment_state import DeploymentState

log = logging.getLogger("corral.serve")


class ControllerMetrics:
    """Metrics and autoscaling methods of the controller."""

    apps: dict[str, Any]
    metrics: Any
    settings: Any
    metrics_messages: int
    metrics_bytes: int
    metrics_dropped: int
    metrics_reports: int
    metrics_by_sender: dict[str, int]
    replica_counters: dict[tuple[str, str], dict[str, tuple[int, int, list[int], float]]]
    retired_counters: dict[tuple[str, str], list[Any]]
    retired_replicas: set[str]

    def _autoscale(self, app: str, state: DeploymentState, now: float) -> None:
        # decisions only change when reports do: look twice per push interval (or at once, see _on_metrics)
        state.next_autoscale = now + self.settings.metrics_push_interval_s / 2
        decider = state.autoscaler
        cfg = decider.config
        load = self.metrics.load((app, state.name), now, cfg.look_back_period_s, cfg.aggregation_function)
        current = state.config.num_replicas
        ctx = PolicyContext(cfg, current, state.serving_count(), load.total_requests, load.waiting_with_no_replica)
        wanted = whole_gangs(decider.decide(ctx, now), state.config)
        state.last_load = load.total_requests
        if wanted != current:
            log.info("autoscaling %s/%s: %s", app, state.name, decider.reason)
            state.set_target(state.spec, state.config.replace(num_replicas=wanted))

    def _on_metrics(self, push: MetricsPush) -> str:
        self.metrics_messages += 1
        if len(self.metrics_by_sender) < 10_000 or push.sender in self.metrics_by_sender:
            self.metrics_by_sender[push.sender] = self.metrics_by_sender.get(push.sender, 0) + 1
        self.metrics_bytes += len(push.payload)
        try:
            handle_reports, replica_reports = decode_push(push)
        except ValueError as exc:
            self.metrics_dropped += 1
            log.debug("dropped a metrics push from %s: %s", push.sender, exc)
            return "dropped"
        now = time.monotonic()
        for fields in handle_reports:
            try:
                report = decode_fields(HandleMetrics, fields, "handle_metrics")
            except ProtocolError:
                self.metrics_dropped += 1
                continue
            app = self.apps.get(report.app)
            if app is None or report.deployment not in app.deployments:
                self.metrics_dropped += 1
                continue
            self.metrics_reports += 1
            self.metrics.ingest(report, now)
            if report.waiting_with_no_replica:
                app.deployments[report.deployment].next_autoscale = 0.0  # scale from zero on the next tick
        for fields in replica_reports:
            try:
                replica = decode_fields(ReplicaMetrics, fields, "replica_metrics")
            except ProtocolError:
                self.metrics_dropped += 1
                continue
            if replica.replica_id in self.retired_replicas:
                continue
            counters = (replica.requests_total, replica.errors_total, list(replica.latency_buckets), replica.latency_sum_s)
            self.replica_counters.setdefault((replica.app, replica.deployment), {})[replica.replica_id] = counters
        return "ok"

    def _request_totals(self) -> dict[str, dict[str, Any]]:
        out = {}
        for key, live in self.replica_counters.items():
            app = self.apps.get(key[0])
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
