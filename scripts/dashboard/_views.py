"""What the dashboard's JSON API answers, built from a snapshot (pure).

A :class:`Snapshot` is the last status, controller statistics and history the
sampler took; every view reads it, so a page polling the API costs the head
a dictionary walk, not a question to the controller.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from actors.serve._status import ServeStatus

from ._history import History


class NotFound(LookupError):
    """An app, deployment or replica the cluster does not have (HTTP 404)."""


@dataclass
class Snapshot:
    """The cluster as last sampled."""

    taken_at: float = 0.0
    status: ServeStatus = field(default_factory=ServeStatus)
    stats: dict[str, Any] = field(default_factory=dict)
    history: History = field(default_factory=History)
    links: dict[str, str] = field(default_factory=dict)  # address, dashboard, metrics, logs


def cluster(snap: Snapshot) -> dict[str, Any]:
    """Nodes (alive and lately dead), the controller, the proxies and where things are."""
    alive = {n.node_id: n for n in snap.status.nodes}
    nodes = []
    for node_id, seen in sorted(snap.history.nodes.items()):
        node = alive.get(node_id)
        nodes.append({
            **seen, "total": dict(node.total) if node else {}, "available": dict(node.available) if node else {},
            "replicas": node.replicas if node else 0,
        })
    return {
        "taken_at": snap.taken_at,
        "links": snap.links,
        "nodes": nodes,
        "controller": {
            "restarts": snap.stats.get("recovery", {}).get("epoch", 0),
            "recovery": snap.stats.get("recovery", {}),
            "loop_p50_ms": _ms(snap.stats.get("loop_ms_p50")),
            "loop_p99_ms": _ms(snap.stats.get("loop_ms_p99")),
            "cpu_s": _ms(snap.stats.get("process_cpu_s")),
        },
        "proxies": [dataclasses.asdict(p) for p in snap.status.proxies],
        "applications": len(snap.status.applications),
        "replicas": sum(len(d.replicas) for a in snap.status.applications.values() for d in a.deployments.values()),
    }


def applications(snap: Snapshot) -> list[dict[str, Any]]:
    """Every application with its deployments' summaries."""
    return [application(snap, name) for name in sorted(snap.status.applications)]


def application(snap: Snapshot, name: str) -> dict[str, Any]:
    """One application.

    Raises:
        NotFound: no such application.
    """
    app = snap.status.applications.get(name)
    if app is None:
        raise NotFound(f"no application {name!r}")
    return {
        "name": name, "status": app.status, "message": app.message, "ingress": app.ingress, "route_prefix": app.route_prefix,
        "deployments": [_deployment_summary(name, dep_name, dep) for dep_name, dep in sorted(app.deployments.items())],
    }


def deployment(snap: Snapshot, app_name: str, name: str) -> dict[str, Any]:
    """One deployment: its replicas and its series over the window.

    Raises:
        NotFound: no such application or deployment.
    """
    app = snap.status.applications.get(app_name)
    if app is None:
        raise NotFound(f"no application {app_name!r}")
    dep = app.deployments.get(name)
    if dep is None:
        raise NotFound(f"no deployment {name!r} in application {app_name!r}")
    series = snap.history.series.get(f"{app_name}/{name}")
    return {
        **_deployment_summary(app_name, name, dep),
        "replicas": [_replica(app_name, name, r) for r in dep.replicas],
        "history": series.as_json() if series is not None else None,
    }


def replica(snap: Snapshot, replica_id: str) -> dict[str, Any]:
    """One replica, found by id.

    Raises:
        NotFound: no replica with that id runs now.
    """
    for app_name, app in snap.status.applications.items():
        for name, dep in app.deployments.items():
            for r in dep.replicas:
                if r.replica_id == replica_id:
                    return _replica(app_name, name, r)
    raise NotFound(f"no replica {replica_id!r}")


def gangs(snap: Snapshot) -> list[dict[str, Any]]:
    """The gang reservations (a bundle on the node of each rank)."""
    return [dataclasses.asdict(r) for r in snap.status.reservations]


def _ms(value: Any) -> float | None:
    return round(float(value), 3) if isinstance(value, (int, float)) else None


def _deployment_summary(app_name: str, name: str, dep: Any) -> dict[str, Any]:
    return {
        "app": app_name, "name": name, "status": dep.status, "message": dep.message,
        "running": dep.replica_states.get("RUNNING", 0), "target": dep.target_replicas,
        "replica_states": dict(dep.replica_states), "autoscaling": dep.autoscaling,
    }


def _replica(app_name: str, name: str, r: Any) -> dict[str, Any]:
    return {"app": app_name, "deployment": name, **dataclasses.asdict(r), "model_ids": list(r.model_ids)}
