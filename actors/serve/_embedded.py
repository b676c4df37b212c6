"""The embedded head: a controller in this process and worker processes around it.

``serve.start(workers=...)`` builds it; the controller (head package), the
workers' command line (worker package) and this process's session (client
package) meet here, so none of those packages imports another.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
import threading
import time

from .._config import Config, config_to_json
from .._system import ActorSystem
from ._names import CONTROLLER_NAME
from .client._proxy_server import PROXY_ACTOR, HttpProxy
from .client._session import Session, attach
from .head._controller import ClearCheckpoint, Controller
from .head._store import load_checkpoint, open_store
from .worker._args import worker_args

log = logging.getLogger("corral.serve")


class WorkerProcess:
    """A worker started by this process; it exits when our pipe to it closes."""

    def __init__(self, node_id: str, controller: str, resources: dict[str, float], config: Config) -> None:
        self.node_id = node_id
        env = dict(os.environ)
        paths = [p for p in sys.path if p and os.path.isdir(p)]
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys([*paths, env.get("PYTHONPATH", "")]))
        self.proc = subprocess.Popen(
            [sys.executable, *worker_args(controller, node_id, json.dumps(resources), config_to_json(_worker_config(config)))],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.address = ""

    def wait_ready(self, deadline: float) -> None:
        """Wait for the worker to print its address.

        Raises:
            RuntimeError: it exited or did not register in time.
        """
        box: list[str] = []
        reader = threading.Thread(target=lambda: box.append(self.proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(max(0.0, deadline - time.monotonic()))
        line = box[0] if box else ""
        if not line.startswith("ADDRESS "):
            code = self.proc.poll()
            self.kill()
            state = f"exited with code {code}" if code is not None else "did not register in time"
            raise RuntimeError(f"worker {self.node_id} {state}")
        self.address = line.split()[1]

    def stop(self, timeout: float) -> None:
        """Close the pipe (the worker stops its replicas and exits); kill after ``timeout``."""
        if self.proc.poll() is None and self.proc.stdin is not None:
            try:
                self.proc.stdin.close()
            except BrokenPipeError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("worker %s did not stop within %.1fs; killing it", self.node_id, timeout)
        self.kill()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None and not stream.closed:
                try:
                    stream.close()
                except BrokenPipeError:
                    pass


def _worker_config(config: Config) -> Config:
    """A worker binds its own endpoint: never the head's fixed TCP port."""
    if config.transport.port == 0:
        return config
    return dataclasses.replace(config, transport=dataclasses.replace(config.transport, port=0))


def start_embedded(workers: list[dict[str, float]], config: Config) -> Session:
    """Start a controller in this process and one worker process per resources dict.

    Raises:
        CheckpointError, StoreError: the configured checkpoint cannot be used.
        RuntimeError: a worker did not start.
    """
    settings = config.serve
    fresh = settings.checkpoint_recovery == "fresh"
    store = open_store(settings.checkpoint_store, fresh) if settings.checkpoint_store else None
    try:
        restored = load_checkpoint(store, settings.checkpoint_recovery)
    except BaseException:
        if store is not None:
            store.close()
        raise
    system = ActorSystem(config)
    session: Session | None = None
    try:
        controller = system.spawn(Controller, settings, store, restored, name=CONTROLLER_NAME)
        session = attach(system, controller, config, own_system=True)
        session.on_close(lambda: _stop_head(session))  # type: ignore[arg-type]
        deadline = time.monotonic() + config.serve.worker_start_timeout_s
        for i, resources in enumerate(workers):
            session.workers.append(WorkerProcess(f"worker-{i}", str(controller), resources, config))
        for worker in session.workers:
            worker.wait_ready(deadline)
        if config.http.proxy_location != "Disabled":
            proxy = system.spawn(HttpProxy, session, config.http, "head", config.http.proxy_location == "EveryNode",
                                 name=PROXY_ACTOR)
            session.on_close(lambda: system.stop(proxy), first=True)  # no new requests while the rest stops
    except BaseException:
        for worker in session.workers if session is not None else []:
            worker.kill()
        system.shutdown()
        raise
    return session


def add_worker(session: Session, resources: dict[str, float], node_id: str | None = None) -> str:
    """Start one more worker process for an embedded head; returns its node id.

    Raises:
        RuntimeError: this process runs no embedded head, or the worker did not start.
    """
    if not session.own_system or session.system.ref(session.system.address, CONTROLLER_NAME) != session.controller:
        raise RuntimeError("serve.add_worker() needs the embedded head started by serve.start(workers=...)")
    node_id = node_id or f"worker-{len(session.workers)}"
    worker = WorkerProcess(node_id, str(session.controller), resources, session.config)
    session.workers.append(worker)
    worker.wait_ready(time.monotonic() + session.config.serve.worker_start_timeout_s)
    return node_id


def _stop_head(session: Session) -> None:
    if session.workers:
        # this shutdown stops every worker: there is nothing left to recover
        try:
            session.controller.ask(ClearCheckpoint(), timeout=session.config.serve.control_timeout_s).get()
        except Exception as exc:
            log.warning("the controller's checkpoint was not cleared: %s", exc)
    # the controller goes first, so it does not replace replicas of workers that are leaving
    session.system.stop(session.controller)
    for worker in session.workers:
        worker.stop(session.config.stop_timeout_s)
