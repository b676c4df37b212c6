"""corral's serving API, with Ray Serve's names.

    from actors import serve

    @serve.deployment(num_replicas=2)
    class Echo:
        def __init__(self, prefix):
            self.prefix = prefix

        def __call__(self, x):
            return self.prefix + x

    if __name__ == "__main__":
        serve.start(workers=2)
        handle = serve.run(Echo.bind("hi:"), name="echo")
        print(handle.remote("x").result())      # hi:x
        serve.shutdown()

House rules of ``actors.serve``:

- This package's own modules are the public API (``_api``: start, run,
  status, shutdown; the composition root that remembers this process's
  session) and the definitions every side shares: deployment options and
  the application graph (``_options``, ``_app``), the autoscaling policy and
  gang options (``_autoscaling``, ``_gangs``), HTTP routes and
  ``@serve.ingress`` (``_routes``, ``_ingress``), replica context, status
  views, error types and well-known actor names. They import no subpackage
  (``_api`` and ``_embedded`` excepted: they assemble the pieces).
- Three subpackages, by where code runs: ``client`` (any process that calls
  deployments), ``head`` (the control plane) and ``worker`` (node agents
  and replicas). Each opens with its own rules. ``worker`` may import
  ``client``; nothing else crosses between them.
- Imports point down only: ``actors.serve`` -> ``actors`` -> ``transport``
  -> ``protocol``; ``tests/test_house_rules.py`` checks it, and that there is
  no import cycle.
"""


from ._api import (
    add_worker,
    controller_stats,
    delete,
    get_app_handle,
    get_deployment_handle,
    run,
    shutdown,
    start,
    status,
)
from ._app import Application, Deployment, deployment
from ._context import GangContext, ReplicaContext, get_replica_context
from ._errors import (
    BackPressureError,
    CheckpointError,
    DeployFailedError,
    DeploymentNotFoundError,
    ReplicaDiedError,
    ReplicaStoppingError,
    RequestCancelledError,
    StoreError,
)
from ._gangs import GangSchedulingConfig
from ._batching import batch
from ._multiplex import get_multiplexed_model_id, multiplexed
from ._ingress import ingress
from ._options import DeploymentConfig, DeploymentOptionError
from ._packages import PackageError
from ._status import (
    ApplicationStatusOverview,
    DeploymentStatusOverview,
    NodeStatus,
    ProxyStatus,
    ReservationStatus,
    ServeStatus,
)
from .client._handle import (
    DeploymentHandle,
    DeploymentResponse,
    DeploymentResponseGenerator,
)
from .client._router import RouterStatistics

__all__ = [
    "CheckpointError",
    "StoreError",
    "Application",
    "BackPressureError",
    "DeploymentResponseGenerator",
    "ReplicaDiedError",
    "RouterStatistics",
    "ApplicationStatusOverview",
    "DeployFailedError",
    "PackageError",
    "Deployment",
    "DeploymentConfig",
    "DeploymentHandle",
    "DeploymentNotFoundError",
    "DeploymentOptionError",
    "DeploymentResponse",
    "DeploymentStatusOverview",
    "GangContext",
    "GangSchedulingConfig",
    "NodeStatus",
    "ProxyStatus",
    "ReplicaContext",
    "ReplicaStoppingError",
    "RequestCancelledError",
    "ReservationStatus",
    "ServeStatus",
    "add_worker",
    "batch",
    "controller_stats",
    "delete",
    "deployment",
    "get_app_handle",
    "get_deployment_handle",
    "get_multiplexed_model_id",
    "get_replica_context",
    "ingress",
    "multiplexed",
    "run",
    "shutdown",
    "start",
    "status",
]
