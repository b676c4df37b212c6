"""@serve.batch bench: a method with a fixed 5 ms cost per call, called by
64 concurrent requests, unbatched (one call per request, one at a time per
replica) against batched (up to 16 requests per call), in one run.

    python bench/bench_batch.py [--quick] [--json FILE]
"""

from __future__ import annotations

import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from actors import serve  # noqa: E402
from bench._apps import FixedCost  # noqa: E402
from bench._common import median, parse_args, print_table, write_json  # noqa: E402

IN_FLIGHT = 64


def throughput(call: Any, seconds: float) -> float:
    """Requests per second with IN_FLIGHT callers for about ``seconds``."""
    done = [0]
    stop = time.monotonic() + seconds

    def caller() -> None:
        while time.monotonic() < stop:
            call()
            done[0] += 1

    started = time.perf_counter()
    with ThreadPoolExecutor(IN_FLIGHT) as pool:
        for _ in range(IN_FLIGHT):
            pool.submit(caller)
    return done[0] / (time.perf_counter() - started)


def main() -> int:
    args = parse_args(__doc__.split("\n")[0])
    seconds, rounds = (3.0, 2) if args.quick else (8.0, 3)
    serve.start(workers=1, http_options={"proxy_location": "Disabled"})
    try:
        unbatched = serve.run(FixedCost.options(max_ongoing_requests=1).bind(), name="unbatched", route_prefix=None)
        batched = serve.run(FixedCost.bind(), name="batched", route_prefix=None)
        one = unbatched.one
        many = batched.many
        one.remote(0).result(timeout_s=30)
        many.remote(0).result(timeout_s=30)
        runs: dict[str, list[float]] = {"unbatched": [], "batched": []}
        for _ in range(rounds):
            runs["unbatched"].append(throughput(lambda: one.remote(1).result(timeout_s=60), seconds))
            runs["batched"].append(throughput(lambda: many.remote(1).result(timeout_s=60), seconds))
    finally:
        serve.shutdown()
    out: dict[str, float | int | str] = {
        "in_flight": IN_FLIGHT,
        "unbatched_rps": round(median(runs["unbatched"]), 1),
        "batched_rps": round(median(runs["batched"]), 1),
    }
    out["batched_vs_unbatched"] = round(float(out["batched_rps"]) / float(out["unbatched_rps"]), 2)
    print_table(f"a 5 ms-per-call method, {IN_FLIGHT} requests in flight (median of {rounds} rounds)",
                ["", "req/s"], [["one call per request", out["unbatched_rps"]],
                                ["@serve.batch(max_batch_size=16)", out["batched_rps"]],
                                ["batched / unbatched", out["batched_vs_unbatched"]]])
    write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
