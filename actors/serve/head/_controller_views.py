"""The controller's read-only views: status, replica sets, statistics.

Composed into the control plane (:class:`StatusViews`); it keeps no state of its own.
"""

from __future__ import annotations

from typing import Any

from protocol import (
    ApplicationStatusInfo,
    DeploymentStatusInfo,
    NodeInfo,
    ReplicaDetail,
    ReplicaSet,
    ReservationInfo,
    ServeStatusInfo,
)

from ._replica_states import ReplicaState


class StatusViews:
    """What ``serve.status()``, replica-set pushes and the statistics show,
    built from the control plane's state. It keeps only each deployment's
    status rows, reused while nothing they show changed (see :meth:`_rows_of`).

    Args:
        core: the control plane it looks at.
    """

    def __init__(self, core: Any) -> None:
        self.core = core
        self._rows: dict[tuple[str, str], tuple[tuple[Any, ...], list[ReplicaDetail]]] = {}

    def replica_set_version(self, key: tuple[str, str]) -> int | None:
        """The version :meth:`replica_set` would carry now (None: no such deployment). O(1)."""
        app = self.core.apps.get(key[0])
        state = None if app is None else app.deployments.get(key[1])
        # a restarted controller's versions are above any its predecessor published
        return None if state is None else (self.core.recovery.stats.epoch << 40) + state.membership_version

    def replica_set(self, key: tuple[str, str], known_version: int = -1) -> ReplicaSet:
        """The replicas of a deployment that take requests, as pushed to handles;
        only its version (``unchanged``) when that is ``known_version`` (a renewal)."""
        app = self.core.apps.get(key[0])
        state = None if app is None else app.deployments.get(key[1])
        if state is None:
            return ReplicaSet(key[0], key[1], -1, [], exists=False)
        version = self.replica_set_version(key)
        if version == known_version:  # a renewal of the current set: no list of every replica to build
            return ReplicaSet(key[0], key[1], version, [], unchanged=True)
        cap = state.config.max_ongoing_requests
        replicas = [r.routing_info(state.app, state.name, cap) for r in state.serving()]
        failed = state.status()[1] if state.failed else ""
        return ReplicaSet(
            key[0], key[1], version, replicas, True, state.config.max_queued_requests, failed,
            self.core.pickles(state.config),
        )

    def status(self, only: str | None = None, replicas: bool = True) -> ServeStatusInfo:
        """Every application's and deployment's status, the nodes and the
        reservations; with ``only``, that application's alone (O(its size)).
        Without ``replicas``, no row per replica: O(deployments), not O(replicas)."""
        core = self.core
        apps = {}
        chosen = core.apps.values() if only is None else [a for a in (core.apps.get(only),) if a is not None]
        for app in chosen:
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
                rows = self._rows_of(app.name, name, state) if replicas else []
                deployments[name] = DeploymentStatusInfo(
                    name, status, message, state.replica_states(), state.config.num_replicas, autoscaling, rows
                )
            apps[app.name] = ApplicationStatusInfo(app.name, *_app_status(app, deployments), app.ingress, deployments, app.route_prefix)
        if only is not None:
            return ServeStatusInfo(apps, [], [])
        if replicas:
            self._rows = {k: v for k, v in self._rows.items() if k[0] in apps and k[1] in apps[k[0]].deployments}
        nodes = [
            NodeInfo(n.node_id, n.address, dict(n.total), {k: round(v, 6) for k, v in n.available.items()}, n.replicas)
            for n in core.cluster.nodes
        ]
        reservations = [
            ReservationInfo(g.reservation.name, app.name, name, g.gang_id, list(g.reservation.nodes), dict(g.reservation.bundle))
            for app in core.apps.values()
            for name, state in app.deployments.items()
            for g in state.gangs.values()
        ]
        return ServeStatusInfo(apps, nodes, reservations, core.route_book.proxies(core.now))

    def _rows_of(self, app: str, name: str, state: Any) -> list[ReplicaDetail]:
        """A deployment's status rows: those of the last status while its replicas,
        models, metrics reports and workers are unchanged and within the same
        second (16,384 rows take about 30 ms to build); so ``ongoing``, which
        health checks update, and ``age_s`` may lag by up to a second."""
        core = self.core
        key = (state, state.revision, state.membership_version, core.ledger.reports, len(core.nodes), int(core.now))
        cached = self._rows.get((app, name))
        if cached is not None and cached[0] == key:
            return list(cached[1])
        mode = state.config.isolation
        counters = core.ledger.replica_counters.get((app, name), {})
        workers = {n.node_id: (n.pid, n.rss) for n in core.nodes.values()} if mode == "thread" else {}
        now, none = core.now, (0, 0)
        rows = [
            ReplicaDetail(rid, _STATE_NAMES[replica_state], r.node_id,
                          *(workers.get(r.node_id, none) if workers else (r.pid, r.rss_bytes)), mode, list(r.model_ids),
                          r.ongoing, *counters.get(rid, none)[:2], round(now - r.created_at, 1) if r.created_at else 0.0)
            for rid, replica_state, r in state.replicas.items()
        ]
        self._rows[(app, name)] = (key, rows)
        return list(rows)

    def stats(self) -> dict[str, Any]:
        """The control plane's counters (the shell adds its loop timings)."""
        core, ledger = self.core, self.core.ledger
        return {
            "replicas": sum(len(s.replicas) for app in core.apps.values() for s in app.deployments.values()),
            "subscriptions": sum(len(s) for s in core.subscribers.values()),
            "metrics_messages": ledger.messages,
            "metrics_bytes": ledger.bytes,
            "metrics_reports": ledger.reports,
            "metrics_dropped": ledger.dropped,
            "metrics_by_sender": dict(ledger.by_sender),
            "requests": ledger.request_totals(),
            "leaked_reservations": core.recovery.leaked_reservations(),
            "recovery": core.recovery.as_dict(),
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


_STATE_NAMES = {state: state.value for state in ReplicaState}
