"""One MetricsAggregator per process: every handle's and replica's load,
pushed to the controller in one message per interval (seed 002).

Sources (routers and replicas) register with the process's
:class:`MetricsRegistry` from any thread at any time; the registry holds them
weakly, so a router that is garbage-collected drops out. The aggregator
samples every source each record interval, averages the samples over the push
window, and sends one :class:`MetricsPush` per push interval. A push whose
predecessor is still unanswered is skipped, so nothing piles up. A source
with a ``metrics_changes`` counter (a replica) is sampled only when it moved:
an idle one costs a comparison per interval, and its last sample stands in
for the intervals it skipped.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import threading
import time
import weakref
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import msgpack

from protocol import HandleMetrics, MetricsPush, ReplicaMetrics, encode_fields

from ..._actor import Actor
from ..._config import ServeSettings
from ..._ref import ActorRef
from ..._ticker import Ticker

log = logging.getLogger("corral.serve")


class MetricsSource(Protocol):
    def metrics_sample(self) -> tuple[Any, ...]:
        """``("handle", app, deployment, id, queued, {replica: running}, waiting)``
        or ``("replica", app, deployment, replica_id, running)``."""


class MetricsRegistry:
    """The process's registered metrics sources; safe from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sources: dict[int, weakref.ref[Any]] = {}
        self._tokens = itertools.count(1)
        self.push_now = threading.Event()

    def register(self, source: MetricsSource) -> int:
        """Add a source (held weakly); returns a token for :meth:`unregister`."""
        token = next(self._tokens)
        ref = weakref.ref(source, lambda _r, t=token: self.unregister(t))
        with self._lock:
            self._sources[token] = ref
        return token

    def unregister(self, token: int) -> None:
        """Remove a source. Unknown tokens are ignored."""
        with self._lock:
            self._sources.pop(token, None)

    def snapshot(self) -> list[tuple[int, MetricsSource]]:
        """The live sources now (a copy: registering meanwhile is safe)."""
        with self._lock:
            refs = list(self._sources.items())
        out = []
        for token, ref in refs:
            source = ref()
            if source is not None:
                out.append((token, source))
        return out

    def __len__(self) -> int:
        return len(self._sources)


@dataclass
class _Window:
    kind: str
    key: tuple[str, str, str]
    samples: int = 0
    queued: float = 0.0
    running: dict[str, float] = field(default_factory=dict)
    waiting: bool = False
    counters: tuple[Any, ...] = (0, 0, [], 0.0)
    last: tuple[Any, ...] | None = None
    version: Any = None
    skipped: int = 0

    def skip(self) -> None:
        """The source did not change this interval: its last sample repeats."""
        self.skipped += 1

    def _repeat(self) -> None:
        n, last = self.skipped, self.last
        self.skipped = 0
        if not n or last is None:
            return
        self.samples += n
        if self.kind == "handle":
            self.queued += last[4] * n
            for replica, count in last[5].items():
                self.running[replica] = self.running.get(replica, 0.0) + count * n
            self.waiting = self.waiting or bool(last[6])
        else:
            self.running[""] = self.running.get("", 0.0) + last[4] * n

    def add(self, sample: tuple[Any, ...]) -> None:
        self._repeat()
        self.last = sample
        self.samples += 1
        if self.kind == "handle":
            self.queued += sample[4]
            for replica, count in sample[5].items():
                self.running[replica] = self.running.get(replica, 0.0) + count
            self.waiting = self.waiting or bool(sample[6])
        else:
            self.running[""] = self.running.get("", 0.0) + sample[4]
            if len(sample) > 5:
                self.counters = sample[5]

    def report(self, now: float) -> Any:
        self._repeat()
        n = max(1, self.samples)
        app, deployment, ident = self.key
        if self.kind == "handle":
            running = {r: c / n for r, c in self.running.items()}
            return HandleMetrics(app, deployment, ident, self.queued / n, running, self.waiting, now)
        requests, errors, buckets, latency_sum = self.counters
        return ReplicaMetrics(app, deployment, ident, self.running.get("", 0.0) / n, now, requests, errors, list(buckets), latency_sum)


class _Record:
    pass


class _PushNow:
    pass


class GetAggregatorStatistics:
    """Ask the aggregator for a snapshot of its counters."""


@dataclass
class AggregatorStatistics:
    """Counters of one process's aggregator.

    Attributes:
        sources: registered handles and replicas.
        pushes_sent: messages sent to the controller.
        pushes_skipped: pushes skipped because the previous one was unanswered.
        bytes_sent: payload bytes sent (after compression).
        push_failures: pushes the controller did not acknowledge.
    """

    sources: int = 0
    pushes_sent: int = 0
    pushes_skipped: int = 0
    bytes_sent: int = 0
    push_failures: int = 0


class MetricsAggregator(Actor):
    """Samples every registered source and pushes to the controller.

    Args:
        registry: the process's sources.
        settings: intervals and mode.
        controller: where to push.
    """

    def __init__(self, registry: MetricsRegistry, settings: ServeSettings, controller: ActorRef) -> None:
        super().__init__()
        self.registry = registry
        self.settings = settings
        self.controller = controller
        self.windows: dict[int, _Window] = {}
        self.next_push = time.monotonic() + settings.metrics_push_interval_s
        self.in_flight: dict[Any, Any] = {}
        self.seq = itertools.count(1)
        self.stats = AggregatorStatistics()
        self._ticker: Ticker | None = None

    def on_start(self) -> None:
        self._ticker = Ticker(
            self.actor_ref, _Record, self.settings.metrics_record_interval_s, "metrics-ticker",
            urgent=self.registry.push_now, make_urgent=_PushNow,
        ).start()

    def on_stop(self) -> None:
        self._ticker.stop()

    def on_failure(self, *exc_info: Any) -> None:
        self._ticker.stop()

    def handlers(self) -> dict[type, Callable[[Any], Any]]:
        return {_Record: self._on_record, _PushNow: self._on_push_now, GetAggregatorStatistics: self._statistics}

    def _on_record(self, _message: _Record) -> None:
        if self._ticker is not None:
            self._ticker.handled()
        self._sample()
        if time.monotonic() >= self.next_push:
            self._push()

    def _on_push_now(self, _message: _PushNow) -> None:
        self._sample()
        self._push()

    def _statistics(self, _message: GetAggregatorStatistics) -> AggregatorStatistics:
        return dataclasses.replace(self.stats)

    def _sample(self) -> None:
        live = set()
        for token, source in self.registry.snapshot():
            live.add(token)
            window = self.windows.get(token)
            version = getattr(source, "metrics_changes", None)
            if window is not None and version is not None and version == window.version:
                window.skip()
                continue
            try:
                sample = source.metrics_sample()
            except Exception:
                log.exception("metrics source %r failed to sample", source)
                continue
            if window is None:
                window = self.windows[token] = _Window(sample[0], (sample[1], sample[2], sample[3]))
            window.version = version
            window.add(sample)
        for token in set(self.windows) - live:
            del self.windows[token]
        self.stats.sources = len(live)

    def _push(self) -> None:
        self.next_push = time.monotonic() + self.settings.metrics_push_interval_s
        now = time.time()
        windows = self.windows
        self.windows = {
            token: _Window(w.kind, w.key, counters=w.counters, last=w.last, version=w.version) for token, w in windows.items()
        }
        if self.settings.metrics_mode == "handle":
            for token, window in windows.items():
                self._send(token, [window.report(now)])
        else:
            reports = [w.report(now) for w in windows.values()]
            if reports:
                self._send("process", reports)

    def _send(self, slot: Any, reports: list[Any]) -> None:
        pending = self.in_flight.get(slot)
        if pending is not None and not pending.done():
            self.stats.pushes_skipped += 1
            return
        handles = [encode_fields(r) for r in reports if isinstance(r, HandleMetrics)]
        replicas = [encode_fields(r) for r in reports if isinstance(r, ReplicaMetrics)]
        raw = msgpack.packb([handles, replicas], use_bin_type=True)
        packed = zlib.compress(raw, 6)
        compressed = len(packed) < len(raw)
        payload = packed if compressed else raw
        message = MetricsPush(self.system.address, next(self.seq), compressed, payload)
        try:
            future = self.controller.ask(message, timeout=self.settings.control_timeout_s)
        except Exception as exc:
            self.stats.push_failures += 1
            log.debug("metrics push not sent: %s", exc)
            return
        self.stats.pushes_sent += 1
        self.stats.bytes_sent += len(payload)
        self.in_flight[slot] = future
        future.add_done_callback(self._acknowledged)

    def _acknowledged(self, future: Any) -> None:
        try:
            future.get(0)
        except Exception as exc:
            self.stats.push_failures += 1
            log.debug("metrics push failed: %s", exc)
