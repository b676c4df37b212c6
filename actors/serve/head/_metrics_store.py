"""The controller's view of load: recent reports by handle. Pure.

Reports are timed by when the controller received them (not by the
sender's clock), kept for the look-back window, and ignored once stale.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from protocol import HandleMetrics

from .._autoscaling import aggregate


@dataclass(frozen=True)
class Load:
    """A deployment's load as autoscaling sees it.

    Attributes:
        total_requests: queued plus running, aggregated over the window, summed over handles.
        waiting_with_no_replica: some fresh handle has requests waiting and no replica.
        handles: fresh handles that reported.
    """

    total_requests: float
    waiting_with_no_replica: bool
    handles: int


class MetricsStore:
    """Recent handle reports for every deployment.

    History is kept for the longest look-back window asked for so far (at
    least the staleness bound), so memory stays proportional to what
    decisions use.

    Args:
        staleness_s: a handle whose latest report is older than this is ignored.
    """

    def __init__(self, staleness_s: float) -> None:
        self._staleness = staleness_s
        self._keep = staleness_s
        # (app, deployment) -> handle id -> deque of (received_at, total, waiting)
        self._samples: dict[tuple[str, str], dict[str, deque[tuple[float, float, bool]]]] = {}

    def ingest(self, report: HandleMetrics, received_at: float) -> None:
        """Record one handle report."""
        key = (report.app, report.deployment)
        total = report.queued + sum(report.running.values())
        handles = self._samples.setdefault(key, {})
        window = handles.get(report.handle_id)
        if window is None:
            window = handles[report.handle_id] = deque()
        window.append((received_at, total, report.waiting_with_no_replica))
        limit = received_at - self._keep
        while window and window[0][0] < limit:
            window.popleft()

    def load(self, key: tuple[str, str], now: float, look_back_s: float, how: str) -> Load:
        """The deployment's load over the last ``look_back_s``, stale handles left out."""
        if look_back_s > self._keep:
            self._keep = look_back_s
        handles = self._samples.get(key)
        if not handles:
            return Load(0.0, False, 0)
        total = 0.0
        waiting = False
        fresh = 0
        start = now - look_back_s
        for handle_id, window in list(handles.items()):
            if not window or now - window[-1][0] > self._staleness:
                if not window or now - window[-1][0] > self._keep:
                    del handles[handle_id]
                continue
            fresh += 1
            in_window = []
            for at, value, _ in reversed(window):
                if at < start:
                    break
                in_window.append(value)
            total += aggregate(in_window or [window[-1][1]], how)
            waiting = waiting or window[-1][2]
        return Load(total, waiting, fresh)

    def forget(self, key: tuple[str, str]) -> None:
        """Drop a deleted deployment's reports."""
        self._samples.pop(key, None)

    def deployments(self) -> list[tuple[str, str]]:
        return list(self._samples)
