"""A worker process: a node agent that runs replicas for a controller.

    python -m actors.serve.worker --controller ADDRESS#controller --node-id ID
                                  [--resources JSON] [--config JSON]

Registers with the controller, prints ``ADDRESS <address>``, then runs until
its standard input closes or it gets SIGTERM/SIGINT; it then stops its
replicas and exits.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

from protocol import RegisterNode

from ..._config import Config, config_from_json
from ..._logging import configure_logging
from ..._process import stop_event
from ..._system import ActorSystem
from .._names import NODE_ACTOR
from ..client._proxy_server import PROXY_ACTOR, HttpProxy
from ..client._session import connect
from ._args import parse_resources, worker_args
from ._node import NodeAgent

__all__ = ["main", "parse_resources", "worker_args"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m actors.serve.worker")
    parser.add_argument("--controller", required=True)
    parser.add_argument("--node-id", default=f"worker-{os.getpid()}")
    parser.add_argument("--resources", default="{}")
    parser.add_argument("--config", default="{}")
    parser.add_argument("--detached", action="store_true", help="run until SIGTERM; do not watch standard input")
    parser.add_argument("--ready-file", help="write the worker's address to this file once registered")
    parser.add_argument("--log-dir", help="write each replica process's output to its own file here")
    parser.add_argument("--log-file", help="the file standard error goes to: kept under 16 MiB (copied to FILE.1, emptied)")
    args = parser.parse_args(argv)
    try:
        resources = parse_resources(args.resources)
        config = config_from_json(args.config) if args.config != "{}" else Config()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stop = stop_event(watch_stdin=not args.detached)
    configure_logging(f"worker {args.node_id}", config.log_format, level=logging.INFO if args.log_dir else logging.WARNING,
                      bounded_file=args.log_file)
    system = ActorSystem(config)
    try:
        session = connect(args.controller, config, system=system)
        system.spawn(
            NodeAgent, args.node_id, session, session.controller, resources,
            config.transport.liveness_window_s, log_dir=args.log_dir, name=NODE_ACTOR,
        )
        deadline = time.monotonic() + config.serve.worker_start_timeout_s
        while True:
            try:
                session.ask_controller(RegisterNode(args.node_id, system.address, resources))
                break
            except Exception as exc:
                if time.monotonic() > deadline or stop.is_set():
                    print(f"error: cannot register with the controller at {args.controller}: {exc}", file=sys.stderr)
                    return 1
                stop.wait(0.2)
        if config.http.proxy_location == "EveryNode":  # a proxy here too, sharing the port on this machine
            system.spawn(HttpProxy, session, config.http, args.node_id, True, name=PROXY_ACTOR)
        print(f"ADDRESS {system.address}", flush=True)
        if args.ready_file:
            with open(f"{args.ready_file}.partial", "w") as fh:
                fh.write(system.address)
            os.replace(f"{args.ready_file}.partial", args.ready_file)  # readers never see half a file
        stop.wait()
        return 0
    except (ConnectionError, RuntimeError) as exc:  # no controller; or the HTTP proxy cannot listen
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        system.shutdown()


if __name__ == "__main__":
    sys.exit(main())
