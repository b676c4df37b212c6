"""A client process for the metrics bench: one handle to each of N apps,
light traffic to all, sustained load on the first K. Ends when stdin closes.

    python bench/_metrics_client.py ADDRESS --mode process|handle --apps N --hot K --serve JSON
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from actors import Config, ServeSettings, serve  # noqa: E402
from actors.serve import DeploymentHandle  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("address")
    parser.add_argument("--mode", choices=("process", "handle"), required=True)
    parser.add_argument("--apps", type=int, required=True)
    parser.add_argument("--hot", type=int, default=0)
    parser.add_argument("--serve", default="{}")
    args = parser.parse_args()
    settings = ServeSettings(**{**json.loads(args.serve), "metrics_mode": args.mode})
    serve.start(address=args.address, config=Config(serve=settings))
    stop = threading.Event()
    try:
        handles = [DeploymentHandle(f"app{i}", "Noop") for i in range(args.apps)]
        for h in handles:
            h.remote(0).result(timeout_s=60)

        def hot_load(handle: Any) -> None:
            while not stop.is_set():
                try:
                    handle.hold.remote(0.2).result(timeout_s=60)
                except Exception:
                    if not stop.is_set():
                        raise
                    return  # this client is shutting down

        workers = [threading.Thread(target=hot_load, args=(handles[i],), daemon=True) for i in range(args.hot) for _ in range(2)]
        for t in workers:
            t.start()

        def light_load() -> None:
            while not stop.wait(settings.metrics_push_interval_s):
                try:
                    for response in [h.remote(0) for h in handles[args.hot:]]:
                        response.result(timeout_s=60)
                except Exception:
                    if not stop.is_set():
                        raise
                    return  # this client is shutting down

        threading.Thread(target=light_load, daemon=True).start()
        print("READY", flush=True)
        sys.stdin.read()
    finally:
        stop.set()
        serve.shutdown()


if __name__ == "__main__":
    main()
