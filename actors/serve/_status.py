"""What ``serve.status()`` returns: Ray Serve's shape."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from protocol import ServeStatusInfo


@dataclass(slots=True)  # not frozen: one per replica in every status() (a frozen init costs 6x)
class ReplicaStatus:
    """One replica.

    Attributes:
        replica_id: its id.
        state: STARTING, RUNNING, STOPPING, ...
        node_id: the worker that runs it.
        pid: its process id (0 until its worker's first hello); a thread-mode
            replica shows its worker's process.
        rss_bytes: that process's resident memory at the worker's last hello.
        isolation: "process" or "thread".
        model_ids: the multiplexed models it holds (``@serve.multiplexed``),
            as its last health check told.
        ongoing: requests in flight at its last health check.
        requests, errors: requests it handled and those that raised (its last metrics report).
        age_s: seconds since the controller started it (0 when unknown).
    """

    replica_id: str
    state: str
    node_id: str
    pid: int
    rss_bytes: int
    isolation: str
    model_ids: tuple[str, ...] = ()
    ongoing: int = 0
    requests: int = 0
    errors: int = 0
    age_s: float = 0.0


@dataclass(frozen=True)
class DeploymentStatusOverview:
    """One deployment.

    Attributes:
        status: UPDATING, HEALTHY, UNHEALTHY, UPSCALING, DOWNSCALING or DEPLOY_FAILED.
        message: why, in words ("" when HEALTHY).
        replica_states: replica counts by state, e.g. ``{"RUNNING": 2, "STARTING": 1}``.
        target_replicas: how many replicas it should have.
        autoscaling: for an autoscaled deployment: ``target``, ``reason`` of
            the last decision, ``total_requests`` seen, ``min_replicas``,
            ``max_replicas``; None otherwise.
        replicas: every replica, with its node, process id and memory, when
            asked for (``serve.status(replicas=True)``); empty otherwise.
    """

    status: str
    message: str
    replica_states: dict[str, int]
    target_replicas: int
    autoscaling: dict[str, Any] | None = None
    replicas: list[ReplicaStatus] = field(default_factory=list)


@dataclass(frozen=True)
class ApplicationStatusOverview:
    """One application.

    Attributes:
        status: DEPLOYING, RUNNING, DEPLOY_FAILED, UNHEALTHY or DELETING.
        message: why, in words.
        ingress: the deployment that takes the application's requests.
        deployments: by name.
        route_prefix: where the HTTP proxies serve it (None: not over HTTP).
    """

    status: str
    message: str
    ingress: str
    deployments: dict[str, DeploymentStatusOverview]
    route_prefix: str | None = None


@dataclass(frozen=True)
class NodeStatus:
    """A worker process and its resources."""

    node_id: str
    address: str
    total: dict[str, float]
    available: dict[str, float]
    replicas: int


@dataclass(frozen=True)
class ReservationStatus:
    """Resources one gang holds: a bundle on the node of each rank."""

    name: str
    app: str
    deployment: str
    gang_id: str
    nodes: list[str]
    bundle: dict[str, float]


@dataclass(frozen=True)
class ProxyStatus:
    """An HTTP proxy the controller heard from lately.

    Attributes:
        node_id: where it runs (``"head"`` or a worker's node id).
        url: where it listens.
        pid: its process.
        requests: requests it served so far.
    """

    node_id: str
    url: str
    pid: int
    requests: int


@dataclass(frozen=True)
class ServeStatus:
    """Every application, the worker nodes, the gang reservations and the HTTP proxies."""

    applications: dict[str, ApplicationStatusOverview] = field(default_factory=dict)
    nodes: list[NodeStatus] = field(default_factory=list)
    reservations: list[ReservationStatus] = field(default_factory=list)
    proxies: list[ProxyStatus] = field(default_factory=list)


def from_info(info: ServeStatusInfo) -> ServeStatus:
    """Convert the controller's wire answer."""
    apps = {
        name: ApplicationStatusOverview(
            app.status,
            app.message,
            app.ingress,
            {
                dname: DeploymentStatusOverview(
                    d.status, d.message, dict(d.replica_states), d.target_replicas, d.autoscaling,
                    [ReplicaStatus(r.replica_id, r.state, r.node_id, r.pid, r.rss_bytes, r.isolation, tuple(r.model_ids),
                                  r.ongoing, r.requests, r.errors, r.age_s) for r in d.replicas],
                )
                for dname, d in app.deployments.items()
            },
            app.route_prefix,
        )
        for name, app in info.applications.items()
    }
    nodes = [NodeStatus(n.node_id, n.address, dict(n.total), dict(n.available), n.replicas) for n in info.nodes]
    reservations = [ReservationStatus(r.name, r.app, r.deployment, r.gang_id, list(r.nodes), dict(r.bundle)) for r in info.reservations]
    proxies = [ProxyStatus(str(p.get("node", "")), str(p.get("url", "")), int(p.get("pid", 0)), int(p.get("requests", 0)))
               for p in info.proxies]
    return ServeStatus(apps, nodes, reservations, proxies)
