"""The public functions of ``actors.serve``, named as in Ray Serve."""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from typing import Any

from protocol import DeleteApp, DeployApp
from transport import load_keys

from .._config import Config
from .._errors import RemoteError
from ._app import Application, build_application
from ._handle import DeploymentHandle
from ._router import DeployFailedError, DeploymentNotFoundError
from ._options import DeploymentOptionError
from ._session import client_bind_host, close_session, connect, current_session, has_session, start_embedded
from ._status import ServeStatus, from_info

log = logging.getLogger("corral.serve")

_POLL_S = 0.02


def start(
    workers: int | list[dict[str, float]] = 2,
    *,
    address: str | None = None,
    keys: str | None = None,
    config: Config | None = None,
) -> None:
    """Start serving in this process, or connect to a running cluster.

    Args:
        workers: how many worker processes to start (each declares this
            machine's cores as CPU), or one resources dict per worker, e.g.
            ``[{"CPU": 1}, {"CPU": 1, "GPU": 2}]``.
        address: connect to the cluster at this address instead of starting one
            (``corral start`` prints it).
        keys: with ``address``: the cluster's key folder (``corral start``
            prints it); a cluster it started admits only holders of its keys.
        config: settings; None uses the defaults.

    Raises:
        ValueError: ``workers`` is malformed, or ``keys`` cannot be read.
        RuntimeError: serve already runs in this process, or a worker failed to start.
        ConnectionError: nothing answers at ``address``.
    """
    config = config or Config()
    if address is not None:
        transport = config.transport
        if keys is not None:
            try:
                transport = dataclasses.replace(transport, curve=load_keys(keys))
            except (OSError, ValueError) as exc:
                raise ValueError(f"keys: cannot read the cluster's keys from {keys}: {exc}") from None
        if transport.host is None:
            transport = dataclasses.replace(transport, host=client_bind_host(address))
        connect(address, dataclasses.replace(config, transport=transport))
        return
    if keys is not None:
        raise ValueError("keys: only with address=, to connect to a running cluster")
    start_embedded(_worker_resources(workers), config)


def _worker_resources(workers: int | list[dict[str, float]]) -> list[dict[str, float]]:
    if isinstance(workers, bool) or not isinstance(workers, (int, list)):
        raise ValueError(f"workers: expected a count or a list of resource dicts, got {workers!r}")
    if isinstance(workers, int):
        if workers < 0:
            raise ValueError(f"workers: expected a count >= 0, got {workers}")
        return [{"CPU": float(os.cpu_count() or 1)} for _ in range(workers)]
    out = []
    for i, resources in enumerate(workers):
        if not isinstance(resources, dict):
            raise ValueError(f"workers[{i}]: expected a dict of resource amounts, got {resources!r}")
        for name, amount in resources.items():
            if isinstance(amount, bool) or not isinstance(amount, (int, float)) or amount < 0:
                raise ValueError(f"workers[{i}][{name!r}]: expected a number >= 0, got {amount!r}")
        out.append({"CPU": float(os.cpu_count() or 1), **{k: float(v) for k, v in resources.items()}})
    return out


def add_worker(resources: dict[str, float] | None = None) -> str:
    """Start one more worker process for the embedded head; returns its node id."""
    (checked,) = _worker_resources([resources or {}])
    return current_session().add_worker(checked)


def run(
    target: Application,
    *,
    name: str = "default",
    route_prefix: str | None = None,
    wait_for_ready: bool = True,
    timeout_s: float | None = None,
) -> DeploymentHandle:
    """Deploy (or update) an application and return a handle to its ingress.

    Starts an embedded cluster with 2 workers first if serve is not running.

    Args:
        target: ``Deployment.bind(...)``.
        name: the application's name.
        route_prefix: accepted for Ray Serve compatibility; corral has no HTTP proxy.
        wait_for_ready: wait until every deployment reached its target.
        timeout_s: how long to wait; None uses ``ServeSettings.run_timeout_s``.

    Raises:
        DeploymentOptionError: an option or class is invalid (nothing is deployed).
        TypeError: a bound argument cannot be encoded (the message names it).
        DeployFailedError: the application ended in DEPLOY_FAILED.
        TimeoutError: not ready in time.
    """
    if not isinstance(name, str) or not name or "#" in name:
        raise ValueError(f"application name must be a non-empty string without '#', got {name!r}")
    specs, ingress = build_application(target, name)
    if not has_session():
        log.info("serve is not started: starting an embedded cluster with 2 workers")
        start()
    session = current_session()
    try:
        session.ask_controller(DeployApp(name, ingress, specs))
    except RemoteError as exc:
        if exc.type_name.endswith("DeploymentOptionError"):
            raise DeploymentOptionError(str(exc)) from None
        if exc.type_name in ("ValueError", "RuntimeError"):
            raise
        raise RuntimeError(f"deploying {name!r} failed: {exc}") from exc
    if wait_for_ready:
        _wait_for_app(name, timeout_s if timeout_s is not None else session.config.serve.run_timeout_s)
        return _attached(name, ingress)
    return DeploymentHandle(name, ingress)


def _wait_for_app(name: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    pause = threading.Event()
    while True:
        app = status().applications.get(name)
        if app is None:
            raise DeploymentNotFoundError(f"application {name!r} disappeared while deploying")
        if app.status == "DEPLOY_FAILED":
            raise DeployFailedError(f"deploying application {name!r} failed: {app.message}")
        if app.status == "RUNNING" and all(d.status == "HEALTHY" for d in app.deployments.values()):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"application {name!r} was not ready after {timeout_s}s: {app.status} {app.message}")
        pause.wait(_POLL_S)


def status() -> ServeStatus:
    """Every application's and deployment's status, and the worker nodes."""
    return from_info(current_session().status_info())


def delete(name: str, _blocking: bool = True, timeout_s: float | None = None) -> None:
    """Delete an application: its replicas stop (gracefully) and it disappears.

    Deleting an application that does not exist does nothing.

    Raises:
        TimeoutError: it was not gone within ``timeout_s``.
    """
    session = current_session()
    session.ask_controller(DeleteApp(name))
    if not _blocking:
        return
    deadline = time.monotonic() + (timeout_s if timeout_s is not None else session.config.serve.run_timeout_s)
    pause = threading.Event()
    while name in status().applications:
        if time.monotonic() > deadline:
            raise TimeoutError(f"application {name!r} was not deleted within the timeout")
        pause.wait(_POLL_S)


def shutdown() -> None:
    """Stop serving in this process: workers started here exit; a connection is closed."""
    close_session()


def get_app_handle(name: str) -> DeploymentHandle:
    """A handle to an application's ingress deployment.

    Raises:
        DeploymentNotFoundError: no such application.
    """
    app = status().applications.get(name)
    if app is None:
        raise DeploymentNotFoundError(f"no application named {name!r}")
    return _attached(name, app.ingress)


def get_deployment_handle(deployment_name: str, app_name: str = "default") -> DeploymentHandle:
    """A handle to one deployment of an application.

    Raises:
        DeploymentNotFoundError: no such application or deployment.
    """
    app = status().applications.get(app_name)
    if app is None or deployment_name not in app.deployments:
        raise DeploymentNotFoundError(f"no deployment {deployment_name!r} in application {app_name!r}")
    return _attached(app_name, deployment_name)


def _attached(app_name: str, deployment_name: str) -> DeploymentHandle:
    """A handle that knows its replicas from the start, so it serves even if the
    controller goes down before its first request."""
    router = current_session().router(app_name, deployment_name)
    return DeploymentHandle(app_name, deployment_name, _router=router)


def controller_stats(reset: bool = False) -> dict[str, Any]:
    """The controller's loop timings and counters (for benchmarks and debugging).

    Args:
        reset: start a new measurement window after answering.
    """
    from protocol import GetControllerStats

    return current_session().ask_controller(GetControllerStats(reset))  # type: ignore[no-any-return]
