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
"""

from ._api import (
    DeployFailedError,
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
from ._gangs import GangSchedulingConfig
from ._handle import DeploymentHandle, DeploymentResponse, DeploymentResponseGenerator
from ._router import BackPressureError, DeploymentNotFoundError, ReplicaDiedError, RouterStatistics
from ._options import DeploymentConfig, DeploymentOptionError
from ._recovery import CheckpointError
from ._replica import ReplicaStoppingError
from ._store import StoreError
from ._status import ApplicationStatusOverview, DeploymentStatusOverview, NodeStatus, ReservationStatus, ServeStatus

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
    "ReplicaContext",
    "ReplicaStoppingError",
    "ReservationStatus",
    "ServeStatus",
    "add_worker",
    "controller_stats",
    "delete",
    "deployment",
    "get_app_handle",
    "get_deployment_handle",
    "get_replica_context",
    "run",
    "shutdown",
    "start",
    "status",
]
