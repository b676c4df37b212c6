"""Control plane at scale: many applications, many replicas (thread mode).

(1) One-replica applications deployed one after another up to 10,000 (1,000
with --quick): the time of each ``serve.run`` at 1, 100, 1,000 and 10,000
apps (median of the ten around that point), the last over the first, the
controller's loop p50/p99, its process's resident memory and ``status()``.
(2) One deployment of 4,096 and 16,384 replicas over 4 workers (1,024 and
4,096 with --quick): time to all RUNNING, loop p99, ``status()`` time, and the
idle CPU of the controller's process and of the workers over a quiet window.
``status()`` is the median of three calls in a row (Ray Serve's shape: counts
by state); ``status(replicas=True)``, with a row per replica, is measured the
same way, and its first call (rows built afresh, not reused) is reported too.

    python bench/bench_scale.py [--quick] [--json FILE]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil  # noqa: E402

from actors import Config, ServeSettings, serve  # noqa: E402
from bench._apps import Noop  # noqa: E402
from bench._common import median, parse_args, print_table, wait_until, write_json  # noqa: E402

SETTINGS = ServeSettings(reconcile_interval_s=0.1, run_timeout_s=1800.0, control_timeout_s=120.0)


def timed_status(replicas: bool = False) -> float:
    start = time.perf_counter()
    serve.status(replicas=replicas)
    return (time.perf_counter() - start) * 1000


def loop_stats(window_s: float) -> dict[str, float]:
    before = serve.controller_stats(reset=True)["ticks"]
    wait_until(lambda: serve.controller_stats()["ticks"] >= before + window_s / SETTINGS.reconcile_interval_s * 0.8,
               window_s * 4, "the measurement window", poll_s=0.5)
    return serve.controller_stats()


def many_apps(counts: list[int]) -> dict[str, float]:
    out: dict[str, float] = {}
    times: list[float] = []
    serve.start(workers=4, config=Config(serve=SETTINGS))
    try:
        for i in range(counts[-1]):
            start = time.perf_counter()
            serve.run(Noop.options(isolation="thread").bind(), name=f"app{i}", route_prefix=None)
            times.append(time.perf_counter() - start)
            if i + 1 in counts:
                n = i + 1
                out[f"deploy_ms_{n}"] = round(median(times[max(0, n - 10):n]) * 1000, 2)
                print(f"  {n} apps: serve.run {out[f'deploy_ms_{n}']} ms", flush=True)
        stats = loop_stats(5.0)
        n = counts[-1]
        out[f"loop_ms_p50_{n}_apps"] = round(stats["loop_ms_p50"], 2)
        out[f"loop_ms_p99_{n}_apps"] = round(stats["loop_ms_p99"], 2)
        out[f"controller_rss_mib_{n}_apps"] = round(psutil.Process().memory_info().rss / 2**20, 1)
        out[f"status_ms_{n}_apps"] = round(median([timed_status() for _ in range(3)]), 1)
        out["deploy_total_s"] = round(sum(times), 1)
        out["deploy_last_over_first"] = round(out[f"deploy_ms_{n}"] / out["deploy_ms_1"], 2)
    finally:
        serve.shutdown()
    return out


def many_replicas(n: int) -> dict[str, float]:
    out: dict[str, float] = {}
    serve.start(workers=4, config=Config(serve=SETTINGS))
    try:
        start = time.perf_counter()
        serve.run(Noop.options(num_replicas=n, max_ongoing_requests=1, isolation="thread").bind(), name="big", route_prefix=None)
        out[f"run_s_{n}"] = round(time.perf_counter() - start, 2)
        stats = loop_stats(10.0)
        out[f"loop_p50_ms_{n}"] = round(stats["loop_ms_p50"], 2)
        out[f"loop_p99_ms_{n}"] = round(stats["loop_ms_p99"], 2)
        out[f"status_ms_{n}"] = round(median([timed_status() for _ in range(3)]), 1)
        times = [timed_status(replicas=True) for _ in range(3)]
        out[f"status_replicas_ms_{n}"] = round(median(times), 1)
        out[f"status_replicas_first_ms_{n}"] = round(times[0], 1)  # rows built afresh; the next calls within a second reuse them
        me = psutil.Process()
        workers = [p for p in me.children(recursive=True) if "actors.serve.worker" in " ".join(p.cmdline())]
        for p in [me, *workers]:
            p.cpu_percent(None)
        time.sleep(5.0)  # a quiet window to measure idle CPU over, not synchronisation
        out[f"idle_controller_cpu_pct_{n}"] = round(me.cpu_percent(None), 1)
        out[f"idle_worker_cpu_pct_{n}"] = round(max(p.cpu_percent(None) for p in workers), 1)
    finally:
        serve.shutdown()
    return out


def main() -> int:
    args = parse_args(__doc__.split("\n")[0])
    counts = [1, 100, 300] if args.quick else [1, 100, 1000, 10_000]
    sizes = [1024, 4096] if args.quick else [4096, 16_384]
    print(f"deploying {counts[-1]} one-replica apps one after another ...", flush=True)
    out: dict[str, float | int | str] = dict(many_apps(counts))
    for n in sizes:
        print(f"one deployment of {n} replicas over 4 workers ...", flush=True)
        out.update(many_replicas(n))
    last = counts[-1]
    print_table(
        f"{last} one-replica applications, deployed one after another (4 workers, thread mode)",
        ["", "value", "target"],
        [*([f"serve.run at {c} apps (ms)", out[f"deploy_ms_{c}"], ""] for c in counts),
         ["last over first", out["deploy_last_over_first"], "<= 3"],
         ["controller loop p50 / p99 (ms)", f"{out[f'loop_ms_p50_{last}_apps']} / {out[f'loop_ms_p99_{last}_apps']}", ""],
         ["controller process RSS (MiB)", out[f"controller_rss_mib_{last}_apps"], ""],
         ["status() (ms)", out[f"status_ms_{last}_apps"], ""]],
    )
    print_table(
        "one deployment, many replicas over 4 workers (thread mode)",
        ["replicas", "to RUNNING s", "loop p50 ms", "loop p99 ms", "status() ms", "status(replicas) ms", "its first ms",
         "idle controller %", "idle worker %"],
        [[n, out[f"run_s_{n}"], out[f"loop_p50_ms_{n}"], out[f"loop_p99_ms_{n}"], out[f"status_ms_{n}"],
          out[f"status_replicas_ms_{n}"], out[f"status_replicas_first_ms_{n}"], out[f"idle_controller_cpu_pct_{n}"],
          out[f"idle_worker_cpu_pct_{n}"]] for n in sizes],
    )
    print("targets at 16,384: loop p99 <= 20 ms, status() <= 50 ms, idle worker CPU <= 10 %")
    write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
