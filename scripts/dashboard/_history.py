"""The dashboard's memory of the last hour (pure: no I/O, no threads).

Each sample is what Prometheus is fed at that moment: per deployment the
running and target replicas and the cumulative request, error and latency
counters; per sample the worker nodes seen. The history keeps per deployment
a bounded series of points (rates and latency quantiles from the counters'
deltas) and remembers nodes that went away, as DEAD, for the window.
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from protocol import LATENCY_BUCKETS_S


@dataclass(frozen=True)
class DeploymentSample:
    """One deployment at one moment (counters are cumulative since the replicas started)."""

    running: int
    target: int
    requests: int
    errors: int
    latency_buckets: list[int]  # cumulative (as Prometheus's): LATENCY_BUCKETS_S then +Inf


@dataclass
class Series:
    """One deployment's points, oldest first (``t``: wall-clock seconds)."""

    t: deque[float]
    running: deque[int]
    target: deque[int]
    rps: deque[float]
    error_rps: deque[float]
    p50_ms: deque[float | None]
    p99_ms: deque[float | None]
    last: DeploymentSample | None = None
    last_t: float = 0.0

    @classmethod
    def empty(cls, points: int) -> Series:
        return cls(*(deque(maxlen=points) for _ in range(7)))

    def as_json(self) -> dict[str, list[Any]]:
        return {name: list(getattr(self, name)) for name in ("t", "running", "target", "rps", "error_rps", "p50_ms", "p99_ms")}


def quantile_ms(counts: list[int], q: float) -> float | None:
    """The ``q`` quantile of a latency histogram (per-bucket counts), in ms,
    interpolated within its bucket; None when it holds nothing."""
    total = sum(counts)
    if total <= 0:
        return None
    rank = q * total
    cumulative = 0
    for i, count in enumerate(counts):
        if count and cumulative + count >= rank:
            low = LATENCY_BUCKETS_S[i - 1] if i > 0 else 0.0
            high = LATENCY_BUCKETS_S[i] if i < len(LATENCY_BUCKETS_S) else LATENCY_BUCKETS_S[-1] * 2
            return round(1000 * (low + (high - low) * (rank - cumulative) / count), 3)
        cumulative += count
    return round(1000 * LATENCY_BUCKETS_S[-1], 3)


@dataclass
class History:
    """Series per ``"app/deployment"`` and nodes, over ``window_s``.

    Args:
        window_s: how far back points and dead nodes are kept.
        points: points kept per series (the sampling period is ``window_s / points``).
        max_series: deployments tracked at most; the ones unseen longest go first.
    """

    window_s: float = 3600.0
    points: int = 720
    max_series: int = 2000
    series: dict[str, Series] = field(default_factory=dict)
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add(self, now: float, deployments: dict[str, DeploymentSample]) -> None:
        """Take one point of every deployment (by ``"app/deployment"``)."""
        for key, sample in deployments.items():
            series = self.series.get(key)
            if series is None:
                series = self.series[key] = Series.empty(self.points)
            self._point(series, now, sample)
        gone = [key for key, s in self.series.items() if key not in deployments and now - s.last_t > self.window_s]
        for key in gone:
            del self.series[key]
        while len(self.series) > self.max_series:
            del self.series[min(self.series, key=lambda k: self.series[k].last_t)]

    def see_nodes(self, now: float, nodes: dict[str, str]) -> None:
        """The nodes (id -> address) alive now; ones gone are DEAD for the window."""
        for node_id, address in nodes.items():
            self.nodes[node_id] = {"node_id": node_id, "address": address, "state": "ALIVE", "last_seen": now}
        for node_id, node in list(self.nodes.items()):
            if node_id not in nodes:
                if now - node["last_seen"] > self.window_s:
                    del self.nodes[node_id]
                else:
                    node["state"] = "DEAD"

    def _point(self, series: Series, now: float, sample: DeploymentSample) -> None:
        last = series.last
        dt = now - series.last_t if last is not None else 0.0
        if last is None or dt <= 0:
            rps = errors = 0.0
            window: list[int] = []
        else:
            requests = _delta(sample.requests, last.requests)
            rps, errors = requests / dt, _delta(sample.errors, last.errors) / dt
            if len(sample.latency_buckets) == len(last.latency_buckets) and sample.requests >= last.requests:
                cumulative = [_delta(a, b) for a, b in zip(sample.latency_buckets, last.latency_buckets)]
            else:  # the counters started again (replicas replaced): this sample's own counts
                cumulative = list(sample.latency_buckets)
            window = [c - p for c, p in zip(cumulative, [0, *cumulative[:-1]])]
        series.t.append(round(now, 3))
        series.running.append(sample.running)
        series.target.append(sample.target)
        series.rps.append(round(rps, 3))
        series.error_rps.append(round(errors, 3))
        series.p50_ms.append(quantile_ms(window, 0.5))
        series.p99_ms.append(quantile_ms(window, 0.99))
        series.last, series.last_t = sample, now


def _delta(now: int, before: int) -> int:
    """A counter's increase; a counter that went down was reset (its replicas replaced)."""
    return now - before if now >= before else now


def latency_bucket_index(seconds: float) -> int:
    """The bucket a latency falls in (as the replicas count them)."""
    return bisect.bisect_left(LATENCY_BUCKETS_S, seconds)
