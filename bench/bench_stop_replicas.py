"""Seed 000's bench: stop k of N replicas in the REAL replica state container.

Three strategies, one run, same inputs:
  pop-all     the seed's "old": pop every replica, keep the ones to stop, re-add
              the rest (each re-add rebuilds the replica's details object);
  single-pass the seed's "new": one scan over every state, early stop once all
              targets are found, then remove the matches;
  ours        the container's indexed remove: O(k) look-ups, nothing else touched.
Scenarios: stop 2 (downscale), stop all (teardown), stop 10 %.
Columns as in the seed: median us, peak KiB allocated (tracemalloc), details rebuilt.

    python bench/bench_stop_replicas.py [--quick] [--json FILE]
"""

from __future__ import annotations

import dataclasses
import gc
import random
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from actors.serve.head._deployment_state import ReplicaRecord  # noqa: E402
from actors.serve.head._replica_states import ALL_STATES, ReplicaState, ReplicaStateContainer  # noqa: E402
from bench._common import median, parse_args, print_table, write_json  # noqa: E402

Container = ReplicaStateContainer[ReplicaRecord]
Strategy = Callable[[Container, set[str]], tuple[list[str], int]]


def pop_all(c: Container, targets: set[str]) -> tuple[list[str], int]:
    stopped, rebuilt = [], 0
    for rid, state, record in c.pop():
        if rid in targets:
            stopped.append(rid)
        else:
            c.add(state, rid, dataclasses.replace(record))
            rebuilt += 1
    return stopped, rebuilt


def single_pass(c: Container, targets: set[str]) -> tuple[list[str], int]:
    found: list[str] = []
    want = len(targets)
    for state in ALL_STATES:
        for rid, _ in c.in_state(state):
            if rid in targets:
                found.append(rid)
                if len(found) == want:
                    break
        if len(found) == want:
            break
    c.remove(found)
    return found, 0


def ours(c: Container, targets: set[str]) -> tuple[list[str], int]:
    return [rid for rid, _, _ in c.remove(targets)], 0


STRATEGIES: dict[str, Strategy] = {"popall": pop_all, "singlepass": single_pass, "ours": ours}


def population(n: int) -> list[tuple[ReplicaState, str, ReplicaRecord]]:
    out = []
    for i in range(n):
        rid = f"app.model.{i:06x}"
        state = ReplicaState.STARTING if i % 20 == 0 else ReplicaState.UPDATING if i % 20 == 1 else ReplicaState.RUNNING
        out.append((state, rid, ReplicaRecord(rid, f"worker-{i % 4}", "ipc://w", "v1", {"CPU": 0.1}, 0)))
    return out


def fill(pop: list[tuple[ReplicaState, str, ReplicaRecord]]) -> Container:
    c: Container = ReplicaStateContainer()
    for state, rid, record in pop:
        c.add(state, rid, record)
    return c


def measure(n: int, k: int, strategy: Strategy, trials: int, rng: random.Random) -> tuple[float, float, int]:
    pop = population(n)
    ids = [rid for _, rid, _ in pop]
    times = []
    rebuilt = 0
    gc.disable()
    try:
        for _ in range(trials):
            c = fill(pop)
            targets = set(rng.sample(ids, k))
            start = time.perf_counter_ns()
            stopped, rebuilt = strategy(c, targets)
            times.append((time.perf_counter_ns() - start) / 1000)
            assert len(stopped) == k and len(c) == n - k
    finally:
        gc.enable()
    c = fill(pop)
    targets = set(rng.sample(ids, k))
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    strategy(c, targets)
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return median(times), peak / 1024, rebuilt


def main() -> int:
    args = parse_args(__doc__.split("\n")[0])
    sizes = [16, 64, 256, 1024, 4096, 16384]
    rng = random.Random(7)
    figures: dict[str, float | int | str] = {}
    for label, k_of in (("k2", lambda n: 2), ("kN", lambda n: n), ("k10pct", lambda n: max(1, n // 10))):
        rows = []
        for n in sizes:
            budget = 60_000 if args.quick else 400_000
            trials = max(9 if args.quick else 21, min(401, budget // n))
            row: list[object] = [n, k_of(n)]
            results = {name: measure(n, k_of(n), fn, trials, rng) for name, fn in STRATEGIES.items()}
            for name in STRATEGIES:
                us, kib, rebuilt = results[name]
                figures[f"{name}_us_n{n}_{label}"] = round(us, 2)
                figures[f"{name}_kib_n{n}_{label}"] = round(kib, 2)
                figures[f"{name}_rebuilds_n{n}_{label}"] = rebuilt
                row += [us, kib, rebuilt]
            row += [results["popall"][0] / results["ours"][0], results["singlepass"][0] / results["ours"][0]]
            rows.append(row)
        print_table(
            f"stop {label.replace('k2', '2').replace('kN', 'all N').replace('k10pct', '10 %')} of N replicas (median us, peak KiB, details rebuilt)",
            ["N", "k", "popall us", "KiB", "rebuilt", "1-pass us", "KiB", "rebuilt", "ours us", "KiB", "rebuilt", "popall/ours", "1-pass/ours"],
            rows,
        )
    figures["ours_vs_popall_n4096_k2"] = round(figures["popall_us_n4096_k2"] / figures["ours_us_n4096_k2"], 1)  # type: ignore[operator]
    figures["ours_vs_singlepass_n4096_k2"] = round(figures["singlepass_us_n4096_k2"] / figures["ours_us_n4096_k2"], 1)  # type: ignore[operator]
    figures["ours_n4096_over_n64_k2"] = round(figures["ours_us_n4096_k2"] / figures["ours_us_n64_k2"], 2)  # type: ignore[operator]
    figures["ours_rebuilds_n4096_k2"] = figures["ours_rebuilds_n4096_k2"]
    figures["ours_vs_singlepass_teardown_n4096"] = round(figures["singlepass_us_n4096_kN"] / figures["ours_us_n4096_kN"], 2)  # type: ignore[operator]
    print(
        "\nat N=4096, k=2: ours is {ours_vs_popall_n4096_k2}x faster than pop-all (target >= 20), "
        "{ours_vs_singlepass_n4096_k2}x faster than single-pass (target >= 5); "
        "ours at N=4096 / ours at N=64 = {ours_n4096_over_n64_k2} (target <= 1.5); "
        "rebuilds {ours_rebuilds_n4096_k2} (target 0); teardown single-pass/ours = {ours_vs_singlepass_teardown_n4096} (target >= 1)".format(**figures)
    )
    write_json(args.json, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
