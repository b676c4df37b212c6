"""Prometheus metrics of a cluster, served over HTTP from the head process.

Everything is read from the controller at scrape time: requests, errors and
request latency per deployment (reported by replicas through the metrics
aggregators), HTTP requests per proxy, route and status code with their
latency, replicas by state, autoscaling targets, the reconcile loop's
iteration time, metrics pushes received, controller restarts, checkpoint
writes and failures, and leaked gang reservations.
"""

from __future__ import annotations

import itertools
from typing import Any, Iterator

from prometheus_client import start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from actors.serve.client._session import Session
from protocol import LATENCY_BUCKETS_S, GetControllerStats, GetStatus

from ._supervisor import WorkerSupervisor


def _http_metrics(proxies: list[dict[str, Any]]) -> Iterator[Any]:
    """Per proxy and route: requests by status code, and the latency histogram."""
    requests = CounterMetricFamily("corral_http_requests", "HTTP requests answered by a proxy",
                                   labels=["proxy", "route", "status"])
    latency = HistogramMetricFamily("corral_http_request_latency_seconds", "HTTP request latency at the proxy",
                                    labels=["proxy", "route"])
    bounds = [str(b) for b in LATENCY_BUCKETS_S] + ["+Inf"]
    for proxy in proxies:
        node = str(proxy.get("node", ""))
        for route, stats in sorted((proxy.get("http") or {}).items()):
            for code, count in sorted(stats["statuses"].items()):
                requests.add_metric([node, route or "(none)", code], count)
            cumulative = list(itertools.accumulate(stats["latency_buckets"]))
            latency.add_metric([node, route or "(none)"], list(zip(bounds, cumulative)), stats["latency_sum_s"])
    yield from (requests, latency)


class ClusterCollector(Collector):
    """Asks the controller on every scrape (bounded by the control timeout)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def collect(self) -> Iterator[Any]:
        stats = self.session.ask_controller(GetControllerStats())
        status = self.session.ask_controller(GetStatus())
        requests = CounterMetricFamily("corral_requests", "Requests handled by replicas", labels=["app", "deployment"])
        errors = CounterMetricFamily("corral_request_errors", "Requests that raised", labels=["app", "deployment"])
        latency = HistogramMetricFamily("corral_request_latency_seconds", "Request latency in the replica", labels=["app", "deployment"])
        for key, totals in sorted(stats.get("requests", {}).items()):
            labels = key.split("/", 1)
            requests.add_metric(labels, totals["requests"])
            errors.add_metric(labels, totals["errors"])
            counts = totals["latency_buckets"] or [0] * (len(LATENCY_BUCKETS_S) + 1)
            bounds = [str(b) for b in LATENCY_BUCKETS_S] + ["+Inf"]
            latency.add_metric(labels, list(zip(bounds, counts)), totals["latency_sum_s"])
        yield from (requests, errors, latency)
        replicas = GaugeMetricFamily("corral_replicas", "Replicas by state", labels=["app", "deployment", "state"])
        targets = GaugeMetricFamily("corral_target_replicas", "Target replicas (the autoscaling target when autoscaled)", labels=["app", "deployment"])
        models = GaugeMetricFamily("corral_multiplexed_models", "Multiplexed models a replica holds (1 per model)",
                                   labels=["app", "deployment", "replica", "model_id"])
        for app_name, app in sorted(status.applications.items()):
            for name, d in sorted(app.deployments.items()):
                for state, count in sorted(d.replica_states.items()):
                    replicas.add_metric([app_name, name, state], count)
                targets.add_metric([app_name, name], (d.autoscaling or {}).get("target", d.target_replicas))
                for replica in d.replicas:
                    for model_id in replica.model_ids:
                        models.add_metric([app_name, name, replica.replica_id, model_id], 1)
        yield from (replicas, targets, models)
        yield from _http_metrics(status.proxies)
        loop = GaugeMetricFamily("corral_reconcile_loop_seconds", "Reconcile loop iteration time", labels=["quantile"])
        for quantile, key in (("0.5", "loop_ms_p50"), ("0.99", "loop_ms_p99")):
            if key in stats:
                loop.add_metric([quantile], stats[key] / 1000)
        yield loop
        pushes = CounterMetricFamily("corral_metrics_pushes_received", "Metrics push messages received by the controller")
        pushes.add_metric([], stats.get("metrics_messages", 0))
        yield pushes
        recovery = stats["recovery"]
        epoch = GaugeMetricFamily("corral_controller_restarts", "Times the controller was restarted from its checkpoint")
        epoch.add_metric([], recovery["epoch"])
        writes = CounterMetricFamily("corral_checkpoint_writes", "Checkpoints written")
        writes.add_metric([], recovery["checkpoint_writes"])
        failures = CounterMetricFamily("corral_checkpoint_failures", "Checkpoint writes that failed (retried next tick)")
        failures.add_metric([], recovery["checkpoint_failures"])
        leaked = GaugeMetricFamily("corral_leaked_reservations", "Gang reservations no gang uses")
        leaked.add_metric([], stats["leaked_reservations"])
        yield from (epoch, writes, failures, leaked)


class SupervisorCollector(Collector):
    """Restarts of the local workers by the head's supervisor."""

    def __init__(self, supervisor: WorkerSupervisor) -> None:
        self.supervisor = supervisor

    def collect(self) -> Iterator[Any]:
        restarts = CounterMetricFamily("corral_worker_restarts", "Local workers started again after they died", labels=["node"])
        for node, count in sorted(dict(self.supervisor.restarts).items()):
            restarts.add_metric([node], count)
        yield restarts


def serve_metrics(session: Session, port: int, host: str = "127.0.0.1", supervisor: WorkerSupervisor | None = None) -> Any:
    """Start the HTTP endpoint; returns the server (``.shutdown()`` stops it)."""
    registry = CollectorRegistry()
    registry.register(ClusterCollector(session))
    if supervisor is not None:
        registry.register(SupervisorCollector(supervisor))
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return server


