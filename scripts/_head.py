"""A cluster head run in the background by ``corral start``.

    python -m scripts._head --port P --workers N [--resources JSON] [--host H] --ready-file F

Binds the controller on ``tcp://HOST:PORT``, starts the workers, writes its
address to the ready file, and runs until SIGTERM or SIGINT; then it stops
its workers and exits.
"""

from __future__ import annotations

import argparse
import json
import sys

from actors import Config, ServeSettings, serve
from actors._process import stop_event
from actors.serve._session import current_session
from transport import TransportConfig, load_keys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts._head")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--resources", default="{}")
    parser.add_argument("--ready-file", required=True)
    parser.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on this port")
    parser.add_argument("--settings", default="{}", help="JSON of ServeSettings fields")
    parser.add_argument("--keys", help="directory of the cluster's CurveZMQ keys")
    args = parser.parse_args(argv)
    stop = stop_event(watch_stdin=False)
    resources = json.loads(args.resources)
    curve = load_keys(args.keys) if args.keys else None
    config = Config(
        transport=TransportConfig(host=args.host, port=args.port, curve=curve),
        serve=ServeSettings(**json.loads(args.settings)),
    )
    serve.start(workers=[dict(resources) for _ in range(args.workers)], config=config)
    metrics = None
    try:
        session = current_session()
        if args.metrics_port:
            from ._prometheus import serve_metrics

            metrics = serve_metrics(session, args.metrics_port, args.host)
        with open(args.ready_file, "w") as fh:
            json.dump({"address": session.system.address, "workers": [w.proc.pid for w in session.workers]}, fh)
        stop.wait()
    finally:
        if metrics is not None:
            metrics.shutdown()
        serve.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
