"""Control-plane bench: deploy, scale, delete, and the reconcile loop at scale.

With a trivial deployment on 2 worker processes: time from ``serve.run``
(num_replicas=8) to all RUNNING; time to scale 8 -> 2 until only 2 replicas
exist; time to delete; with thread-mode replicas (the figures earlier runs
compare with) and with replicas in their own processes (``process_*``). Then the controller's reconcile-loop iteration time in
steady state with 4096 lightweight replicas over 4 workers (the controller
times its own loop). Ray Serve's figures on this kind of machine (from the
issue, for scale): 2.1 s to run 2, 6.3 s to reach 8, 6.1 s to scale 8 -> 2,
about 0.9 s per loop iteration at 8192 replicas.

    python bench/bench_control_plane.py [--quick] [--json FILE]
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from actors import Config, ServeSettings  # noqa: E402
from actors import serve  # noqa: E402
from bench._apps import Noop  # noqa: E402
from bench._common import median, parse_args, print_table, wait_until, write_json  # noqa: E402

RAY = {"run8_s": 6.3, "scale_8_to_2_s": 6.1, "run2_s": 2.1}


def replica_states(app: str) -> dict[str, int]:
    a = serve.status().applications.get(app)
    return {} if a is None else a.deployments["Noop"].replica_states


def lifecycle_round(app: str, isolation: str) -> dict[str, float]:
    start = time.perf_counter()
    handle = serve.run(Noop.options(num_replicas=2, isolation=isolation).bind(), name=app, route_prefix=None)
    run2 = time.perf_counter() - start
    serve.delete(app)
    start = time.perf_counter()
    handle = serve.run(Noop.options(num_replicas=8, isolation=isolation).bind(), name=app, route_prefix=None)
    run8 = time.perf_counter() - start
    assert handle.remote(1).result(timeout_s=10) == 1
    start = time.perf_counter()
    serve.run(Noop.options(num_replicas=2, isolation=isolation).bind(), name=app, wait_for_ready=False, route_prefix=None)
    wait_until(lambda: replica_states(app) == {"RUNNING": 2}, 60)
    scale = time.perf_counter() - start
    start = time.perf_counter()
    serve.delete(app)
    delete = time.perf_counter() - start
    return {"run2_s": run2, "run8_s": run8, "scale_8_to_2_s": scale, "delete_s": delete}


def main() -> int:
    args = parse_args(__doc__.split("\n")[0])
    rounds = 3 if args.quick else 7
    settings = ServeSettings(reconcile_interval_s=0.1)
    figures: dict[str, float | int | str] = {}
    serve.start(workers=2, config=Config(serve=settings))
    try:
        samples = [lifecycle_round(f"bench{i}", "thread") for i in range(rounds)]
        process = [lifecycle_round(f"bench-p{i}", "process") for i in range(rounds)]
    finally:
        serve.shutdown()
    for key in ("run2_s", "run8_s", "scale_8_to_2_s", "delete_s"):
        figures[key] = round(median([s[key] for s in samples]), 3)
        figures[f"process_{key}"] = round(median([s[key] for s in process]), 3)
    n = 4096
    store = Path(tempfile.mkdtemp(prefix="corral-bench-")) / "checkpoint.sqlite"
    start = time.perf_counter()
    serve.start(workers=4, config=Config(serve=dataclasses.replace(settings, checkpoint_store=f"sqlite:///{store}")))
    try:
        serve.run(Noop.options(num_replicas=n, max_ongoing_requests=1, isolation="thread").bind(), name="big", timeout_s=600, route_prefix=None)
        figures["run4096_s"] = round(time.perf_counter() - start, 2)
        # steady state only: a fresh window that spans more than one health-check period
        window = 12.0 if args.quick else 40.0
        before = serve.controller_stats(reset=True)["ticks"]
        # polled slowly: every statistics ask is work for the loop being measured
        wait_until(
            lambda: serve.controller_stats()["ticks"] >= before + window / settings.reconcile_interval_s * 0.9,
            window * 3, "the measurement window", poll_s=0.5,
        )
        stats = serve.controller_stats()
        figures["loop_ms_p50_4096"] = round(stats["loop_ms_p50"], 3)
        figures["loop_ms_p99_4096"] = round(stats["loop_ms_p99"], 3)
        figures["loop_ms_max_4096"] = round(stats["loop_ms_max"], 3)
        figures["loop_ticks_measured"] = stats["loop_samples"]
        figures["checkpoint_write_ms_max_4096"] = stats["recovery"]["checkpoint_ms_max"]
        figures["checkpoint_kib_4096"] = round(stats["recovery"]["checkpoint_bytes"] / 1024, 1)
        assert stats["replicas"] == n, stats
        d = serve.status().applications["big"].deployments["Noop"]
        assert d.replica_states == {"RUNNING": n}, d
    finally:
        serve.shutdown()
        shutil.rmtree(store.parent, ignore_errors=True)
    figures["rounds"] = rounds
    for key, ray in RAY.items():
        figures[f"{key}_speedup_vs_ray"] = round(ray / figures[key], 1)  # type: ignore[operator]
    print_table(
        f"control plane, trivial deployment, 2 workers (median of {rounds} rounds)",
        ["", "corral s", "Ray Serve s (issue)", "speed-up", "target"],
        [
            ["run 2 replicas", figures["run2_s"], RAY["run2_s"], figures["run2_s_speedup_vs_ray"], ""],
            ["run 8 replicas", figures["run8_s"], RAY["run8_s"], figures["run8_s_speedup_vs_ray"], ">= 10x"],
            ["scale 8 -> 2", figures["scale_8_to_2_s"], RAY["scale_8_to_2_s"], figures["scale_8_to_2_s_speedup_vs_ray"], ">= 10x"],
            ["delete", figures["delete_s"], "n/a", "", ""],
            ["run 2, process replicas", figures["process_run2_s"], RAY["run2_s"], round(RAY["run2_s"] / figures["process_run2_s"], 1), ""],  # type: ignore[operator]
            ["run 8, process replicas", figures["process_run8_s"], RAY["run8_s"], round(RAY["run8_s"] / figures["process_run8_s"], 1), ""],  # type: ignore[operator]
            ["scale 8 -> 2, process replicas", figures["process_scale_8_to_2_s"], RAY["scale_8_to_2_s"],
             round(RAY["scale_8_to_2_s"] / figures["process_scale_8_to_2_s"], 1), ""],  # type: ignore[operator]
            ["delete, process replicas", figures["process_delete_s"], "n/a", "", ""],
        ],
    )
    print_table(
        f"reconcile loop in steady state, {n} replicas over 4 workers",
        ["", "ms", "target"],
        [
            ["loop iteration p50", figures["loop_ms_p50_4096"], "<= 10"],
            ["loop iteration p99", figures["loop_ms_p99_4096"], ""],
            ["loop iteration max", figures["loop_ms_max_4096"], ""],
            ["time to run all 4096 (s)", figures["run4096_s"], ""],
            ["checkpoint write, slowest (SQLite)", figures["checkpoint_write_ms_max_4096"], ""],
            ["checkpoint size (KiB)", figures["checkpoint_kib_4096"], ""],
        ],
    )
    write_json(args.json, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
