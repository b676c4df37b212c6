"""A replica in its own process: what the zygote's child runs.

The node agent sends a :class:`ReplicaPlan` and keeps one end of a pipe; the
child answers on it (``("ready", address, pid)`` or ``("failed", text)``),
then waits on it for ``("stop", timeout_s)``. End of file on the pipe means
the worker is gone: the child exits at once (in-flight requests fail as
the worker's own would), so no replica outlives its worker.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import traceback
from dataclasses import dataclass
from typing import Any

import msgpack

from protocol import DeploymentSpec, decode_fields
from transport import ipc_path

from ..._config import config_from_json
from ..._logging import configure_logging
from ..._future import Future
from ..._system import ActorSystem
from .._context import GangContext, ReplicaContext
from ..client._session import attach
from ._replica import Replica, drain_message

_STOP_GRACE_S = 2.0


@dataclass(frozen=True)
class ReplicaPlan:
    """Everything a replica process needs, in plain values (it crosses a pipe).

    Attributes:
        replica_id, node_id: who it is and which worker started it.
        spec: the deployment spec, msgpack-encoded (``encode_fields``).
        gang: the gang context fields, or None.
        controller: ``ADDRESS#controller``.
        config_json: the worker's :class:`Config` as JSON.
        env: environment variables set before any user code is imported
            (``CUDA_VISIBLE_DEVICES`` among them).
        start_timeout_s: the longest the constructor may take.
    """

    replica_id: str
    node_id: str
    spec: bytes
    gang: dict[str, Any] | None
    controller: str
    config_json: str
    env: dict[str, str]
    start_timeout_s: float
    log_file: str = ""  # where its standard output and error go ("" : its worker's)


def run_replica_process(plan: ReplicaPlan, conn: Any) -> None:
    """The child's main: construct the replica, report, serve until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C is for the worker, which stops us
    if plan.log_file:
        _write_to(plan.log_file)
        try:
            configure_logging(f"replica {plan.replica_id}", config_from_json(plan.config_json).log_format)
        except ValueError:
            configure_logging(f"replica {plan.replica_id}")
    os.environ.update(plan.env)
    try:
        spec = decode_fields(DeploymentSpec, msgpack.unpackb(plan.spec, raw=False, strict_map_key=False), "spec")
        config = config_from_json(plan.config_json)
    except Exception as exc:
        _send(conn, ("failed", f"bad replica plan: {exc}"))
        os._exit(1)
    system = ActorSystem(config)
    session = attach(system, system.ref(plan.controller), config, own_system=True)
    gang = GangContext(**plan.gang) if plan.gang else None
    context = ReplicaContext(plan.replica_id, spec.name, spec.app, plan.node_id, gang)
    ready: Future[bool] = Future(f"start of replica {plan.replica_id}")
    stopped = threading.Event()
    ref = system.spawn(Replica, spec, context, ready, session, name=f"replica/{plan.replica_id}")
    system.watch(ref, lambda _ref, _why: stopped.set())
    try:
        ready.get(plan.start_timeout_s)
    except BaseException as exc:
        _send(conn, ("failed", _describe(exc)))
        _exit(session, system, 1)
    _send(conn, ("ready", system.address, os.getpid()))
    code = _serve_until_stopped(conn, ref, stopped, system.address)
    _exit(session, system, code)


def _write_to(path: str) -> None:
    """Standard output and error (Python's and the C level's) appended to ``path``, line by line."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(line_buffering=True)
        except (AttributeError, ValueError):
            pass


def _serve_until_stopped(conn: Any, ref: Any, stopped: threading.Event, address: str) -> int:
    while not stopped.is_set():
        try:
            if not conn.poll(0.5):
                continue
            command = conn.recv()
        except (EOFError, OSError):
            # the worker is gone, and its replicas with it (the controller replaces them): at once,
            # leaving no socket file behind
            path = ipc_path(address)
            if path is not None:
                with contextlib.suppress(OSError):
                    os.unlink(path)
            os._exit(1)
        if isinstance(command, tuple) and command and command[0] == "stop":
            timeout_s = float(command[1])
            try:
                ref.tell(drain_message(timeout_s))
            except Exception:
                return 0  # already stopped
            stopped.wait(timeout_s + _STOP_GRACE_S)
            return 0
    return 1  # the replica stopped without being asked (it failed)


def _exit(session: Any, system: ActorSystem, code: int) -> None:
    try:
        session.close()
        system.shutdown()
    finally:
        os._exit(code)  # no atexit hooks of the zygote's modules, no lingering threads


def _send(conn: Any, message: tuple[Any, ...]) -> None:
    try:
        conn.send(message)
    except (OSError, ValueError):
        pass  # the worker is gone; the pipe's end of file stops us


def _describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    if exc.__traceback__ is None:
        return text
    return f"{text}\n{''.join(traceback.format_exception(exc)).rstrip()}"
