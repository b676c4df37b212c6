"""A cluster head run in the background by ``corral start``.

    python -m scripts._head --port P --ready-file F [--host H] [--store URL]
                            [--recovery auto|required|fresh] [--keys DIR]

Binds the controller on ``tcp://HOST:PORT``, recovers from its checkpoint
store when there is a checkpoint, writes its address to the ready file, and
runs until SIGTERM or SIGINT. Workers are separate processes (``corral start``
starts them), so they and their replicas outlive a head that dies; a head
started again recovers them. A checkpoint that cannot be used is reported on
standard error with exit code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
from pathlib import Path
from typing import Any

from actors import Config, HttpOptions, ServeSettings, serve
from actors._logging import LOG_FORMATS, configure_logging
from actors._process import stop_event
from actors.serve import CheckpointError, StoreError
from actors.serve._api import current_session
from transport import TransportConfig, load_keys

from ._supervisor import WorkerSupervisor
from .dashboard import Dashboard


def head_args(
    port: int,
    ready_file: str,
    host: str = "127.0.0.1",
    store: str = "",
    recovery: str = "auto",
    settings: str = "{}",
    transport: str = "{}",
    keys: str | None = None,
    metrics_port: int | None = None,
    head_file: str | None = None,
    http: str = "{}",
    dashboard_port: int | None = None,
    dashboard_key_file: str | None = None,
    log_dir: str | None = None,
    log_format: str = "text",
    log_file: str | None = None,
) -> list[str]:
    """The arguments (after the interpreter) that start a head process; see the module docstring."""
    args = ["-m", "scripts._head", "--port", str(port), "--host", host, "--ready-file", ready_file,
            "--store", store, "--recovery", recovery, "--settings", settings, "--transport", transport]
    if keys:
        args += ["--keys", keys]
    if metrics_port:
        args += ["--metrics-port", str(metrics_port)]
    if head_file:
        args += ["--head-file", head_file]
    if http != "{}":
        args += ["--http", http]
    if dashboard_port is not None:
        args += ["--dashboard-port", str(dashboard_port)]
    if dashboard_key_file:
        args += ["--dashboard-key-file", dashboard_key_file]
    if log_dir:
        args += ["--log-dir", log_dir]
    if log_format != "text":
        args += ["--log-format", log_format]
    if log_file:
        args += ["--log-file", log_file]
    return args


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts._head")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--store", default="", help="checkpoint store URL (sqlite:///path or redis://...)")
    parser.add_argument("--recovery", default="auto", choices=("auto", "required", "fresh"))
    parser.add_argument("--ready-file", required=True)
    parser.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on this port")
    parser.add_argument("--settings", default="{}", help="JSON of ServeSettings fields")
    parser.add_argument("--keys", help="directory of the cluster's CurveZMQ keys")
    parser.add_argument("--transport", default="{}", help="JSON of further TransportConfig fields (heartbeats...)")
    parser.add_argument("--http", default="{}", help="JSON of HttpOptions fields (the HTTP proxy)")
    parser.add_argument("--head-file", help="the cluster's head record: restart the local workers it lists when they die")
    parser.add_argument("--dashboard-port", type=int, help="serve the dashboard on this port (0: any free one)")
    parser.add_argument("--dashboard-key-file", help="the file holding the key changing dashboard requests must present")
    parser.add_argument("--log-dir", help="where the cluster's logs are (shown on the dashboard)")
    parser.add_argument("--log-format", default="text", choices=LOG_FORMATS, help="text, or one JSON object per line")
    parser.add_argument("--log-file", help="the file standard error goes to: kept under 16 MiB (copied to FILE.1, emptied)")
    args = parser.parse_args(argv)
    stop = stop_event(watch_stdin=False)
    configure_logging("head", args.log_format, bounded_file=args.log_file)
    curve = load_keys(args.keys) if args.keys else None
    settings = {**json.loads(args.settings), "checkpoint_store": args.store, "checkpoint_recovery": args.recovery}
    config = Config(
        transport=TransportConfig(**{**json.loads(args.transport), "host": args.host, "port": args.port, "curve": curve}),
        serve=ServeSettings(**settings),
        http=HttpOptions.from_dict(json.loads(args.http)),
        log_format=args.log_format,
    )
    try:
        serve.start(workers=[], config=config)
    except (CheckpointError, StoreError, RuntimeError) as exc:  # RuntimeError: the HTTP proxy cannot listen
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    metrics = dashboard = None
    supervisor = WorkerSupervisor(Path(args.head_file)) if args.head_file else None
    try:
        session = current_session()
        if supervisor is not None:
            supervisor.start()
        if args.metrics_port:
            from ._prometheus import serve_metrics

            metrics = serve_metrics(session, args.metrics_port, args.host, supervisor)
        if args.dashboard_port is not None:
            try:
                dashboard = start_dashboard(session, args)
            except OSError as exc:
                print(f"error: {exc} (choose another with --dashboard-port, or --no-dashboard)", file=sys.stderr, flush=True)
                return 2
        stats = serve.controller_stats()
        ready = {"address": session.system.address, "recovery": stats["recovery"], "apps": len(serve.status().applications),
                 "dashboard": dashboard.url if dashboard is not None else ""}
        partial = f"{args.ready_file}.partial"
        with open(partial, "w") as fh:
            json.dump(ready, fh)
        os.replace(partial, args.ready_file)  # readers never see half a file
        stop.wait()
    finally:
        if supervisor is not None:
            supervisor.stop()
        if metrics is not None:
            metrics.shutdown()
        if dashboard is not None:
            dashboard.stop()
        serve.shutdown()
    return 0


def start_dashboard(session: Any, args: argparse.Namespace) -> Dashboard:
    """The head's dashboard, on ``--dashboard-port``.

    Raises:
        OSError: the port cannot be bound.
    """
    key = Path(args.dashboard_key_file).read_text().strip() if args.dashboard_key_file else secrets.token_urlsafe(32)
    links = {"address": session.system.address, "logs": args.log_dir or ""}
    if args.metrics_port:
        links["metrics"] = f"http://{args.host}:{args.metrics_port}/metrics"
    dashboard = Dashboard(session, args.host, args.dashboard_port, key, links)
    dashboard.start()
    return dashboard


if __name__ == "__main__":
    sys.exit(main())
