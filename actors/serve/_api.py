"""The public functions of ``actors.serve``, named as in Ray Serve.

This is the composition root: the one place that remembers this process's
session between calls (Ray Serve's API takes none), builds it with
``serve.start`` and closes it with ``serve.shutdown`` or at exit. Everything
below receives the session it works for; nothing else reaches for it.
"""

from __future__ import annotations

import atexit
import dataclasses
import logging
import os
import signal
import sys
import threading
import time
from typing import Any

from protocol import DeleteApp, DeployApp, HasPackage, UploadPackage
from transport import load_keys

from .._config import Config, HttpOptions
from .._errors import RemoteError
from ._app import Application, build_application
from ._errors import DeployFailedError, DeploymentNotFoundError
from ._options import DeploymentOptionError
from ._packages import PackageError, check_runtime_env, pack_runtime_env
from ._progress import Progress
from ._progress import wanted as progress_wanted
from ._routes import check_route_prefix
from ._status import ServeStatus, from_info
from .client._handle import DeploymentHandle
from .client._session import Session, client_bind_host, connect

log = logging.getLogger("corral.serve")

_POLL_S = 0.02

_session: Session | None = None
_session_lock = threading.RLock()
_local: Any = None  # the LocalRuntime of serve.run(..., _local_testing_mode=True), made on first use
_exit_hook_installed = False


def current_session() -> Session:
    """The session of this process.

    Raises:
        RuntimeError: serve was not started or connected here.
    """
    session = _session
    if session is None:
        raise RuntimeError("corral serve is not running in this process: call serve.start() first")
    return session


def has_session() -> bool:
    """Whether serve was started or connected in this process."""
    return _session is not None


def _adopt(session: Session) -> None:
    global _session
    _session = session
    DeploymentHandle.session_provider = current_session  # handles that user code builds directly
    _install_exit_hook()


def close_session() -> None:
    """Stop what this process started (workers, its actor system) and forget the session."""
    global _session
    with _session_lock:
        session, _session = _session, None
    if session is not None:
        session.close()


def _install_exit_hook() -> None:
    """Make the process exit normally when its main thread ends without
    ``serve.shutdown()`` (a forgotten call, an uncaught exception, Ctrl-C):
    actor threads are daemons, and this hook shuts the session down first."""
    global _exit_hook_installed
    if not _exit_hook_installed:
        _exit_hook_installed = True
        atexit.register(_close_at_exit)


def _close_at_exit() -> None:
    session = _session
    if session is None:
        return
    if threading.current_thread() is threading.main_thread():
        try:
            signal.signal(signal.SIGINT, _exit_at_once)  # a second Ctrl-C does not wait for the clean-up
        except ValueError:
            pass
    bound = session.config.serve.exit_timeout_s
    closer = threading.Thread(target=close_session, name="serve-exit", daemon=True)
    closer.start()
    closer.join(min(1.0, bound))
    if closer.is_alive():
        print("corral: shutting serve down before exiting (Ctrl-C again to exit at once)", file=sys.stderr, flush=True)
        closer.join(max(0.0, bound - 1.0))
    if closer.is_alive():
        print(f"corral: serve did not shut down within {bound:g}s at exit; exiting anyway", file=sys.stderr, flush=True)


def _exit_at_once(_signum: int, _frame: Any) -> None:
    print("corral: interrupted again; exiting without finishing the shutdown", file=sys.stderr, flush=True)
    os._exit(130)




def start(
    workers: int | list[dict[str, float]] = 2,
    *,
    address: str | None = None,
    keys: str | None = None,
    config: Config | None = None,
    http_options: dict[str, Any] | HttpOptions | None = None,
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
        http_options: the HTTP proxies' settings (``host``, ``port``,
            ``proxy_location``, ``request_timeout_s``... see
            :class:`~actors.HttpOptions`); overrides ``config.http``. Only
            for a cluster started here: a connecting process runs no proxy.

    Raises:
        ValueError: ``workers`` or an HTTP option is malformed, or ``keys`` cannot be read.
        RuntimeError: serve already runs in this process, a worker failed to
            start, or the HTTP proxy cannot listen on its port.
        ConnectionError: nothing answers at ``address``.
    """
    with _session_lock:
        if _session is not None:
            raise RuntimeError("serve is already started in this process; call serve.shutdown() first")
        config = config or Config()
        if http_options is not None:
            config = dataclasses.replace(config, http=HttpOptions.from_dict(http_options))
        _adopt(_start(workers, address, keys, config))


def _start(workers: int | list[dict[str, float]], address: str | None, keys: str | None, config: Config) -> Session:
    if address is not None:
        transport = config.transport
        if keys is not None:
            try:
                transport = dataclasses.replace(transport, curve=load_keys(keys))
            except (OSError, ValueError) as exc:
                raise ValueError(f"keys: cannot read the cluster's keys from {keys}: {exc}") from None
        if transport.host is None:
            transport = dataclasses.replace(transport, host=client_bind_host(address))
        return connect(address, dataclasses.replace(config, transport=transport))
    if keys is not None:
        raise ValueError("keys: only with address=, to connect to a running cluster")
    resources = _worker_resources(workers)
    from ._embedded import (
        start_embedded,  # only a process that runs the head imports the head
    )

    return start_embedded(resources, config)


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
    from ._embedded import add_worker as add_embedded_worker

    (checked,) = _worker_resources([resources or {}])
    return add_embedded_worker(current_session(), checked)


def run(
    target: Application,
    *,
    name: str = "default",
    route_prefix: str | None = "/",
    wait_for_ready: bool = True,
    timeout_s: float | None = None,
    runtime_env: dict[str, Any] | None = None,
    _local_testing_mode: bool = False,
) -> DeploymentHandle:
    """Deploy (or update) an application and return a handle to its ingress.

    Starts an embedded cluster with 2 workers first if serve is not running.

    Args:
        target: ``Deployment.bind(...)``.
        name: the application's name.
        route_prefix: where the HTTP proxies serve the ingress (``"/"``:
            the root); None: not over HTTP. Two applications cannot share one.
        wait_for_ready: wait until every deployment reached its target.
        timeout_s: how long to wait; None uses ``ServeSettings.run_timeout_s``.
        runtime_env: code shipped to the cluster with the application:
            ``{"working_dir": PATH, "py_modules": [PATH...], "excludes": [PATTERN...]}``
            (see :mod:`actors.serve._packages`); uploaded once per content.
        _local_testing_mode: construct the application in this process, with
            no cluster (Ray Serve's name): for unit tests, and deployments
            defined inside a test function. Returns a local handle.

    Raises:
        DeploymentOptionError: an option or class is invalid (nothing is deployed).
        ValueError: ``route_prefix`` is malformed or another application serves it.
        TypeError: a bound argument cannot be encoded (the message names it).
        PackageError: a ``runtime_env`` that cannot be shipped (before anything is deployed).
        DeployFailedError: the application ended in DEPLOY_FAILED.
        TimeoutError: not ready in time.
    """
    if not isinstance(name, str) or not name or "#" in name:
        raise ValueError(f"application name must be a non-empty string without '#', got {name!r}")
    check_route_prefix(route_prefix)
    if _local_testing_mode:
        return _run_locally(target, name, timeout_s if timeout_s is not None else 60.0)
    env = check_runtime_env(runtime_env)
    packages = pack_runtime_env(env) if env else []
    own: dict[int, list[Any]] = {}

    def own_packages(deployment: Any) -> tuple[list[str], list[str]]:
        if id(deployment) not in own:
            own[id(deployment)] = pack_runtime_env(deployment.runtime_env)
        return [p.digest for p in own[id(deployment)]], [p.source for p in own[id(deployment)]]

    cluster_pickles = has_session() and current_session().config.serve.serializer == "pickle"
    specs, ingress = build_application(target, name, allow_pickle=cluster_pickles, packages=[p.digest for p in packages],
                                       shipped=[p.source for p in packages], own_packages=own_packages)
    packages += [p for pkgs in own.values() for p in pkgs]
    threads = [s.name for s in specs if s.config.get("isolation") == "thread" and s.packages]
    if threads:
        raise PackageError(f"runtime_env needs replicas in their own processes: {', '.join(threads)} use isolation='thread' "
                           "(modules of different applications would clash in one process)")
    if not has_session():
        log.info("serve is not started: starting an embedded cluster with 2 workers")
        start()
    session = current_session()
    for package in packages:  # content-addressed: what the head has is not sent again
        if not session.ask_controller(HasPackage(package.digest)):
            session.ask_controller(UploadPackage(package.digest, package.data))
    try:
        session.ask_controller(DeployApp(name, ingress, specs, route_prefix))
    except RemoteError as exc:
        if exc.type_name.endswith("DeploymentOptionError"):
            raise DeploymentOptionError(str(exc)) from None
        if exc.type_name in ("ValueError", "RuntimeError"):
            raise
        raise RuntimeError(f"deploying {name!r} failed: {exc}") from exc
    if wait_for_ready:
        _wait_for_app(name, timeout_s if timeout_s is not None else session.config.serve.run_timeout_s)
        return _attached(name, ingress)
    return DeploymentHandle(name, ingress, _session=session)


def _run_locally(target: Application, name: str, timeout_s: float) -> Any:
    global _local
    if not isinstance(target, Application):
        raise TypeError(f"serve.run takes Deployment.bind(...), got {target!r}")
    from .worker._local import LocalRuntime  # only a process that tests locally loads it

    with _session_lock:
        if _local is None:
            _local = LocalRuntime()
        runtime = _local
    return runtime.run(target, name, timeout_s)


def _wait_for_app(name: str, timeout_s: float) -> None:
    with Progress(progress_wanted(quiet=False), transient=True) as progress:
        _wait_for(name, timeout_s, progress)


def _wait_for(name: str, timeout_s: float, progress: Progress) -> None:
    deadline = time.monotonic() + timeout_s
    pause = threading.Event()
    while True:
        app = _app_status(name)
        if app is not None:
            progress.show(ServeStatus(applications={name: app}), {name})
        if app is None:
            raise DeploymentNotFoundError(f"application {name!r} disappeared while deploying")
        if app.status == "DEPLOY_FAILED":
            raise DeployFailedError(f"deploying application {name!r} failed: {app.message}")
        if app.status == "RUNNING" and all(d.status == "HEALTHY" for d in app.deployments.values()):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"application {name!r} was not ready after {timeout_s}s: {app.status} {app.message}")
        pause.wait(_POLL_S)


def status(*, replicas: bool = False) -> ServeStatus:
    """Every application's and deployment's status, the worker nodes, the gang
    reservations and the HTTP proxies.

    Args:
        replicas: also a row per replica in each deployment's ``replicas``
            (state, node, process, memory, load, models, age). Off by default:
            as in Ray Serve, a deployment shows its replica counts by state,
            and the call's cost does not grow with the number of replicas.

    Returns:
        A :class:`ServeStatus`.

    Raises:
        RuntimeError: no cluster was started or connected (``serve.start``).
    """
    return from_info(current_session().status_info(None, replicas))


def _app_status(name: str) -> Any:
    """One application's status, asked for alone (its cost grows neither with the other apps nor with its replicas)."""
    return from_info(current_session().status_info(name, False)).applications.get(name)


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
    while _app_status(name) is not None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"application {name!r} was not deleted within the timeout")
        pause.wait(_POLL_S)


def shutdown() -> None:
    """Stop serving in this process: workers started here exit; a connection is
    closed; applications run in local testing mode are dropped."""
    global _local
    with _session_lock:
        local, _local = _local, None
    if local is not None:
        local.close()
    close_session()


def get_app_handle(name: str) -> DeploymentHandle:
    """A handle to an application's ingress deployment.

    Raises:
        DeploymentNotFoundError: no such application.
    """
    app = _app_status(name)
    if app is None:
        raise DeploymentNotFoundError(f"no application named {name!r}")
    return _attached(name, app.ingress)


def get_deployment_handle(deployment_name: str, app_name: str = "default") -> DeploymentHandle:
    """A handle to one deployment of an application.

    Raises:
        DeploymentNotFoundError: no such application or deployment.
    """
    app = _app_status(app_name)
    if app is None or deployment_name not in app.deployments:
        raise DeploymentNotFoundError(f"no deployment {deployment_name!r} in application {app_name!r}")
    return _attached(app_name, deployment_name)


def _attached(app_name: str, deployment_name: str) -> DeploymentHandle:
    """A handle that knows its replicas from the start, so it serves even if the
    controller goes down before its first request."""
    session = current_session()
    key = (app_name, deployment_name)
    handle = session.handles.get(key)
    if handle is None:  # one handle per deployment and process, as Ray Serve caches them
        handle = session.handles[key] = DeploymentHandle(app_name, deployment_name, _router=session.router(app_name, deployment_name))
    return handle


def controller_stats(reset: bool = False) -> dict[str, Any]:
    """The controller's loop timings and counters (for benchmarks and debugging).

    Args:
        reset: start a new measurement window after answering.
    """
    from protocol import GetControllerStats

    return current_session().ask_controller(GetControllerStats(reset))  # type: ignore[no-any-return]
