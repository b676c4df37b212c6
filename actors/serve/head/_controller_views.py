"""The controller's read-only views: status, replica sets, statistics.

Mixed into the Controller actor; kept apart so each module reads in one sitting.
"""

from __future__ import annotations

import time
from typing import Any

from protocol import (
    ApplicationStatusInfo,
    DeploymentStatusInfo,
    NodeInfo,
    ReplicaInfo,
    ReplicaSet,
    ReservationInfo,
    ServeStatusInfo,
)


class ControllerViews:
    """Status and statistics methods of the controller."""

    apps: dict[str, Any]
    cluster: Any
    loop_ms: Any
    ticks: int
    subscribers: dict[tuple[str, str], set[str]]
    recovery: Any

    def _replica_set_version(self, key: tuple[str, str]) -> int | None:
        """The version :meth:`_replica_set` would carry now (None: no such deployment). O(1)."""
        app = self.apps.get(key[0])
        state = None if app is None else app.deployments.get(key[1])
        # a restarted controller's versions are above any its predecessor published
        return None if state is None else (self.recovery.epoch << 40) + state.membership_version

    def _replica_set(self, key: tuple[str, str]) -> ReplicaSet:
        app = self.apps.get(key[0])
        state = None if app is None else app.deployments.get(key[1])
        if state is None:
            return ReplicaSet(key[0], key[1], -1, [], exists=False)
        replicas = [
            ReplicaInfo(r.replica_id, state.app, state.name, r.node_id, r.address, r.actor, state.config.max_ongoing_requests)
            for r in state.serving()
        ]
        version = self._replica_set_version(key)
        failed = state.status()[1] if state.failed else ""
        return ReplicaSet(key[0], key[1], version, replicas, True, state.config.max_queued_requests, failed)

    def _status(self) -> ServeStatusInfo:
        apps = {}
        for app in self.apps.values():
            deployments = {}
            for name, state in app.deployments.items():
                status, message = state.status()
                autoscaling = None
                if state.autoscaler is not None:
                    autoscaling = {
                        "target": state.config.num_replicas,
                        "reason": state.autoscaler.reason,
                        "total_requests": round(getattr(state, "last_load", 0.0), 3),
                        "min_replicas": state.autoscaler.config.min_replicas,
                        "max_replicas": state.autoscaler.config.max_replicas,
                    }
                deployments[name] = DeploymentStatusInfo(
                    name, status, message, state.replica_states(), state.config.num_replicas, autoscaling
                )
            apps[app.name] = ApplicationStatusInfo(app.name, *_app_status(app, deployments), app.ingress, deployments)
        nodes = [
            NodeInfo(n.node_id, n.address, dict(n.total), {k: round(v, 6) for k, v in n.available.items()}, n.replicas)
            for n in self.cluster.nodes
        ]
        reservations = [
            ReservationInfo(g.reservation.name, app.name, name, g.gang_id, list(g.reservation.nodes), dict(g.reservation.bundle))
            for app in self.apps.values()
            for name, state in app.deployments.items()
            for g in state.gangs.values()
        ]
        return ServeStatusInfo(apps, nodes, reservations)

    def _stats(self) -> dict[str, Any]:
        times = sorted(self.loop_ms)
        replicas = sum(len(s.replicas) for app in self.apps.values() for s in app.deployments.values())
        base = {
            "ticks": self.ticks,
            "replicas": replicas,
            "subscriptions": sum(len(s) for s in self.subscribers.values()),
            "metrics_messages": self.metrics_messages,
            "metrics_bytes": self.metrics_bytes,
            "metrics_reports": self.metrics_reports,
            "metrics_dropped": self.metrics_dropped,
            "metrics_by_sender": dict(self.metrics_by_sender),
            "process_cpu_s": time.process_time(),
            "requests": self._request_totals(),
            "leaked_reservations": self.leaked_reservations(),
            "recovery": self.recovery_stats(),
        }
        if not times:
            return base
        return {
            **base,
            "loop_samples": len(times),
            "loop_ms_p50": times[len(times) // 2],
            "loop_ms_p99": times[min(len(times) - 1, int(len(times) * 0.99))],
            "loop_ms_max": times[-1],
        }



def _app_status(app: Any, deployments: dict[str, DeploymentStatusInfo]) -> tuple[str, str]:
    if app.deleting:
        return "DELETING", "deleting the application"
    statuses = {d.status for d in deployments.values()}
    for status, app_status in (("DEPLOY_FAILED", "DEPLOY_FAILED"), ("UNHEALTHY", "UNHEALTHY"), ("UPDATING", "DEPLOYING")):
        if status in statuses:
            failing = [f"{d.name}: {d.message}" for d in deployments.values() if d.status == status]
            return app_status, "; ".join(failing)
    return "RUNNING", ""
