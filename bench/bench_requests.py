"""Data-plane bench: requests through a deployment handle against raw pyzmq.

In one run: the raw pyzmq msgpack echo between two processes (the floor);
a corral no-op deployment with 2 replicas and max_ongoing_requests=32:
sequential ``.result()`` latency (p50, p99), and throughput with 64 requests
in flight from threads and from asyncio, with thread-mode replicas (the
figures earlier runs compare with) and with replicas in their own processes
(the default, ``process_*``), and for an ``async def`` method (``async_*``,
replicas in their own processes); and the same with Ray Serve when ``ray[serve]``
is importable (skipped otherwise; never a dependency).

    python bench/bench_requests.py [--quick] [--json FILE]
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from actors import serve  # noqa: E402
from bench._apps import AsyncNoop, Noop  # noqa: E402
from bench._common import Child, median, parse_args, percentile, print_table, sequential, write_json  # noqa: E402
from bench._raw_echo import RawClient  # noqa: E402

IN_FLIGHT = 64
THREADS = 4
PAYLOAD = [1, "request", None]


def threaded_rate(handle: Any, n: int) -> float:
    """n requests from THREADS threads, IN_FLIGHT in flight in all."""
    per_thread = n // THREADS
    window = IN_FLIGHT // THREADS

    def worker() -> None:
        pending: deque[Any] = deque()
        for _ in range(per_thread):
            pending.append(handle.remote(PAYLOAD))
            if len(pending) >= window:
                pending.popleft().result(timeout_s=60)
        while pending:
            pending.popleft().result(timeout_s=60)

    threads = [threading.Thread(target=worker) for _ in range(THREADS)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return per_thread * THREADS / (time.perf_counter() - start)


def asyncio_rate(handle: Any, n: int) -> float:
    """n requests from IN_FLIGHT coroutines on one event loop."""

    async def main() -> None:
        per_task = n // IN_FLIGHT

        async def one_task() -> None:
            for _ in range(per_task):
                await handle.remote(PAYLOAD)

        await asyncio.gather(*(one_task() for _ in range(IN_FLIGHT)))

    start = time.perf_counter()
    asyncio.run(main())
    return (n // IN_FLIGHT) * IN_FLIGHT / (time.perf_counter() - start)


def measure_corral(rounds: int, seq_n: int, rate_n: int, raw: RawClient) -> dict[str, list[float]]:
    keys = ("seq_p50", "seq_p99", "threads_rate", "asyncio_rate")
    figures: dict[str, list[float]] = {
        k: [] for k in ("raw_p50", "raw_p99", "raw_rate", *keys, *(f"{p}_{k}" for p in ("process", "async") for k in keys))
    }
    serve.start(workers=2)
    try:
        handles = {
            "": serve.run(Noop.options(num_replicas=2, max_ongoing_requests=32, isolation="thread").bind(), name="bench", route_prefix=None),
            "process_": serve.run(Noop.options(num_replicas=2, max_ongoing_requests=32).bind(), name="bench-process", route_prefix=None),
            "async_": serve.run(AsyncNoop.options(num_replicas=2, max_ongoing_requests=32).bind(), name="bench-async", route_prefix=None),
        }
        for handle in handles.values():
            sequential(lambda: handle.remote(PAYLOAD).result(timeout_s=30), 300)
        sequential(raw.one, 300)
        for _ in range(rounds):
            raw_seq = sequential(raw.one, seq_n)
            figures["raw_p50"].append(percentile(raw_seq, 50) * 1e6)
            figures["raw_p99"].append(percentile(raw_seq, 99) * 1e6)
            start = time.perf_counter()
            raw.pipelined(rate_n * 4, IN_FLIGHT)
            figures["raw_rate"].append(rate_n * 4 / (time.perf_counter() - start))
            for prefix, handle in handles.items():
                seq = sequential(lambda: handle.remote(PAYLOAD).result(timeout_s=30), seq_n)
                figures[f"{prefix}seq_p50"].append(percentile(seq, 50) * 1e6)
                figures[f"{prefix}seq_p99"].append(percentile(seq, 99) * 1e6)
                figures[f"{prefix}threads_rate"].append(threaded_rate(handle, rate_n))
                figures[f"{prefix}asyncio_rate"].append(asyncio_rate(handle, rate_n))
    finally:
        serve.shutdown()
    return figures


def measure_ray(seq_n: int, rate_n: int) -> dict[str, float] | None:
    try:
        import ray
        from ray import serve as ray_serve
    except ImportError:
        return None
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        @ray_serve.deployment(num_replicas=2, max_ongoing_requests=32)
        class RayNoop:
            def __call__(self, x: Any = None) -> Any:
                return x

        handle = ray_serve.run(RayNoop.bind(), name="bench", route_prefix=None)
        sequential(lambda: handle.remote(PAYLOAD).result(), 100)
        seq = sequential(lambda: handle.remote(PAYLOAD).result(), seq_n)
        return {
            "ray_seq_p50_us": percentile(seq, 50) * 1e6,
            "ray_seq_p99_us": percentile(seq, 99) * 1e6,
            "ray_threads_rps": threaded_rate(handle, rate_n),
        }
    finally:
        ray_serve.shutdown()
        ray.shutdown()


def _kind_figures(m: dict[str, float], kind: str) -> dict[str, float | int]:
    """The figures of one kind of deployment (``process``, ``async``), named ``<kind>_...``."""
    rate = max(m[f"{kind}_threads_rate"], m[f"{kind}_asyncio_rate"])
    return {
        f"{kind}_seq_p50_us": round(m[f"{kind}_seq_p50"], 1),
        f"{kind}_seq_p99_us": round(m[f"{kind}_seq_p99"], 1),
        f"{kind}_threads_rps": round(m[f"{kind}_threads_rate"]),
        f"{kind}_asyncio_rps": round(m[f"{kind}_asyncio_rate"]),
        f"{kind}_seq_p50_vs_raw": round(m[f"{kind}_seq_p50"] / m["raw_p50"], 2),
        f"{kind}_throughput_vs_raw": round(rate / m["raw_rate"], 3),
    }


def main() -> int:
    args = parse_args(__doc__.split("\n")[0])
    rounds, seq_n, rate_n = (3, 2000, 6400) if args.quick else (7, 5000, 25_600)
    with Child(["bench/_raw_echo.py"]) as server:
        raw = RawClient(server.address, PAYLOAD)
        try:
            samples = measure_corral(rounds, seq_n, rate_n, raw)
        finally:
            raw.close()
    m = {k: median(v) for k, v in samples.items()}
    best_rate = max(m["threads_rate"], m["asyncio_rate"])
    out: dict[str, float | int | str] = {
        "rounds": rounds,
        "raw_p50_us": round(m["raw_p50"], 1),
        "raw_p99_us": round(m["raw_p99"], 1),
        "raw_msgs_per_s": round(m["raw_rate"]),
        "seq_p50_us": round(m["seq_p50"], 1),
        "seq_p99_us": round(m["seq_p99"], 1),
        "seq_p50_vs_raw": round(m["seq_p50"] / m["raw_p50"], 2),
        "threads_rps": round(m["threads_rate"]),
        "asyncio_rps": round(m["asyncio_rate"]),
        "throughput_rps": round(best_rate),
        "throughput_vs_raw": round(best_rate / m["raw_rate"], 3),
        **_kind_figures(m, "process"),
        **_kind_figures(m, "async"),
        "threads_throughput_vs_raw": round(m["threads_rate"] / m["raw_rate"], 3),
    }
    ray = measure_ray(min(seq_n, 1000), min(rate_n, 3200))
    rows = [
        ["raw pyzmq echo (floor)", out["raw_p50_us"], out["raw_p99_us"], out["raw_msgs_per_s"], ""],
        ["corral handle, threads (thread replicas)", out["seq_p50_us"], out["seq_p99_us"], out["threads_rps"], ""],
        ["corral handle, asyncio (thread replicas)", "", "", out["asyncio_rps"], ""],
        ["corral handle, threads (process replicas)", out["process_seq_p50_us"], out["process_seq_p99_us"], out["process_threads_rps"], ""],
        ["corral handle, asyncio (process replicas)", "", "", out["process_asyncio_rps"], ""],
        ["async def method, threads (process replicas)", out["async_seq_p50_us"], out["async_seq_p99_us"], out["async_threads_rps"], ""],
        ["async def method, asyncio (process replicas)", "", "", out["async_asyncio_rps"], ""],
        ["corral / raw", out["seq_p50_vs_raw"], "", out["throughput_vs_raw"], "targets: <= 2.2, >= 0.30"],
        ["corral / raw, process replicas", out["process_seq_p50_vs_raw"], "", out["process_throughput_vs_raw"], ""],
        ["corral / raw, async def method", out["async_seq_p50_vs_raw"], "", out["async_throughput_vs_raw"], ""],
        ["corral / raw, from threads", "", "", out["threads_throughput_vs_raw"], "(thread replicas)"],
    ]
    if ray is None:
        out["ray"] = "skipped: ray[serve] is not installed"
        rows.append(["Ray Serve", "skipped", "", "", "ray[serve] not installed"])
    else:
        out.update({k: round(v, 1) for k, v in ray.items()})
        out["corral_vs_ray_seq_p50"] = round(ray["ray_seq_p50_us"] / m["seq_p50"], 1)
        out["corral_vs_ray_rps"] = round(m["threads_rate"] / ray["ray_threads_rps"], 1)
        rows.append(["Ray Serve handle, threads", out["ray_seq_p50_us"], out["ray_seq_p99_us"], out["ray_threads_rps"], ""])
        rows.append(["corral speed-up over Ray", out["corral_vs_ray_seq_p50"], "", out["corral_vs_ray_rps"], ""])
    print_table(
        f"no-op deployment, 2 replicas, max_ongoing_requests=32 (median of {rounds} rounds; {IN_FLIGHT} in flight for req/s)",
        ["", "p50 us", "p99 us", "req/s", ""],
        rows,
    )
    write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
