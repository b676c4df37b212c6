"""A worker process: a node agent that runs replicas for a controller.

    python -m actors.serve.worker --controller ADDRESS#controller --node-id ID
                                  [--resources JSON] [--config JSON]

Registers with the controller, prints ``ADDRESS <address>``, then runs until
its standard input closes or it gets SIGTERM/SIGINT; it then stops its
replicas and exits.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from protocol import RegisterNode

from .._config import Config, config_from_json
from .._process import stop_event
from .._system import ActorSystem
from ._node import NodeAgent


def parse_resources(text: str) -> dict[str, float]:
    """Parse a JSON object of resource amounts; CPU defaults to this machine's cores.

    Raises:
        ValueError: not a JSON object of non-negative numbers.
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--resources must be a JSON object: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"--resources must be a JSON object, got {data!r}")
    out: dict[str, float] = {}
    for name, amount in data.items():
        if isinstance(amount, bool) or not isinstance(amount, (int, float)) or amount < 0:
            raise ValueError(f"--resources: {name!r} must be a number >= 0, got {amount!r}")
        out[str(name)] = float(amount)
    out.setdefault("CPU", float(os.cpu_count() or 1))
    return out


def worker_args(
    controller: str, node_id: str, resources: str, config: str, ready_file: str | None = None, detached: bool = False
) -> list[str]:
    """The arguments (after the interpreter) that start a worker process.

    Args:
        controller: the controller's reference, ``ADDRESS#controller``.
        node_id: the worker's id.
        resources: a JSON object of resource amounts.
        config: a :func:`config_to_json` document.
        ready_file: where it writes its address once registered.
        detached: run until SIGTERM instead of until standard input closes.
    """
    args = ["-m", "actors.serve.worker", "--controller", controller, "--node-id", node_id,
            "--resources", resources, "--config", config]
    if detached:
        args.append("--detached")
    if ready_file:
        args += ["--ready-file", ready_file]
    return args


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m actors.serve.worker")
    parser.add_argument("--controller", required=True)
    parser.add_argument("--node-id", default=f"worker-{os.getpid()}")
    parser.add_argument("--resources", default="{}")
    parser.add_argument("--config", default="{}")
    parser.add_argument("--detached", action="store_true", help="run until SIGTERM; do not watch standard input")
    parser.add_argument("--ready-file", help="write the worker's address to this file once registered")
    args = parser.parse_args(argv)
    try:
        resources = parse_resources(args.resources)
        config = config_from_json(args.config) if args.config != "{}" else Config()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from ._session import connect  # here: _session imports this module for worker_args

    stop = stop_event(watch_stdin=not args.detached)
    system = ActorSystem(config)
    try:
        session = connect(args.controller, config, system=system)
        system.spawn(
            NodeAgent, args.node_id, session.resolve, session.controller, resources,
            config.transport.liveness_window_s, name="node",
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
        print(f"ADDRESS {system.address}", flush=True)
        if args.ready_file:
            with open(f"{args.ready_file}.partial", "w") as fh:
                fh.write(system.address)
            os.replace(f"{args.ready_file}.partial", args.ready_file)  # readers never see half a file
        stop.wait()
        return 0
    except ConnectionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        system.shutdown()


if __name__ == "__main__":
    sys.exit(main())
