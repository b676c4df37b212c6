"""A corral head (controller + workers) in its own process, for benches.

    python bench/_cluster_head.py --workers N [--serve JSON]

Prints ``ADDRESS <controller address>`` and runs until stdin closes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from actors import Config, ServeSettings, serve  # noqa: E402
from actors.serve._api import current_session  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--serve", default="{}", help="JSON of ServeSettings fields")
    args = parser.parse_args()
    serve.start(workers=args.workers, config=Config(serve=ServeSettings(**json.loads(args.serve))))
    try:
        print(f"ADDRESS {current_session().controller}", flush=True)
        sys.stdin.read()
    finally:
        serve.shutdown()


if __name__ == "__main__":
    main()
