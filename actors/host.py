"""Run a process that hosts actors until its standard input closes.

    python -m actors.host --actor NAME=module:Class [--actor ...] [--config JSON]

Prints ``ADDRESS <address>`` on one line once every actor runs, then waits.
It stops cleanly when standard input reaches end of file (so it never outlives
a parent that holds the pipe), or on SIGTERM or SIGINT. ``--config`` takes a
JSON object of TransportConfig fields.
"""

from __future__ import annotations

import argparse
import json
import sys

from transport import TransportConfig

from ._config import Config
from ._imports import import_object
from ._process import stop_event
from ._system import ActorSystem


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m actors.host", description=__doc__.split("\n")[0])
    parser.add_argument("--actor", action="append", default=[], metavar="NAME=module:Class")
    parser.add_argument("--config", default="{}", help="JSON object of TransportConfig fields")
    args = parser.parse_args(argv)
    try:
        config = Config(transport=TransportConfig(**json.loads(args.config)))
        specs = []
        for spec in args.actor:
            name, sep, path = spec.partition("=")
            if not sep:
                raise ValueError(f"--actor expects NAME=module:Class, got {spec!r}")
            specs.append((name, import_object(path)))
    except (ValueError, TypeError, ImportError, AttributeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stop = stop_event(watch_stdin=True)
    with ActorSystem(config) as system:
        for name, cls in specs:
            system.spawn(cls, name=name)
        print(f"ADDRESS {system.address}", flush=True)
        while not stop.wait(1.0):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
