"""The dashboard's ASGI app (Starlette): the page, its static files and the JSON API.

Every ``/api/`` answer is JSON. An unknown app, deployment or replica is a
404 with a message, a malformed query a 400, and a request that would change
the cluster without the cluster key (header ``X-Corral-Key``) a 403.
"""

from __future__ import annotations

import hmac
import logging
from pathlib import Path
from typing import Any, Callable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from . import _views as views

log = logging.getLogger("corral.dashboard")
STATIC = Path(__file__).with_name("static")
MAX_TAIL = 10_000

SnapshotSource = Callable[[], views.Snapshot]
LogReader = Callable[[str, int], list[str]]  # (replica id, lines) -> the last lines of its log


class LogUnavailable(Exception):
    """A log that cannot be read now (its replica or worker gone, the file missing)."""


def build_app(snapshot: SnapshotSource, read_log: LogReader, key: str, delete_app: Callable[[str], None]) -> Any:
    """The dashboard app.

    Args:
        snapshot: the last sample (cheap: no controller round trip).
        read_log: the tail of a replica's log, through the cluster.
        key: the cluster key; changing requests must present it.
        delete_app: deletes an application (the one change the dashboard makes).
    """

    def api(view: Callable[..., Any]) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> JSONResponse:
            try:
                return JSONResponse(view(snapshot(), **request.path_params))
            except views.NotFound as exc:
                return _error(404, str(exc))

        return endpoint

    async def logs(request: Request) -> JSONResponse:
        replica_id = request.path_params["replica_id"]
        raw = request.query_params.get("tail", "200")
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_TAIL:
            return _error(400, f"tail must be a whole number from 1 to {MAX_TAIL}, got {raw!r}")
        try:
            where = views.replica(snapshot(), replica_id)
        except views.NotFound as exc:
            return _error(404, str(exc))
        try:
            lines = read_log(replica_id, int(raw))
        except LogUnavailable as exc:
            return JSONResponse({"replica": where, "lines": [], "error": str(exc)})
        return JSONResponse({"replica": where, "lines": lines, "error": None})

    async def delete(request: Request) -> JSONResponse:
        name = request.path_params["app"]
        try:
            views.application(snapshot(), name)
        except views.NotFound as exc:
            return _error(404, str(exc))
        delete_app(name)
        return JSONResponse({"deleted": name})

    async def page(_request: Request) -> FileResponse:
        return FileResponse(STATIC / "index.html")

    async def not_found(request: Request, exc: Exception) -> JSONResponse:
        if isinstance(exc, HTTPException):
            return _error(exc.status_code, str(exc.detail))
        log.exception("dashboard: %s %s failed", request.method, request.url.path)
        return _error(500, f"internal error: {type(exc).__name__}: {exc}")

    routes = [
        Route("/", page),
        Route("/api/cluster", api(lambda snap: views.cluster(snap))),
        Route("/api/applications", api(lambda snap: views.applications(snap))),
        Route("/api/applications/{app}", api(lambda snap, app: views.application(snap, app))),
        Route("/api/applications/{app}", delete, methods=["DELETE"]),
        Route("/api/applications/{app}/deployments/{name}", api(lambda snap, app, name: views.deployment(snap, app, name))),
        Route("/api/replicas/{replica_id}", api(lambda snap, replica_id: views.replica(snap, replica_id))),
        Route("/api/replicas/{replica_id}/logs", logs),
        Route("/api/gangs", api(lambda snap: views.gangs(snap))),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: not_found, Exception: not_found})

    async def guarded(scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Only reading is open: any other method on the API needs the key."""
        if scope["type"] == "http" and scope["method"] not in ("GET", "HEAD") and scope["path"].startswith("/api/"):
            presented = dict(scope.get("headers") or []).get(b"x-corral-key", b"").decode("latin-1")
            if not hmac.compare_digest(presented, key):
                response = _error(403, "the dashboard is read-only: changing the cluster needs the cluster key (header X-Corral-Key)")
                await response(scope, receive, send)
                return
        await app(scope, receive, send)

    return guarded  # type: ignore[return-value]


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)
