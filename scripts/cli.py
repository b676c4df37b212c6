"""The ``corral`` command: launch, deploy, inspect and stop a local cluster.

    corral start [--workers N] [--port P] [--resources JSON] [--host H] [--store URL] [--fresh]
    corral start --join ADDRESS [--resources JSON]
    corral stop [--port P]
    corral run module:app [--workers N] [--name NAME]
    corral deploy config.yaml [--prune]
    corral status [--json]
    corral call APP [--method M] [JSON_ARGS]
    corral delete APP

Commands that talk to a cluster take ``--address ADDRESS`` or ``--port P``
(default: the cluster started here on port 6390). Errors are one line on
standard error, with exit code 2 for bad input or no cluster.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from actors._process import stop_event
from actors.serve.worker import worker_args
from transport import generate_keys

from ._cluster_files import DEFAULT_PORT, alive, child_env, cluster_dir, joined_workers, read_head, wait_for_file, write_json
from ._head import head_args

EXIT_BAD_INPUT = 2


class CliError(Exception):
    """A one-line error for the user; ``code`` is the exit status."""

    def __init__(self, message: str, code: int = EXIT_BAD_INPUT) -> None:
        super().__init__(message)
        self.code = code


def _child_env() -> dict[str, str]:
    return child_env(os.getcwd())


def _wait_for_file(path: Path, proc: subprocess.Popen[bytes], timeout: float, log: Path) -> str:
    try:
        return wait_for_file(path, proc, timeout)
    except RuntimeError as exc:
        tail = log.read_text()[-2000:] if log.exists() else ""
        raise CliError(f"it did not start ({exc}); its log {log} ends with:\n{tail}", 1) from None


# ---- start / stop -----------------------------------------------------------------------


def cmd_start(args: argparse.Namespace) -> int:
    if args.join:
        return _join(args)
    port = args.port or DEFAULT_PORT
    head = read_head(port)
    if args.host is None and head is not None and str(head.get("address", "")).startswith("tcp://"):
        args.host = head["address"][len("tcp://"):].rsplit(":", 1)[0]  # a restarted head keeps its address
    args.host = args.host or "127.0.0.1"
    if head is not None and alive(head["pid"]):
        raise CliError(f"a corral cluster already runs on port {port} (pid {head['pid']}, {head['address']}); "
                       f"stop it with: corral stop --port {port}", 1)
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as ZeroMQ binds: TIME_WAIT is no obstacle
        try:
            probe.bind((args.host, port))
        except OSError:
            raise CliError(f"port {port} on {args.host} is in use by another program; choose one with --port") from None
    resources = json.dumps(_resources(args.resources))
    _settings(args.settings)
    folder = cluster_dir(port)
    # the head died and its workers live on: start the head again, recovering them
    orphans = [pid for pid in (head or {}).get("workers", []) if alive(pid)]
    joined_alive = [w for w in joined_workers(port) if alive(w["pid"])]
    restart = bool(orphans or joined_alive)
    store = args.store or (head or {}).get("store") or f"sqlite:///{folder / 'checkpoint.sqlite'}"
    recovery = "fresh" if args.fresh else "required" if restart else "auto"
    ready, log = folder / "ready.json", folder / "head.log"
    ready.unlink(missing_ok=True)
    if not restart:
        generate_keys(folder / "keys")  # a new cluster gets new keys; survivors of the old one keep theirs
    with open(log, "a") as out:
        proc = subprocess.Popen(
            [sys.executable, *head_args(port, str(ready), args.host, store, recovery, args.settings,
                                        keys=str(folder / "keys"), metrics_port=args.metrics_port)],
            stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True, env=_child_env(),
        )
    try:
        info = json.loads(_wait_for_file(ready, proc, 60, log))
    except CliError as exc:
        if proc.poll() == EXIT_BAD_INPUT:  # the checkpoint cannot be used: the head said why
            raise CliError(_last_error_line(log)) from None
        raise exc
    address = info["address"]
    keys = _keys_for(address, str(folder / "keys"))
    transport = {"host": args.host, **({"curve": dataclasses.asdict(keys)} if keys else {})}
    config = json.dumps({"transport": transport, "serve": json.loads(args.settings)})
    workers = orphans if restart else [
        pid for pid, _ in _spawn_workers(folder, address, [f"worker-{i}" for i in range(args.workers)], resources, config)
    ]
    write_json(folder / "head.json", {"pid": proc.pid, "port": port, "address": address, "workers": workers,
                                      "store": store, "log": str(log)})
    recovered = info.get("recovery", {})
    if restart:
        print(f"corral head restarted at {address} (pid {proc.pid}); recovering {len(orphans) + len(joined_alive)} workers "
              f"and {info.get('apps', 0)} applications from {store}")
    elif recovered.get("epoch"):
        print(f"corral cluster started at {address} with {args.workers} workers (head pid {proc.pid}); "
              f"recovered {info.get('apps', 0)} applications from {store}")
    else:
        print(f"corral cluster started at {address} with {args.workers} workers (head pid {proc.pid})")
    print(f"  status:  corral status --port {port}")
    print(f"  deploy:  corral deploy config.yaml --port {port}")
    print(f"  join:    corral start --join {address} --keys {folder / 'keys'}")
    print(f"  stop:    corral stop --port {port}")
    if args.metrics_port:
        print(f"  metrics: http://{args.host}:{args.metrics_port}/metrics")
    return 0


def _last_error_line(log: Path) -> str:
    lines = [line for line in log.read_text().splitlines() if line.startswith("error: ")]
    return lines[-1][len("error: "):] if lines else f"the head could not start; see {log}"


def _spawn_workers(
    folder: Path, address: str, node_ids: list[str], resources: str, config: str
) -> list[tuple[int, str]]:
    """Start detached workers (they outlive the head) and wait until each has registered."""
    started = []
    for node_id in node_ids:
        ready = folder / f"{node_id}-{os.getpid()}.ready"
        log = folder / f"{node_id}.log"
        ready.unlink(missing_ok=True)
        with open(log, "a") as out:
            proc = subprocess.Popen(
                [sys.executable, *worker_args(f"{address}#controller", node_id, resources, config, str(ready), detached=True)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True, env=_child_env(),
            )
        started.append((proc, ready, log))
    out_list = []
    try:
        for proc, ready, log in started:
            out_list.append((proc.pid, _wait_for_file(ready, proc, 60, log)))
            ready.unlink(missing_ok=True)
    except CliError:
        for proc, _, _ in started:
            _terminate(proc.pid)
        raise
    return out_list


def _join(args: argparse.Namespace) -> int:
    address = args.join
    _connect(address, args.keys, args.host).close()  # fail fast with a clear message if nobody answers
    port = int(address.rsplit(":", 1)[1]) if address.startswith("tcp://") else DEFAULT_PORT
    folder = cluster_dir(port)
    resources = json.dumps(_resources(args.resources))
    keys = _keys_for(address, args.keys)
    bind = {"host": args.host} if args.host else _client_transport(address)
    transport = {**bind, **({"curve": dataclasses.asdict(keys)} if keys else {})}
    node_id = f"{socket.gethostname()}-{os.getpid()}"
    [(pid, worker_address)] = _spawn_workers(folder, address, [node_id], resources, json.dumps({"transport": transport}))
    write_json(folder / f"joined-{pid}.json", {"pid": pid, "address": worker_address, "log": str(folder / f"{node_id}.log")})
    print(f"worker (pid {pid}) at {worker_address} joined the cluster at {address}")
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    port = args.port or DEFAULT_PORT
    head = read_head(port)
    joined = joined_workers(port)
    if head is None and not joined:
        raise CliError(f"no corral cluster was started here on port {port}", 1)
    pids = [record["pid"] for record in joined] + list((head or {}).get("workers", []))
    _terminate_all(pids)
    for record in joined:
        Path(record["file"]).unlink(missing_ok=True)
    if head is not None:
        _terminate(head["pid"])
        pids.append(head["pid"])
        if head.get("store"):
            _clear_store(head["store"])
        (cluster_dir(port) / "head.json").unlink(missing_ok=True)
    print(f"stopped the corral cluster on port {port} ({len(pids)} processes)")
    return 0


def _clear_store(url: str) -> None:
    """The whole cluster stopped in order: its checkpoint has nothing left to recover."""
    from actors.serve._store import StoreError, open_store

    try:
        store = open_store(url)
        try:
            store.clear()
        finally:
            store.close()
    except StoreError as exc:
        print(f"warning: the checkpoint was not removed: {exc}", file=sys.stderr)


def _terminate_all(pids: list[int], timeout: float = 30.0) -> None:
    for pid in pids:
        if alive(pid):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    for pid in pids:
        _terminate(pid, timeout)


def _terminate(pid: int, timeout: float = 30.0) -> None:
    if not alive(pid):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while alive(pid) and time.monotonic() < deadline:
        pause.wait(0.05)
    if alive(pid):
        print(f"warning: process {pid} did not stop within {timeout:.0f}s of SIGTERM; killing it", file=sys.stderr)
        os.kill(pid, signal.SIGKILL)


# ---- talking to a cluster ---------------------------------------------------------------


def _resources(text: str) -> dict[str, float]:
    from actors.serve.worker import parse_resources

    try:
        return parse_resources(text)
    except ValueError as exc:
        raise CliError(str(exc)) from None


def _settings(text: str) -> None:
    from actors import ServeSettings

    try:
        ServeSettings(**json.loads(text))
    except (ValueError, TypeError) as exc:
        raise CliError(f"--settings: {exc}") from None


def _keys_for(address: str, keys_dir: str | None) -> Any:
    """The cluster's keys: from --keys, else from the cluster started here on that port."""
    from transport import load_keys

    if keys_dir is None:
        if not address.startswith("tcp://"):
            return None
        candidate = cluster_dir(int(address.rsplit(":", 1)[1].split("#")[0])) / "keys"
        if not candidate.exists():
            return None
        keys_dir = str(candidate)
    try:
        return load_keys(keys_dir)
    except (OSError, ValueError) as exc:
        raise CliError(f"cannot read the cluster's keys from {keys_dir}: {exc}") from None


def _client_transport(address: str) -> dict[str, Any]:
    """Where a client binds so the cluster can answer it: ipc for a local cluster,
    the cluster's own interface when it is one of this machine's, else all interfaces."""
    host = address[len("tcp://"):].rsplit(":", 1)[0] if address.startswith("tcp://") else ""
    if not host or host.startswith("127.") or host == "localhost":
        return {}
    with socket.socket() as probe:
        try:
            probe.bind((host, 0))
            return {"host": host}
        except OSError:
            return {"host": "0.0.0.0"}


def _address(args: argparse.Namespace) -> str:
    if getattr(args, "address", None):
        return str(args.address)
    port = getattr(args, "port", None) or DEFAULT_PORT
    head = read_head(port)
    if head is None or not alive(head["pid"]):
        raise CliError(f"no corral cluster runs on port {port}; start one with: corral start --port {port}")
    return str(head["address"])


class _Connection:
    def __init__(self, address: str, keys_dir: str | None = None, host: str | None = None) -> None:
        from actors import Config, serve
        from transport import TransportConfig

        self.serve = serve
        bind = {"host": host} if host else _client_transport(address)
        transport = TransportConfig(**bind, curve=_keys_for(address, keys_dir))
        try:
            serve.start(address=address, config=Config(transport=transport))
        except (ConnectionError, ValueError) as exc:
            raise CliError(f"no corral cluster answers at {address}") from exc

    def close(self) -> None:
        self.serve.shutdown()


def _connect(address: str, keys_dir: str | None = None, host: str | None = None) -> _Connection:
    return _Connection(address, keys_dir, host)


def cmd_status(args: argparse.Namespace) -> int:
    conn = _connect(_address(args), args.keys)
    try:
        status = conn.serve.status()
        recovery = conn.serve.controller_stats()["recovery"]
    finally:
        conn.close()
    if args.json:
        print(json.dumps({**dataclasses.asdict(status), "controller": recovery}, indent=2, sort_keys=True))
        return 0
    if recovery["recovering_workers"]:
        print(f"the controller is recovering: waiting for {', '.join(recovery['recovering_workers'])} to say what they run\n")
    elif recovery["epoch"]:
        print(f"the controller was restarted {recovery['epoch']} time(s); it recovered in {recovery['recovery_s']:.2f}s: "
              f"{recovery['adopted']} replicas re-adopted, {recovery['dropped']} replaced, "
              f"{recovery['unknown_stopped']} unknown stopped\n")
    rows = [("APP", "DEPLOYMENT", "APP STATUS", "STATUS", "REPLICAS", "MESSAGE")]
    for name, app in sorted(status.applications.items()):
        for dname, d in sorted(app.deployments.items()):
            replicas = " ".join(f"{k}={v}" for k, v in sorted(d.replica_states.items())) or "-"
            rows.append((name, dname, app.status, d.status, f"{replicas} (target {d.target_replicas})", d.message.split("\n")[0][:80]))
    _table(rows)
    print()
    _table([("NODE", "ADDRESS", "REPLICAS", "RESOURCES (free / total)")] + [
        (n.node_id, n.address, str(n.replicas),
         ", ".join(f"{k} {n.available.get(k, 0):g}/{v:g}" for k, v in sorted(n.total.items())))
        for n in status.nodes
    ])
    if status.reservations:
        print()
        _table([("GANG", "DEPLOYMENT", "NODES", "BUNDLE")] + [
            (r.gang_id, f"{r.app}/{r.deployment}", ",".join(r.nodes), json.dumps(r.bundle)) for r in status.reservations
        ])
    return 0


def _table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


def cmd_call(args: argparse.Namespace) -> int:
    try:
        payload = json.loads(args.json_args) if args.json_args is not None else None
    except json.JSONDecodeError as exc:
        raise CliError(f"JSON_ARGS is not valid JSON: {exc}") from None
    conn = _connect(_address(args), args.keys)
    try:
        from actors.serve import DeploymentNotFoundError

        try:
            handle = conn.serve.get_app_handle(args.app).options(method_name=args.method)
        except DeploymentNotFoundError as exc:
            raise CliError(str(exc)) from None
        if payload is None:
            response = handle.remote()
        elif isinstance(payload, list):
            response = handle.remote(*payload)
        elif isinstance(payload, dict):
            response = handle.remote(**payload)
        else:
            response = handle.remote(payload)
        try:
            result = response.result(timeout_s=args.timeout)
        except Exception as exc:
            raise CliError(f"{type(exc).__name__}: {exc}", 1) from None
    finally:
        conn.close()
    print(json.dumps(result, default=repr))
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    conn = _connect(_address(args), args.keys)
    try:
        if args.app not in conn.serve.status().applications:
            raise CliError(f"no application named {args.app!r}", 1)
        conn.serve.delete(args.app)
    finally:
        conn.close()
    print(f"deleted application {args.app!r}")
    return 0


def cmd_deploy(args: argparse.Namespace) -> int:
    from ._config_file import ConfigFileError, load_config

    try:
        apps = load_config(args.config)
    except ConfigFileError as exc:
        raise CliError(str(exc)) from None
    conn = _connect(_address(args), args.keys)
    interrupted = stop_event(watch_stdin=False)
    try:
        serve = conn.serve
        names = {a.name for a in apps}
        for app in apps:
            try:
                serve.run(app.app, name=app.name, wait_for_ready=False)
            except (ValueError, TypeError) as exc:
                raise CliError(f"{args.config}: applications[{app.name}]: {exc}") from None
        if args.prune:
            for name in set(serve.status().applications) - names:
                serve.delete(name)
                print(f"pruned application {name!r}")
        return _follow(serve, names, args.timeout, interrupted)
    finally:
        conn.close()


def _follow(serve: Any, names: set[str], timeout: float, interrupted: threading.Event) -> int:
    deadline = time.monotonic() + timeout
    shown: dict[str, str] = {}
    while not interrupted.is_set():
        status = serve.status()
        done = True
        for name in sorted(names):
            app = status.applications.get(name)
            if app is None:
                continue
            for dname, d in sorted(app.deployments.items()):
                line = f"{name}/{dname}: {d.status} {d.replica_states} (target {d.target_replicas})"
                if shown.get(f"{name}/{dname}") != line:
                    print(line, flush=True)
                    shown[f"{name}/{dname}"] = line
                if d.status == "DEPLOY_FAILED":
                    print(f"error: {name}/{dname} failed to deploy: {d.message}", file=sys.stderr)
                    return 1
            done = done and app.status == "RUNNING" and all(d.status == "HEALTHY" for d in app.deployments.values())
        if done:
            print(f"deployed: {', '.join(sorted(names))}")
            return 0
        if time.monotonic() > deadline:
            print(f"error: not ready after {timeout}s", file=sys.stderr)
            return 1
        interrupted.wait(0.1)
    print("interrupted; the cluster goes on deploying what was sent", file=sys.stderr)
    return 130


def cmd_run(args: argparse.Namespace) -> int:
    from ._config_file import ConfigFileError, _build

    from actors import serve

    try:
        app = _build({"import_path": args.import_path}, "import_path", lambda where, what: ConfigFileError(f"{args.import_path}: {what}"))
    except ConfigFileError as exc:
        raise CliError(str(exc)) from None
    stop = stop_event(watch_stdin=False)
    serve.start(workers=args.workers)
    try:
        serve.run(app, name=args.name)
        print(f"serving {args.import_path} as {args.name!r} on {args.workers} workers; Ctrl-C to stop", flush=True)
        stop.wait()
    finally:
        serve.shutdown()
    print("stopped", flush=True)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="corral", description="Serve Python code across a cluster of processes.")
    sub = parser.add_subparsers(dest="command", required=True)

    def target(p: argparse.ArgumentParser) -> None:
        p.add_argument("--address", help="the cluster's address (default: the one started here)")
        p.add_argument("--keys", help="the cluster's key directory (default: the one of the cluster started here)")
        p.add_argument("--port", type=int, help=f"the port of a cluster started here (default {DEFAULT_PORT})")

    p = sub.add_parser("start", help="start a cluster (head and workers) in the background, or join one")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--port", type=int)
    p.add_argument("--host", help="the interface to bind, peers reach this process there (default 127.0.0.1)")
    p.add_argument("--resources", default="{}", help='JSON, e.g. \'{"CPU": 2, "GPU": 1}\'')
    p.add_argument("--join", metavar="ADDRESS", help="start one worker that joins the cluster at ADDRESS")
    p.add_argument("--metrics-port", type=int, help="serve Prometheus metrics over HTTP on this port")
    p.add_argument("--keys", help="with --join: the cluster's key directory")
    p.add_argument("--settings", default="{}", help="JSON of ServeSettings fields, e.g. intervals")
    p.add_argument("--store", help="where the controller keeps its checkpoint: sqlite:///path or redis://host:port/db "
                   "(default: an SQLite file in the cluster's directory)")
    p.add_argument("--fresh", action="store_true", help="discard the checkpoint and start empty")
    p.set_defaults(func=cmd_start)
    p = sub.add_parser("stop", help="stop everything a cluster started here")
    p.add_argument("--port", type=int)
    p.set_defaults(func=cmd_stop)
    p = sub.add_parser("run", help="run an app in the foreground on a local cluster until Ctrl-C")
    p.add_argument("import_path", help="module:app")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--name", default="default")
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("deploy", help="create or update the applications of a config file")
    p.add_argument("config")
    p.add_argument("--prune", action="store_true", help="delete applications the file does not name")
    p.add_argument("--timeout", type=float, default=600.0)
    target(p)
    p.set_defaults(func=cmd_deploy)
    p = sub.add_parser("status", help="applications, deployments, nodes and gangs")
    p.add_argument("--json", action="store_true")
    target(p)
    p.set_defaults(func=cmd_status)
    p = sub.add_parser("call", help="send one request to an application")
    p.add_argument("app")
    p.add_argument("json_args", nargs="?", help="a JSON list (positional), object (keywords) or value")
    p.add_argument("--method", default="__call__")
    p.add_argument("--timeout", type=float, default=60.0)
    target(p)
    p.set_defaults(func=cmd_call)
    p = sub.add_parser("delete", help="delete an application")
    p.add_argument("app")
    target(p)
    p.set_defaults(func=cmd_delete)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code


if __name__ == "__main__":
    sys.exit(main())
