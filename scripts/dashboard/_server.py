"""The dashboard in a head process: a sampler thread that asks the controller
what Prometheus is fed (status and request counters) every ``sample_s`` into
the history, and uvicorn on its own thread serving the app."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from typing import Any

import uvicorn

from actors import serve
from actors.serve._status import from_info
from actors.serve._names import NODE_ACTOR
from actors.serve.client._session import Session
from protocol import GetControllerStats, GetStatus, ReadReplicaLog

from ._app import LogUnavailable, build_app
from ._history import DeploymentSample, History
from ._views import NotFound, Snapshot, replica

log = logging.getLogger("corral.dashboard")
DEFAULT_PORT = 8265
_LOG_TIMEOUT_S = 5.0


class Dashboard:
    """Start with :meth:`start`, stop with :meth:`stop`.

    Args:
        session: the head's session (controller questions, worker asks).
        host, port: where to listen (port 0: any free port).
        key: the cluster key that changing requests must present.
        links: shown on the cluster page (address, metrics URL, log folder...).
        sample_s: how often the controller is asked (the pages' freshness).
        point_s: how often a point is added to the charts' history (an hour of them is kept).
    """

    def __init__(self, session: Session, host: str, port: int, key: str, links: dict[str, str],
                 sample_s: float = 2.0, point_s: float = 5.0) -> None:
        self.session = session
        self.host, self.port = host, port
        self.sample_s, self.point_s = sample_s, point_s
        self.history = History(window_s=3600.0, points=int(3600 / point_s))
        self.snapshot = Snapshot(links=dict(links), history=self.history)
        self._key = key
        self._stop = threading.Event()
        self._last_point = 0.0
        self._server: uvicorn.Server | None = None
        self._threads: list[threading.Thread] = []
        self.url = ""

    def start(self) -> str:
        """Listen and start sampling; returns the dashboard's URL.

        Raises:
            OSError: the port cannot be bound (in use, or not allowed).
        """
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            raise OSError(f"the dashboard cannot listen on {self.host}:{self.port}: {exc.strerror or exc}") from None
        sock.listen(128)
        self.port = sock.getsockname()[1]
        self.url = f"http://{self.host}:{self.port}"
        self.snapshot.links["dashboard"] = self.url
        self.sample_once()
        app = build_app(lambda: self.snapshot, self.read_log, self._key, self._delete_app)
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", server_header=False)
        self._server = uvicorn.Server(config)
        self._threads = [
            threading.Thread(target=self._serve, args=(sock,), name="dashboard-http", daemon=True),
            threading.Thread(target=self._sample_loop, name="dashboard-sampler", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        return self.url

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.should_exit = True
        for thread in self._threads:
            thread.join(timeout_s)

    def _serve(self, sock: socket.socket) -> None:
        assert self._server is not None
        asyncio.run(self._server.serve(sockets=[sock]))

    def _sample_loop(self) -> None:
        while not self._stop.wait(self.sample_s):
            try:
                self.sample_once()
            except Exception as exc:  # the controller busy or recovering: the pages show the last sample
                log.warning("dashboard sample failed: %s", exc)

    def sample_once(self) -> None:
        """Ask the controller once; the snapshot (and maybe the history) move on."""
        status = from_info(self.session.ask_controller(GetStatus()))
        stats = self.session.ask_controller(GetControllerStats())
        now = time.time()
        if now - self._last_point >= self.point_s:
            self._last_point = now
            totals = stats.get("requests", {})
            samples = {}
            for app_name, app in status.applications.items():
                for name, dep in app.deployments.items():
                    counters = totals.get(f"{app_name}/{name}", {})
                    samples[f"{app_name}/{name}"] = DeploymentSample(
                        dep.replica_states.get("RUNNING", 0), (dep.autoscaling or {}).get("target", dep.target_replicas),
                        counters.get("requests", 0), counters.get("errors", 0), list(counters.get("latency_buckets") or []))
            self.history.add(now, samples)
        self.history.see_nodes(now, {n.node_id: n.address for n in status.nodes})
        self.snapshot = Snapshot(now, status, stats, self.history, self.snapshot.links)

    def read_log(self, replica_id: str, tail: int) -> list[str]:
        """The last ``tail`` lines of a replica's log, asked of its worker.

        Raises:
            LogUnavailable: its worker is gone or unreachable, or the log cannot be read.
        """
        try:
            where = replica(self.snapshot, replica_id)
        except NotFound as exc:
            raise LogUnavailable(str(exc)) from None
        node = next((n for n in self.snapshot.status.nodes if n.node_id == where["node_id"]), None)
        if node is None:
            raise LogUnavailable(f"worker {where['node_id']} of replica {replica_id} is gone; its log went with it")
        try:
            ask = self.session.system.ref(node.address, NODE_ACTOR).ask(ReadReplicaLog(replica_id, tail), timeout=_LOG_TIMEOUT_S)
            answer: Any = ask.get(_LOG_TIMEOUT_S)
        except Exception as exc:
            raise LogUnavailable(f"worker {node.node_id} did not give the log of {replica_id}: {exc}") from None
        if isinstance(answer, dict) and answer.get("error"):
            raise LogUnavailable(str(answer["error"]))
        return [str(line) for line in (answer or {}).get("lines", [])]

    def _delete_app(self, name: str) -> None:
        serve.delete(name)
