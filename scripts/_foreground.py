"""``corral start --foreground``: the head, or with ``--join`` one worker, run
in this process until SIGTERM or SIGINT, logging to standard error, as a
container's PID 1 wants; and ``corral health``, the probe a container
orchestrator runs.

    corral start --foreground --host 0.0.0.0 --advertise head --keys /run/secrets/corral
    corral start --foreground --join tcp://head:6390 --keys /run/secrets/corral --host $POD_IP
    corral health --address tcp://head:6390 --keys /run/secrets/corral [--node NODE_ID]

A worker that cannot reach the head exits non-zero after the controller's
start timeout, saying so, so that the orchestrator starts it again.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
import time
from typing import Any, Callable

from actors.serve.worker._args import worker_args
from actors.serve.worker._main import main as worker_main
from transport import generate_keys

from ._cluster_files import DEFAULT_PORT, cluster_dir, dashboard_key
from ._head import head_args
from ._head import main as head_main


def run_head(args: argparse.Namespace, http: dict[str, Any], settings: str) -> int:
    """The head in this process (``--workers`` must be 0: workers join with ``--foreground --join``).

    Returns:
        The head's exit code.
    """
    port = args.port or DEFAULT_PORT
    folder = cluster_dir(port)
    keys = args.keys or str(folder / "keys")
    if not args.keys and not (folder / "keys").is_dir():
        generate_keys(keys)
    advertise = args.advertise or _own_address(args.host or "0.0.0.0")
    transport = {"advertise_host": advertise} if advertise else {}
    argv = head_args(port, str(folder / "ready.json"), args.host or "0.0.0.0", args.store or f"sqlite:///{folder / 'checkpoint.sqlite'}",
                     "auto", settings, json.dumps(transport), keys=keys, metrics_port=args.metrics_port, http=json.dumps(http),
                     dashboard_port=None if args.no_dashboard else args.dashboard_port,
                     dashboard_key_file=str(dashboard_key(folder)), log_dir=str(folder / "logs"), log_format=args.log_format)
    return head_main(argv[2:])  # after "-m scripts._head"


def run_worker(args: argparse.Namespace, curve: dict[str, Any] | None) -> int:
    """One worker in this process, joining ``args.join`` (``curve``: the cluster's
    keys, as a dict); returns its exit code (non-zero when it cannot register with the head)."""
    address = _resolved(args.join, float(json.loads(args.settings).get("worker_start_timeout_s", 60.0)))
    if address is None:
        print(f"error: cannot resolve the head's host in {args.join}", file=sys.stderr, flush=True)
        return 1
    node_id = args.node_id or socket.gethostname()
    transport: dict[str, Any] = {"host": args.host or "0.0.0.0"}
    advertise = args.advertise or _own_address(transport["host"])
    if advertise:
        transport["advertise_host"] = advertise
    if curve:
        transport["curve"] = curve
    config = json.dumps({"transport": transport, "serve": json.loads(args.settings), "log_format": args.log_format})
    folder = cluster_dir(int(address.rsplit(":", 1)[1]) if address.startswith("tcp://") else DEFAULT_PORT)
    argv = worker_args(f"{address}#controller", node_id, args.resources, config, detached=True, log_dir=str(folder / "logs"))
    return worker_main(argv[2:])  # after "-m actors.serve.worker"


def health(connect: Callable[[], Any], node: str | None) -> tuple[int, str]:
    """``(exit code, one line)``: 0 when the controller answers (and, with ``node``, knows that worker)."""
    try:
        conn = connect()
    except Exception as exc:
        return 1, f"unhealthy: {exc}"
    try:
        status = conn.serve.status()
        nodes = {n.node_id for n in status.nodes}
        if node is not None and node not in nodes:
            return 1, f"unhealthy: the controller does not know worker {node!r} (it knows {', '.join(sorted(nodes)) or 'none'})"
        return 0, f"ok: {len(status.applications)} applications, {len(nodes)} workers"
    except Exception as exc:
        return 1, f"unhealthy: {exc}"
    finally:
        conn.close()


def _own_address(host: str) -> str | None:
    """What peers should dial when this process binds a wildcard: the address
    its host name resolves to (a container's or a pod's own IP)."""
    if host not in ("0.0.0.0", "*", "::"):
        return None
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return None


def _resolved(address: str, timeout_s: float) -> str | None:
    """``address`` with its host name resolved to an IP (the head advertises its IP:
    replies come from the address dialled), retried while the name is not known
    yet (the head's container or pod starting), at most ``timeout_s``; None if it never is."""
    if not address.startswith("tcp://"):
        return address
    host, _, port = address[len("tcp://"):].rpartition(":")
    deadline = time.monotonic() + timeout_s
    pause = threading.Event()
    while True:
        try:
            return f"tcp://{socket.gethostbyname(host)}:{port}"
        except OSError:
            if time.monotonic() > deadline:
                return None
            pause.wait(1.0)
