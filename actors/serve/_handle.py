"""Deployment handles and responses (the data plane's client side)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Generator

from protocol import HandleRequest, ReplicaInfo, SubscribeReplicas

from .._errors import ActorNotFound, RemoteError
from .._future import Future
from ._app import HANDLE_MARKER, check_encodable

if TYPE_CHECKING:
    from ._session import Session

_MAX_RESENDS = 3


class DeploymentNotFoundError(LookupError):
    """The application or deployment does not exist (or was deleted)."""


class DeploymentHandle:
    """Calls one deployment's replicas, from any process.

    ``handle.remote(...)`` calls ``__call__``; ``handle.method.remote(...)``
    or ``handle.options(method_name="method").remote(...)`` call others.
    """

    def __init__(self, app: str, deployment: str, method: str = "__call__") -> None:
        self.app_name = app
        self.deployment_name = deployment
        self.method_name = method

    def options(self, *, method_name: str | None = None) -> DeploymentHandle:
        """A handle calling another method."""
        return DeploymentHandle(self.app_name, self.deployment_name, method_name or self.method_name)

    def __getattr__(self, name: str) -> DeploymentHandle:
        if name.startswith("_"):
            raise AttributeError(name)
        return DeploymentHandle(self.app_name, self.deployment_name, name)

    def remote(self, *args: Any, **kwargs: Any) -> DeploymentResponse:
        """Send one request; returns at once with a response to wait on.

        Raises:
            TypeError: an argument cannot be encoded (the message names it).
            DeploymentNotFoundError: no such application or deployment.
            RuntimeError: serve is not started or connected in this process.
        """
        from ._session import current_session

        session = current_session()
        args_l = [_to_wire(a) for a in args]
        kwargs_d = {k: _to_wire(v) for k, v in kwargs.items()}
        check_encodable(args_l, kwargs_d, f"{self.deployment_name}.{self.method_name}.remote()")
        request = HandleRequest(self.method_name, args_l, kwargs_d)
        response = DeploymentResponse(session, self, request)
        response._send(set())
        return response

    def __reduce__(self) -> Any:
        raise TypeError("handles are passed to deployments through .bind(), not pickled")

    def __repr__(self) -> str:
        return f"DeploymentHandle(app={self.app_name!r}, deployment={self.deployment_name!r}, method={self.method_name!r})"


def _to_wire(value: Any) -> Any:
    if isinstance(value, DeploymentHandle):
        return {HANDLE_MARKER: [value.app_name, value.deployment_name]}
    if isinstance(value, DeploymentResponse):
        return value.result()
    return value


class DeploymentResponse:
    """The eventual result of ``handle.remote(...)``: ``.result()`` or ``await``."""

    def __init__(self, session: Session, handle: DeploymentHandle, request: HandleRequest) -> None:
        self._session = session
        self._handle = handle
        self._request = request
        self._future: Future[Any] | None = None
        self._replica: ReplicaInfo | None = None
        self._deadline = time.monotonic() + session.config.serve.request_timeout_s

    def _send(self, exclude: set[str]) -> None:
        session = self._session
        key = (self._handle.app_name, self._handle.deployment_name)
        table = session.routes
        if table.get(key) is None:
            session.subscribe(key)
        replica_set = table.wait_for_replicas(key, self._deadline)
        if not replica_set.exists:
            raise DeploymentNotFoundError(f"no deployment {key[1]!r} in application {key[0]!r}")
        replica = table.choose(replica_set.replicas, exclude) or table.choose(replica_set.replicas, set())
        assert replica is not None
        table.started(replica.replica_id)
        self._replica = replica
        ref = session.system.ref(replica.address, replica.actor)
        timeout = max(0.001, self._deadline - time.monotonic())
        try:
            self._future = ref.ask(self._request, timeout=timeout)
        except Exception:
            table.finished(replica.replica_id)
            raise
        self._future.add_done_callback(lambda _: table.finished(replica.replica_id))

    def result(self, timeout_s: float | None = None) -> Any:
        """Wait for the result.

        Raises:
            TimeoutError: nothing within ``timeout_s`` (or the request deadline).
            Exception: the error the method raised, with its remote traceback.
        """
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        tried: set[str] = set()
        for attempt in range(_MAX_RESENDS + 1):
            assert self._future is not None
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                return self._future.get(remaining)
            except (ActorNotFound, RemoteError) as exc:
                if not _not_delivered(exc) or attempt == _MAX_RESENDS:
                    raise
                assert self._replica is not None
                tried.add(self._replica.replica_id)
                self._send(tried)
        raise AssertionError("unreachable")

    def __await__(self) -> Generator[Any, None, Any]:
        assert self._future is not None
        try:
            return (yield from self._future.__await__())
        except (ActorNotFound, RemoteError) as exc:
            if not _not_delivered(exc):
                raise
        return self.result()


def _not_delivered(exc: Exception) -> bool:
    """Whether the request certainly did not run (safe to send elsewhere)."""
    if isinstance(exc, ActorNotFound):
        return True
    return isinstance(exc, RemoteError) and exc.type_name.endswith("ReplicaStoppingError")
