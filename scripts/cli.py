"""The ``corral`` command: launch, deploy, inspect and stop a local cluster.

    corral start [--workers N] [--port P] [--resources JSON] [--host H] [--store URL] [--fresh]
    corral start --join ADDRESS [--resources JSON]
    corral stop [--port P]
    corral run module:app [--workers N] [--name NAME]
    corral deploy config.yaml [--prune]
    corral status [--json] [-v]
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

from rich.console import Console
from rich.live import Live

from actors.serve._progress import Progress, spinner
from actors.serve._progress import wanted as progress_wanted

from actors._config import HttpOptions
from actors._process import stop_event
from actors.serve.worker._args import worker_args
from transport import generate_keys

from ._cluster_files import (
    DEFAULT_PORT,
    child_env,
    cluster_dir,
    dashboard_key,
    head_workers,
    is_recorded_process,
    joined_workers,
    process_record,
    read_head,
    wait_for_file,
    write_json,
)
from ._foreground import health, run_head, run_worker
from ._head import head_args
from ._status_view import render
from ._logs_cmd import LogsError
from ._logs_cmd import cmd_logs as _cmd_logs
from .dashboard import DEFAULT_PORT as DASHBOARD_PORT
from .dashboard import Dashboard

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
    if args.foreground:
        if args.join:
            keys = _keys_for(args.join, args.keys)
            return run_worker(args, dataclasses.asdict(keys) if keys else None)
        if args.workers not in (None, 0):
            raise CliError("with --foreground the head runs alone: start each worker with --foreground --join ADDRESS")
        _settings(args.settings)
        return run_head(args, _http_options(args), args.settings)
    if args.workers is None:
        args.workers = 2
    if args.join:
        return _join(args)
    port = args.port or DEFAULT_PORT
    head = read_head(port)
    if args.host is None and head is not None and str(head.get("address", "")).startswith("tcp://"):
        args.host = head["address"][len("tcp://"):].rsplit(":", 1)[0]  # a restarted head keeps its address
    args.host = args.host or "127.0.0.1"
    if head is not None and is_recorded_process(head):
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
    http = _http_options(args)
    folder = cluster_dir(port)
    # the head died and its workers live on: start the head again, recovering them
    orphans = [record for record in head_workers(head) if is_recorded_process(record)]
    joined_alive = joined_workers(port)
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
                                        keys=str(folder / "keys"), metrics_port=args.metrics_port,
                                        head_file=str(folder / "head.json"), http=json.dumps(http),
                                        dashboard_port=None if args.no_dashboard else args.dashboard_port,
                                        dashboard_key_file=str(dashboard_key(folder)), log_dir=str(folder / "logs"),
                                        log_format=args.log_format, log_file=str(log))],
            stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True, env=_child_env(),
        )
    try:
        with spinner(progress_wanted(args.quiet), f"starting the head on port {port}"):
            info = json.loads(_wait_for_file(ready, proc, 60, log))
    except CliError as exc:
        if proc.poll() == EXIT_BAD_INPUT:  # the checkpoint cannot be used: the head said why
            raise CliError(_last_error_line(log)) from None
        raise exc
    address = info["address"]
    keys = _keys_for(address, str(folder / "keys"))
    transport = {"host": args.host, **({"curve": dataclasses.asdict(keys)} if keys else {})}
    config = json.dumps({"transport": transport, "serve": json.loads(args.settings), "http": http, "log_format": args.log_format})
    with spinner(progress_wanted(args.quiet) and not restart, f"starting {args.workers} workers"):
        workers = orphans if restart else [
            record for record, _ in _spawn_workers(folder, address, [f"worker-{i}" for i in range(args.workers)], resources, config)
        ]
    write_json(folder / "head.json", {**_record_of(proc.pid), "port": port, "address": address,
                                      "workers": [w["pid"] for w in workers], "worker_records": workers,
                                      "store": store, "log": str(log), "dashboard": info.get("dashboard", ""),
                                      "metrics": f"http://{args.host}:{args.metrics_port}/metrics" if args.metrics_port else "",
                                      "logs": str(folder)})
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
    print(f"  python:  serve.start(address={address!r}, keys={str(folder / 'keys')!r})")
    print(f"  stop:    corral stop --port {port}")
    if args.metrics_port:
        print(f"  metrics: http://{args.host}:{args.metrics_port}/metrics")
    if info.get("dashboard"):
        print(f"  dashboard: {info['dashboard']}")
    print(f"  logs:    {folder} (corral logs --port {port})")
    return 0


def _last_error_line(log: Path) -> str:
    lines = [line for line in log.read_text().splitlines() if line.startswith("error: ")]
    return lines[-1][len("error: "):] if lines else f"the head could not start; see {log}"


def _record_of(pid: int) -> dict[str, Any]:
    try:
        return process_record(pid)
    except ProcessLookupError:
        return {"pid": pid, "started": 0.0, "cmdline": []}  # already gone: the record never matches a live process


def _spawn_workers(
    folder: Path, address: str, node_ids: list[str], resources: str, config: str
) -> list[tuple[dict[str, Any], str]]:
    """Start detached workers (they outlive the head) and wait until each has
    registered; returns each one's record (pid, start time, command line, how to
    start it again) and address."""
    started = []
    for node_id in node_ids:
        ready = folder / f"{node_id}-{os.getpid()}.ready"
        log = folder / f"{node_id}.log"
        ready.unlink(missing_ok=True)
        args = worker_args(f"{address}#controller", node_id, resources, config, str(ready), detached=True,
                           log_dir=str(folder / "logs"), log_file=str(log))
        with open(log, "a") as out:
            proc = subprocess.Popen(
                [sys.executable, *args],
                stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True, env=_child_env(),
            )
        started.append((proc, ready, log, node_id, args))
    out_list = []
    try:
        for proc, ready, log, node_id, args in started:
            worker_address = _wait_for_file(ready, proc, 60, log)
            ready.unlink(missing_ok=True)
            record = {**_record_of(proc.pid), "node_id": node_id, "args": args, "log": str(log), "restarts": 0}
            out_list.append((record, worker_address))
    except CliError:
        for proc, _, _, _, _ in started:
            _terminate(_record_of(proc.pid))
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
    [(record, worker_address)] = _spawn_workers(folder, address, [node_id], resources, json.dumps({"transport": transport, "log_format": args.log_format}))
    pid = record["pid"]
    write_json(folder / f"joined-{pid}.json", {**record, "address": worker_address})
    print(f"worker (pid {pid}) at {worker_address} joined the cluster at {address}")
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    port = args.port or DEFAULT_PORT
    head = read_head(port)
    joined = joined_workers(port)
    if head is None and not joined:
        raise CliError(f"no corral cluster was started here on port {port}", 1)
    stopped = 0
    if head is not None and is_recorded_process(head):
        _terminate(head)  # first: its supervisor must not start again the workers stopped below
        stopped += 1
    workers = [r for r in [*joined, *head_workers(head)] if is_recorded_process(r)]
    _terminate_all(workers)
    stopped += len(workers)
    for record in joined:
        Path(record["file"]).unlink(missing_ok=True)
    if head is not None:
        if head.get("store"):
            _clear_store(head["store"])
        (cluster_dir(port) / "head.json").unlink(missing_ok=True)
    print(f"stopped the corral cluster on port {port} ({stopped} processes)")
    return 0


def _clear_store(url: str) -> None:
    """The whole cluster stopped in order: its checkpoint has nothing left to recover."""
    from actors.serve.head._store import StoreError, open_store

    try:
        store = open_store(url)
        try:
            store.clear()
        finally:
            store.close()
    except StoreError as exc:
        print(f"warning: the checkpoint was not removed: {exc}", file=sys.stderr)


def _terminate_all(records: list[dict[str, Any]], timeout: float = 30.0) -> None:
    """SIGTERM every recorded process that is still the one recorded, then wait for each."""
    for record in records:
        _signal(record, signal.SIGTERM)
    for record in records:
        _terminate(record, timeout)


def _signal(record: dict[str, Any], sig: int) -> bool:
    """Signal the recorded process only if it still is that process (pids are reused)."""
    if not is_recorded_process(record):
        return False
    try:
        os.kill(int(record["pid"]), sig)
    except ProcessLookupError:
        return False
    return True


def _terminate(record: dict[str, Any], timeout: float = 30.0) -> None:
    if not _signal(record, signal.SIGTERM):
        return
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while is_recorded_process(record) and time.monotonic() < deadline:
        pause.wait(0.05)
    if _signal(record, signal.SIGKILL):
        print(f"warning: process {record['pid']} did not stop within {timeout:.0f}s of SIGTERM; killed it", file=sys.stderr)


# ---- talking to a cluster ---------------------------------------------------------------


def _resources(text: str) -> dict[str, float]:
    from actors.serve.worker._args import parse_resources

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
    from actors.serve.client._session import client_bind_host

    host = client_bind_host(address)
    return {} if host is None else {"host": host}


def _address(args: argparse.Namespace) -> str:
    if getattr(args, "address", None):
        return str(args.address)
    port = getattr(args, "port", None) or DEFAULT_PORT
    head = read_head(port)
    if head is None or not is_recorded_process(head):
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
            hint = "" if transport.curve is not None else (
                "; a cluster started with `corral start` on another port or host encrypts its traffic: "
                "pass its key directory with --keys"
            )
            raise CliError(f"no corral cluster answers at {address}{hint}") from exc

    def close(self) -> None:
        self.serve.shutdown()


def _connect(address: str, keys_dir: str | None = None, host: str | None = None) -> _Connection:
    return _Connection(address, keys_dir, host)


def cmd_logs(args: argparse.Namespace) -> int:
    """``corral logs``: see ``scripts/_logs_cmd.py``."""

    def head_log() -> Path | None:
        head = read_head(getattr(args, "port", None) or DEFAULT_PORT)
        return Path(head["log"]) if head and head.get("log") else None

    try:
        return _cmd_logs(args, lambda: _connect(_address(args), args.keys), head_log)
    except LogsError as exc:
        raise CliError(str(exc)) from None


def cmd_keys(args: argparse.Namespace) -> int:
    """``corral keys FOLDER``: new keys for a cluster whose members are started by hand (Compose, Kubernetes)."""
    folder = Path(args.folder)
    if folder.exists() and any(folder.iterdir()):
        raise CliError(f"{folder} exists and is not empty; keys are never overwritten")
    generate_keys(folder)
    print(f"cluster keys written to {folder} (mount it at /run/secrets/corral in the containers)")
    return 0


def cmd_health(args: argparse.Namespace) -> int:
    """``corral health``: see ``scripts/_foreground.py``."""
    code, line = health(lambda: _connect(_address(args), args.keys), args.node)
    print(line, file=sys.stdout if code == 0 else sys.stderr)
    return code


def cmd_status(args: argparse.Namespace) -> int:
    conn = _connect(_address(args), args.keys)
    try:
        if args.json:
            document = {**dataclasses.asdict(conn.serve.status(replicas=True)), "controller": conn.serve.controller_stats()["recovery"],
                        "worker_restarts": _local_restarts(args), "links": _links(args)}
            print(json.dumps(document, indent=2, sort_keys=True))
            return 0
        console = Console(width=None if sys.stdout.isatty() else 250, highlight=False)

        def view() -> Any:
            return render(conn.serve.status(replicas=args.verbose), conn.serve.controller_stats()["recovery"], _links(args),
                          _local_restarts(args), args.verbose)

        if not args.watch:
            console.print(view())
            return 0
        if args.interval <= 0:
            raise CliError(f"--interval must be a positive number of seconds, got {args.interval}")
        try:
            with Live(view(), console=console, refresh_per_second=4, screen=False) as live:
                while True:  # until Ctrl-C
                    time.sleep(args.interval)
                    live.update(view())
        except KeyboardInterrupt:
            return 0
    finally:
        conn.close()


def _links(args: argparse.Namespace) -> dict[str, str]:
    """Where the cluster is: its address, and for one started here its dashboard, metrics and logs."""
    links = {"address": _address(args)}
    head = None if getattr(args, "address", None) else read_head(getattr(args, "port", None) or DEFAULT_PORT)
    for name in ("dashboard", "metrics", "logs"):
        if head and head.get(name):
            links[name] = str(head[name])
    return links


def _local_restarts(args: argparse.Namespace) -> dict[str, int]:
    """How often the head's supervisor started each local worker again (clusters started here)."""
    if getattr(args, "address", None):
        return {}
    head = read_head(getattr(args, "port", None) or DEFAULT_PORT)
    return {str(r["node_id"]): int(r.get("restarts", 0)) for r in head_workers(head) if "node_id" in r}


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


def _use_app_dir(app_dir: str) -> str:
    """Put the user's code folder first on the import path; replicas get it too
    (each deployment's spec names the folder its class was imported from)."""
    folder = os.path.abspath(app_dir)
    if not os.path.isdir(folder):
        raise CliError(f"--app-dir: {app_dir} is not a folder")
    if folder in sys.path:
        sys.path.remove(folder)
    sys.path.insert(0, folder)
    return folder


def cmd_deploy(args: argparse.Namespace) -> int:
    from ._config_file import ConfigFileError, load_config

    _use_app_dir(args.app_dir)
    try:
        apps = load_config(args.config, working_dir=args.working_dir)
    except ConfigFileError as exc:
        raise CliError(str(exc)) from None
    conn = _connect(_address(args), args.keys)
    interrupted = stop_event(watch_stdin=False)
    try:
        serve = conn.serve
        names = {a.name for a in apps}
        for app in apps:
            try:
                serve.run(app.app, name=app.name, wait_for_ready=False, route_prefix=app.route_prefix, runtime_env=app.runtime_env)
            except (ValueError, TypeError) as exc:
                raise CliError(f"{args.config}: applications[{app.name}]: {exc}") from None
        if args.prune:
            for name in set(serve.status().applications) - names:
                serve.delete(name)
                print(f"pruned application {name!r}")
        with Progress(progress_wanted(args.quiet)) as progress:
            return _follow(serve, names, args.timeout, interrupted, progress)
    finally:
        conn.close()


def _follow(serve: Any, names: set[str], timeout: float, interrupted: threading.Event, progress: Progress) -> int:
    """Wait for the applications to be RUNNING, drawing progress on a terminal."""
    deadline = time.monotonic() + timeout
    while not interrupted.is_set():
        status = serve.status()
        progress.show(status, names)
        done = True
        for name in sorted(names):
            app = status.applications.get(name)
            if app is None:
                done = False
                continue
            for dname, d in sorted(app.deployments.items()):
                if d.status == "DEPLOY_FAILED":
                    print(f"error: {name}/{dname} failed to deploy: {d.message}", file=sys.stderr)
                    return 1
            done = done and app.status == "RUNNING" and all(d.status == "HEALTHY" for d in app.deployments.values())
        if done:
            replicas = sum(sum(d.replica_states.values()) for n in names for d in status.applications[n].deployments.values())
            print(f"deployed: {', '.join(sorted(names))} ({replicas} replicas running)")
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

    _use_app_dir(args.app_dir)
    port = args.port or DEFAULT_PORT
    head = read_head(port)
    if head is not None and is_recorded_process(head):
        raise CliError(f"a corral cluster already runs on port {port} (pid {head['pid']}, {head['address']}); "
                       "choose another with --port", 1)
    try:
        app = _build({"import_path": args.import_path}, "import_path", lambda where, what: ConfigFileError(f"{args.import_path}: {what}"))
    except ConfigFileError as exc:
        raise CliError(str(exc)) from None
    stop = stop_event(watch_stdin=False)
    serve.start(workers=args.workers, http_options=_http_options(args))
    record = cluster_dir(port) / "head.json"
    dashboard = None
    try:
        serve.run(app, name=args.name, route_prefix=args.route_prefix)
        from actors.serve._api import current_session

        address = f"{current_session().system.address}#controller"
        if not args.no_dashboard:
            dashboard = Dashboard(current_session(), "127.0.0.1", args.dashboard_port,
                                  dashboard_key(cluster_dir(port)).read_text().strip(), {"address": address})
            try:
                dashboard.start()
            except OSError as exc:
                raise CliError(f"{exc} (choose another with --dashboard-port, or --no-dashboard)") from None
        # found by corral status/call/stop --port like a cluster from corral start
        write_json(record, {**_record_of(os.getpid()), "port": port, "address": address, "workers": [], "run": True,
                            "dashboard": dashboard.url if dashboard is not None else ""})
        print(f"serving {args.import_path} as {args.name!r} on {args.workers} workers at {address}; Ctrl-C to stop",
              flush=True)
        print(f"  status:  corral status --port {port}", flush=True)
        if dashboard is not None:
            print(f"  dashboard: {dashboard.url}", flush=True)
        for proxy in serve.status().proxies:
            print(f"  HTTP:    curl {proxy.url}{args.route_prefix if args.route_prefix != '/' else '/'}", flush=True)
        stop.wait()
    finally:
        if dashboard is not None:
            dashboard.stop()
        serve.shutdown()
        head = read_head(port)
        if head is not None and head.get("pid") == os.getpid():
            record.unlink(missing_ok=True)
    print("stopped", flush=True)
    return 0


def _http_options(args: argparse.Namespace) -> dict[str, Any]:
    """The HTTP proxy's options from --http-host/--http-port/--proxy-location (validated)."""
    options = {"host": args.http_host, "port": args.http_port, "proxy_location": args.proxy_location}
    try:
        HttpOptions(**options)
    except ValueError as exc:
        raise CliError(str(exc).replace("http_options.", "--http-").replace("--http-proxy_location", "--proxy-location")) from None
    return options


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {value}")
    return value


def _http_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--http-host", default="127.0.0.1", help="where the HTTP proxy listens (default 127.0.0.1)")
    p.add_argument("--http-port", type=int, default=8000, help="the HTTP proxy's port (default 8000; 0: any free one)")
    p.add_argument("--proxy-location", default="HeadOnly", choices=("HeadOnly", "EveryNode", "Disabled"),
                   help="where HTTP proxies run (default HeadOnly)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="corral", description="Serve Python code across a cluster of processes.")
    sub = parser.add_subparsers(dest="command", required=True)

    def target(p: argparse.ArgumentParser) -> None:
        p.add_argument("--address", help="the cluster's address (default: the one started here)")
        p.add_argument("--keys", help="the cluster's key directory (default: the one of the cluster started here)")
        p.add_argument("--port", type=int, help=f"the port of a cluster started here (default {DEFAULT_PORT})")

    p = sub.add_parser("start", help="start a cluster (head and workers) in the background, or join one")
    p.add_argument("--workers", type=_count, default=None, help="local workers to start (default 2; none with --foreground)")
    p.add_argument("--foreground", action="store_true",
                   help="run the head (or, with --join, one worker) in this process until SIGTERM, logging to stderr")
    p.add_argument("--advertise", metavar="HOST", help="the host peers dial when --host is a wildcard (0.0.0.0)")
    p.add_argument("--node-id", help="with --join: this worker's id (default: the host name)")
    p.add_argument("--port", type=int)
    p.add_argument("--host", help="the interface to bind, peers reach this process there (default 127.0.0.1)")
    p.add_argument("--resources", default="{}", help='JSON, e.g. \'{"CPU": 2, "GPU": 1}\'')
    p.add_argument("--join", metavar="ADDRESS", help="start one worker that joins the cluster at ADDRESS")
    p.add_argument("--metrics-port", type=int, help="serve Prometheus metrics over HTTP on this port")
    p.add_argument("--dashboard-port", type=int, default=DASHBOARD_PORT,
                   help=f"the dashboard's port (default {DASHBOARD_PORT}; 0: any free one)")
    p.add_argument("--no-dashboard", action="store_true", help="start no dashboard")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress display (none is drawn when not on a terminal)")
    p.add_argument("--log-format", default="text", choices=("text", "json"),
                   help="how the head, workers and replicas log: text, or one JSON object per line")
    p.add_argument("--keys", help="with --join: the cluster's key directory")
    p.add_argument("--settings", default="{}", help="JSON of ServeSettings fields, e.g. intervals")
    p.add_argument("--store", help="where the controller keeps its checkpoint: sqlite:///path or redis://host:port/db "
                   "(default: an SQLite file in the cluster's directory)")
    p.add_argument("--fresh", action="store_true", help="discard the checkpoint and start empty")
    _http_flags(p)
    p.set_defaults(func=cmd_start)
    p = sub.add_parser("stop", help="stop everything a cluster started here")
    p.add_argument("--port", type=int)
    p.set_defaults(func=cmd_stop)
    p = sub.add_parser("run", help="run an app in the foreground on a local cluster until Ctrl-C")
    p.add_argument("import_path", help="module:app")
    p.add_argument("--workers", type=_count, default=2)
    p.add_argument("--name", default="default")
    p.add_argument("--port", type=int, help=f"where corral status/call/stop find it (default {DEFAULT_PORT})")
    p.add_argument("--app-dir", default=".", help="the folder the user's code is imported from (default: this one)")
    p.add_argument("--route-prefix", default="/", help="where the HTTP proxy serves the app (default /)")
    p.add_argument("--dashboard-port", type=int, default=DASHBOARD_PORT,
                   help=f"the dashboard's port (default {DASHBOARD_PORT}; 0: any free one)")
    p.add_argument("--no-dashboard", action="store_true", help="start no dashboard")
    _http_flags(p)
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("deploy", help="create or update the applications of a config file")
    p.add_argument("config")
    p.add_argument("--prune", action="store_true", help="delete applications the file does not name")
    p.add_argument("--working-dir", help="ship this folder's code with every application (runtime_env working_dir)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress display (none is drawn when not on a terminal)")
    p.add_argument("--timeout", type=float, default=600.0)
    p.add_argument("--app-dir", default=".", help="the folder the user's code is imported from (default: this one)")
    target(p)
    p.set_defaults(func=cmd_deploy)
    p = sub.add_parser("status", help="applications, deployments, nodes and gangs")
    p.add_argument("--json", action="store_true")
    p.add_argument("-v", "--verbose", action="store_true", help="one row per replica: state, node, process id, memory")
    p.add_argument("-w", "--watch", action="store_true", help="a live view, refreshed until Ctrl-C")
    p.add_argument("--interval", type=float, default=2.0, help="with --watch: seconds between refreshes (default 2)")
    target(p)
    p.set_defaults(func=cmd_status)
    p = sub.add_parser("call", help="send one request to an application")
    p.add_argument("app")
    p.add_argument("json_args", nargs="?", help="a JSON list (positional), object (keywords) or value")
    p.add_argument("--method", default="__call__")
    p.add_argument("--timeout", type=float, default=60.0)
    target(p)
    p.set_defaults(func=cmd_call)
    p = sub.add_parser("logs", help="replica logs, read through the cluster (or the head's, with no app)")
    p.add_argument("app", nargs="?")
    p.add_argument("deployment", nargs="?")
    p.add_argument("replica", nargs="?", help="a replica id (or its last part)")
    p.add_argument("--tail", type=int, default=100, help="the last N lines of each (default 100)")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new lines until Ctrl-C")
    target(p)
    p.set_defaults(func=cmd_logs)
    p = sub.add_parser("keys", help="make a new cluster key folder (CurveZMQ keys, files of mode 0600)")
    p.add_argument("folder")
    p.set_defaults(func=cmd_keys)
    p = sub.add_parser("health", help="exit 0 if the cluster's controller answers (a container's health probe)")
    p.add_argument("--node", help="also require that this worker is registered")
    target(p)
    p.set_defaults(func=cmd_health)
    p = sub.add_parser("delete", help="delete an application")
    p.add_argument("app")
    target(p)
    p.set_defaults(func=cmd_delete)
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse a command line; a command's options may come before or after its
    positional arguments (``corral call APP --method M '[1]'``)."""
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    args, _ = parser.parse_known_args(argv)  # which command (errors out on a bad one)
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    position = argv.index(args.command)
    return commands.choices[args.command].parse_intermixed_args(argv[position + 1:])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        code = int(args.func(args))
        sys.stdout.flush()  # here, where a closed pipe can be caught, not at exit
        return code
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    except BrokenPipeError:
        # the reader went away (corral status | head): not an error of ours
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
