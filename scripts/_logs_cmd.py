"""``corral logs [APP [DEPLOYMENT [REPLICA]]] [--tail N] [--follow]``: replica
logs read through the cluster (each replica's worker reads its own file, on
whatever host it runs), or, with no app, the head's log on this machine."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Callable

from actors.serve._api import current_session
from actors.serve._names import NODE_ACTOR
from protocol import ReadReplicaLog

FOLLOW_EVERY_S = 1.0
_ASK_TIMEOUT_S = 10.0


class LogsError(Exception):
    """What was asked for does not exist, or nothing could be read."""


def pick_replicas(status: Any, app: str, deployment: str | None, replica: str | None) -> list[tuple[str, str]]:
    """``(replica_id, node_id)`` of what the arguments name, in a stable order.

    Raises:
        LogsError: no such application, deployment or replica.
    """
    found = status.applications.get(app)
    if found is None:
        raise LogsError(f"no application {app!r}; there are: {', '.join(sorted(status.applications)) or '(none)'}")
    deployments = found.deployments
    if deployment is not None:
        if deployment not in deployments:
            raise LogsError(f"no deployment {deployment!r} in application {app!r}; there are: {', '.join(sorted(deployments))}")
        deployments = {deployment: deployments[deployment]}
    out = [(r.replica_id, r.node_id) for _, d in sorted(deployments.items()) for r in d.replicas]
    if replica is not None:
        out = [(rid, node) for rid, node in out if rid == replica or rid.endswith(f".{replica}")]
        if not out:
            raise LogsError(f"no replica {replica!r} in {app}/{deployment}")
    return out


def new_lines(seen: list[str], tail: list[str]) -> list[str]:
    """The lines of ``tail`` after the last of ``seen`` (a log read again: only what came since)."""
    for overlap in range(min(len(seen), len(tail)), 0, -1):  # the new read starts where the old one ended
        if tail[:overlap] == seen[-overlap:]:
            return tail[overlap:]
    return tail


def cmd_logs(args: argparse.Namespace, connect: Callable[[], Any], head_log: Callable[[], Path | None]) -> int:
    """Print logs (see the module docstring); returns the exit code.

    Raises:
        LogsError: bad arguments, or no log could be read.
    """
    if args.tail < 1:
        raise LogsError(f"--tail must be at least 1, got {args.tail}")
    if args.app is None:
        path = head_log()
        if path is None or not path.exists():
            raise LogsError("the head's log is on the machine that ran `corral start`; name an application to read replica logs")
        lines = path.read_text(errors="replace").splitlines()[-args.tail:]
        print("\n".join(lines))
        return 0
    conn = connect()
    try:
        status = conn.serve.status(replicas=True)
        replicas = pick_replicas(status, args.app, args.deployment, args.replica)
        nodes = {n.node_id: n.address for n in status.nodes}
        system = current_session().system
        seen: dict[str, list[str]] = {}
        failures = _print_round(system, replicas, nodes, args.tail, seen, len(replicas) > 1)
        if failures == len(replicas) and not args.follow:
            raise LogsError("no log could be read")
        while args.follow:
            time.sleep(FOLLOW_EVERY_S)
            _print_round(system, replicas, nodes, args.tail, seen, len(replicas) > 1, quiet=True)
    except KeyboardInterrupt:
        return 0
    finally:
        conn.close()
    return 0


def _print_round(system: Any, replicas: list[tuple[str, str]], nodes: dict[str, str], tail: int,
                 seen: dict[str, list[str]], prefix: bool, quiet: bool = False) -> int:
    failures = 0
    for replica_id, node_id in replicas:
        address = nodes.get(node_id)
        if address is None:
            failures += 1
            if not quiet:
                print(f"{replica_id}: its worker {node_id} is gone; its log went with it", file=sys.stderr)
            continue
        try:
            answer = system.ref(address, NODE_ACTOR).ask(ReadReplicaLog(replica_id, tail), timeout=_ASK_TIMEOUT_S).get(_ASK_TIMEOUT_S)
        except Exception as exc:
            answer = {"error": f"worker {node_id} did not answer: {exc}"}
        if answer.get("error"):
            failures += 1
            if not quiet:
                print(f"{replica_id}: {answer['error']}", file=sys.stderr)
            continue
        lines = [str(line) for line in answer.get("lines", [])]
        fresh = new_lines(seen.get(replica_id, []), lines)
        seen[replica_id] = lines
        for line in fresh:
            print(f"[{replica_id}] {line}" if prefix else line, flush=True)
    return failures
