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
import sys
from pathlib import Path

from actors import Config, HttpOptions, ServeSettings, serve
from actors._process import stop_event
from actors.serve import CheckpointError, StoreError
from actors.serve._api import current_session
from transport import TransportConfig, load_keys

from ._supervisor import WorkerSupervisor


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
    args = parser.parse_args(argv)
    stop = stop_event(watch_stdin=False)
    curve = load_keys(args.keys) if args.keys else None
    settings = {**json.loads(args.settings), "checkpoint_store": args.store, "checkpoint_recovery": args.recovery}
    config = Config(
        transport=TransportConfig(**{**json.loads(args.transport), "host": args.host, "port": args.port, "curve": curve}),
        serve=ServeSettings(**settings),
        http=HttpOptions.from_dict(json.loads(args.http)),
    )
    try:
        serve.start(workers=[], config=config)
    except (CheckpointError, StoreError, RuntimeError) as exc:  # RuntimeError: the HTTP proxy cannot listen
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    metrics = None
    supervisor = WorkerSupervisor(Path(args.head_file)) if args.head_file else None
    try:
        session = current_session()
        if supervisor is not None:
            supervisor.start()
        if args.metrics_port:
            from ._prometheus import serve_metrics

            metrics = serve_metrics(session, args.metrics_port, args.host, supervisor)
        stats = serve.controller_stats()
        ready = {"address": session.system.address, "recovery": stats["recovery"], "apps": len(serve.status().applications)}
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
        serve.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
