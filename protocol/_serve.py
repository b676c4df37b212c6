"""Message types of the serving layer: control plane and requests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ._schema import Payload, message


@message("deployment_spec")
@dataclass(frozen=True, slots=True)
class DeploymentSpec:
    """Everything a worker needs to construct one deployment's replicas.

    Attributes:
        app: the application's name.
        name: the deployment's name.
        import_path: ``module:QualifiedName`` of the decorated class.
        main_file: the user's script when ``import_path`` is in ``__main__``.
        init_args, init_kwargs: the constructor's arguments (msgpack values;
            handles to other deployments are ``{"__corral_handle__": [app, name]}``;
            other values are sealed (``_payload.seal``): only the replica opens them).
        config: the validated deployment options, as a map.
        version: the code version; replicas of another version are replaced.
        import_dirs: folders a replica puts first on its import path before
            importing ``import_path`` (where the deploying process found the code).
    """

    app: str
    name: str
    import_path: str
    main_file: str | None
    init_args: list[Any]
    init_kwargs: dict[str, Any]
    config: dict[str, Any]
    version: str
    import_dirs: list[str] = field(default_factory=list)
    packages: list[str] = field(default_factory=list)  # shipped code (runtime_env), by digest, first on the import path


@message("deploy_app")
@dataclass(frozen=True, slots=True)
class DeployApp:
    """Create or update an application (sent to the controller).

    Attributes:
        route_prefix: where the HTTP proxies expose its ingress; None: not
            over HTTP (``serve.run`` sends ``"/"`` unless told otherwise).
    """

    name: str
    ingress: str
    deployments: list[DeploymentSpec]
    route_prefix: str | None = None


@message("delete_app")
@dataclass(frozen=True, slots=True)
class DeleteApp:
    """Delete an application and stop its replicas."""

    name: str


@message("register_node")
@dataclass(frozen=True, slots=True)
class RegisterNode:
    """A worker's node agent introduces itself to the controller."""

    node_id: str
    address: str
    resources: dict[str, float]


@message("node_hello")
@dataclass(frozen=True, slots=True)
class NodeHello:
    """A node agent's periodic hello, listing the replicas it runs, ``[process
    id, resident bytes]`` of each replica process (``processes``) and of the
    worker itself (``worker``: its thread-mode replicas live there). The
    controller answers ``{"known": bool, "stop": [replica ids it does not know]}``."""

    node_id: str
    address: str
    replicas: list[str]
    processes: dict[str, list[int]] = field(default_factory=dict)
    worker: list[int] = field(default_factory=list)


@message("replica_exited")
@dataclass(frozen=True, slots=True)
class ReplicaExited:
    """A node agent saw a replica's process exit without being asked to stop."""

    replica_id: str
    reason: str


@message("replica_info")
@dataclass(frozen=True, slots=True)
class ReplicaInfo:
    """Where one running replica can be reached."""

    replica_id: str
    app: str
    deployment: str
    node_id: str
    address: str
    actor: str
    max_ongoing_requests: int
    model_ids: list[str] = field(default_factory=list)  # multiplexed models it holds, as its last health check told


@message("start_replica")
@dataclass(frozen=True, slots=True)
class StartReplica:
    """Construct a replica on a node; answered once its constructor returned."""

    replica_id: str
    node_id: str
    spec: DeploymentSpec
    gang: dict[str, Any] | None = None


@message("stop_replica")
@dataclass(frozen=True, slots=True)
class StopReplica:
    """Stop a replica: no new requests, in-flight ones get ``timeout_s`` to finish."""

    replica_id: str
    timeout_s: float


@message("has_package")
@dataclass(frozen=True, slots=True)
class HasPackage:
    """Does the head keep the package ``digest`` (``sha256:...``)? Answered True or False."""

    digest: str


@message("upload_package")
@dataclass(frozen=True, slots=True)
class UploadPackage:
    """A client gives the head a package of shipped code; refused unless ``data`` hashes to ``digest``."""

    digest: str
    data: bytes


@message("fetch_package")
@dataclass(frozen=True, slots=True)
class FetchPackage:
    """A worker asks the head for a package's bytes (answered with them)."""

    digest: str


@message("read_replica_log")
@dataclass(frozen=True, slots=True)
class ReadReplicaLog:
    """Ask a node agent for the last ``tail`` lines of a replica's log; answered
    ``{"lines": [...]}`` or ``{"error": why}`` (no such log, unreadable)."""

    replica_id: str
    tail: int


@message("list_replicas")
@dataclass(frozen=True, slots=True)
class ListReplicas:
    """Ask a node agent which replicas it runs.

    Attributes:
        states: answer ``{replica_id: "running" | "starting"}`` (whether the
            constructor has returned) instead of a sorted list of ids; a
            running replica process answers ``["running", address, pid]``.
    """

    states: bool = False


@message("reconfigure")
@dataclass(frozen=True, slots=True)
class Reconfigure:
    """Pass a new user_config to a running replica."""

    user_config: Any


@message("handle_request")
@dataclass(frozen=True, slots=True)
class HandleRequest:
    """One call of a deployment method (``multiplexed_model_id``: the model
    the caller asked for, ``serve.get_multiplexed_model_id()`` in the replica)."""

    method: str
    args: Payload
    kwargs: Payload
    multiplexed_model_id: str = ""


@message("get_routes")
@dataclass(frozen=True, slots=True)
class GetRoutes:
    """An HTTP proxy asks which application serves which route prefix.

    The controller answers ``{"revision": int, "routes": {prefix: [app, ingress]}}``,
    or ``{"revision": int}`` alone when ``known`` is the current revision.

    Attributes:
        known: the revision the proxy has (-1: none).
        proxy: the proxy's ``node``, ``url``, ``pid`` and counters: the ask is
            also how the controller knows the proxies that are alive.
    """

    known: int = -1
    proxy: dict[str, Any] = field(default_factory=dict)


@message("routes_changed")
@dataclass(frozen=True, slots=True)
class RoutesChanged:
    """The controller tells the proxies it knows that the routes changed
    (a deploy, a move, a delete): they ask for them at once."""

    revision: int


@message("get_status")
@dataclass(frozen=True, slots=True)
class GetStatus:
    """Ask the controller for the status of every application, or of one
    (``app``: then no nodes and no reservations, and the cost is that app's alone).
    ``replicas``: with a row per replica (False: counts by state only, whatever the replica count)."""

    app: str | None = None
    replicas: bool = True


@message("replica_detail")
@dataclass(slots=True)  # not frozen: 16,384 of them in one status answer, and a frozen init costs 6x
class ReplicaDetail:
    """One replica as ``serve.status()`` shows it.

    Attributes:
        pid: its process id (0 until known); a thread-mode replica shows its worker's.
        rss_bytes: that process's resident memory at the node's last hello.
        isolation: ``"process"`` or ``"thread"``.
        model_ids: the multiplexed models it holds, as its last health check told.
        ongoing: requests in flight at its last health check.
        requests, errors: requests it handled and those that raised (its last metrics report).
        age_s: seconds since the controller started it (0 when unknown: adopted after a restart).
    """

    replica_id: str
    state: str
    node_id: str
    pid: int
    rss_bytes: int
    isolation: str
    model_ids: list[str] = field(default_factory=list)
    ongoing: int = 0
    requests: int = 0
    errors: int = 0
    age_s: float = 0.0


@message("deployment_status")
@dataclass(frozen=True, slots=True)
class DeploymentStatusInfo:
    """One deployment's status as the controller sees it."""

    name: str
    status: str
    message: str
    replica_states: dict[str, int]
    target_replicas: int
    autoscaling: dict[str, Any] | None = None
    replicas: list[ReplicaDetail] = field(default_factory=list)


@message("application_status")
@dataclass(frozen=True, slots=True)
class ApplicationStatusInfo:
    """One application's status."""

    name: str
    status: str
    message: str
    ingress: str
    deployments: dict[str, DeploymentStatusInfo]
    route_prefix: str | None = None


@message("node_info")
@dataclass(frozen=True, slots=True)
class NodeInfo:
    """A worker node as the controller sees it."""

    node_id: str
    address: str
    total: dict[str, float]
    available: dict[str, float]
    replicas: int


@message("reservation_info")
@dataclass(frozen=True, slots=True)
class ReservationInfo:
    """Resources held for one gang: a bundle on the node of each rank."""

    name: str
    app: str
    deployment: str
    gang_id: str
    nodes: list[str]
    bundle: dict[str, float]


@message("serve_status")
@dataclass(frozen=True, slots=True)
class ServeStatusInfo:
    """Everything ``serve.status()`` shows."""

    applications: dict[str, ApplicationStatusInfo]
    nodes: list[NodeInfo] = field(default_factory=list)
    reservations: list[ReservationInfo] = field(default_factory=list)
    proxies: list[dict[str, Any]] = field(default_factory=list)


@message("subscribe_replicas")
@dataclass(frozen=True, slots=True)
class SubscribeReplicas:
    """A process asks to be sent a deployment's replica set whenever it changes.

    Attributes:
        app, deployment: which deployment.
        subscriber: ``address#actor`` of the process's membership actor.
        known_version: the version the subscriber holds (a renewal); when it is
            still the current one, the answer carries no replicas
            (``unchanged``). -1: send the whole set.
    """

    app: str
    deployment: str
    subscriber: str
    known_version: int = -1


@message("replica_set")
@dataclass(frozen=True, slots=True)
class ReplicaSet:
    """The replicas of a deployment that take requests, pushed once per process.

    Attributes:
        exists: False once the deployment is deleted (or never existed).
        version: grows with every change, so stale pushes can be ignored.
        failed: the DEPLOY_FAILED message when its current version failed to
            deploy, else empty.
        pickle: the deployment opted in to pickling values with no codec.
        unchanged: an answer to a renewal whose ``known_version`` is current:
            nothing else in it is meant (the replicas are left out).
    """

    app: str
    deployment: str
    version: int
    replicas: list[ReplicaInfo]
    exists: bool = True
    max_queued_requests: int = -1
    failed: str = ""
    pickle: bool = False
    unchanged: bool = False


@message("controller_stats")
@dataclass(frozen=True, slots=True)
class GetControllerStats:
    """Ask the controller for its loop timings and counters.

    Attributes:
        reset: forget the loop timings gathered so far (after answering).
    """

    reset: bool = False


@message("handle_metrics")
@dataclass(frozen=True, slots=True)
class HandleMetrics:
    """One handle's (router's) load on a deployment, averaged over a push window.

    Attributes:
        handle_id: unique id of the router in its process.
        queued: requests waiting at the handle.
        running: requests in flight, by replica id.
        waiting_with_no_replica: requests wait and the handle knows no replica.
        timestamp: UNIX time when the sender made the report.
    """

    app: str
    deployment: str
    handle_id: str
    queued: float
    running: dict[str, float]
    waiting_with_no_replica: bool
    timestamp: float


@message("replica_metrics")
@dataclass(frozen=True, slots=True)
class ReplicaMetrics:
    """One replica's own count of requests it runs, averaged over a push window,
    and its request counters since it started (cumulative; the latency
    histogram's counts follow ``LATENCY_BUCKETS_S``)."""

    app: str
    deployment: str
    replica_id: str
    running: float
    timestamp: float
    requests_total: int = 0
    errors_total: int = 0
    latency_buckets: list[int] = field(default_factory=list)
    latency_sum_s: float = 0.0


LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@message("metrics_push")
@dataclass(frozen=True, slots=True)
class MetricsPush:
    """Every report of one process (or of one handle, in per-handle mode) for one interval.

    ``payload`` is msgpack ``[handle_reports, replica_reports]`` (each report a
    field array), zlib-compressed when ``compressed`` is set.
    """

    sender: str
    seq: int
    compressed: bool
    payload: bytes
