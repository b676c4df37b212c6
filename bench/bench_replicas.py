"""Replica processes bench: CPU scaling, start-to-ready from the zygote, and
deploying 64 replicas, process mode against thread mode, in one run.

(a) On one worker, a CPU-bound pure-Python method: requests/s of 2 replicas
over 1, with replicas in their own processes and as threads of the worker.
(b) Replica start-to-ready from the zygote (the node agent's fork of a
pre-imported interpreter, constructor included) against a cold
``python -c "import actors.serve"`` measured in the same run.
(c) A 64-replica deployment from ``serve.run`` to all RUNNING, both modes.

    python bench/bench_replicas.py [--quick] [--json FILE]
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import msgpack  # noqa: E402

from actors import serve  # noqa: E402
from actors.serve.worker._children import ChildReady, ReplicaProcesses  # noqa: E402
from actors.serve.worker._replica_process import ReplicaPlan  # noqa: E402
from actors._config import Config, config_to_json  # noqa: E402
from bench._apps import Noop, Spin  # noqa: E402
from bench._common import ROOT, median, parse_args, percentile, print_table, write_json  # noqa: E402
from protocol import DeploymentSpec, encode_fields  # noqa: E402

SPIN_N = 250_000  # about 20 ms of pure Python here: the request path is a small part of it
CLIENTS = 8


def cpu_rate(isolation: str, replicas: int, seconds: float) -> float:
    """Requests/s of the Spin deployment with ``replicas`` replicas on the one worker."""
    handle = serve.run(Spin.options(num_replicas=replicas, isolation=isolation).bind(), name=f"spin-{isolation}-{replicas}", route_prefix=None)
    for _ in range(20):
        handle.remote(SPIN_N).result(timeout_s=60)
    done = [0] * CLIENTS
    stop = threading.Event()

    def client(i: int) -> None:
        while not stop.is_set():
            handle.remote(SPIN_N).result(timeout_s=60)
            done[i] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    time.sleep(0.5)  # warm-up under load: not synchronisation, a measurement window
    before, start = sum(done), time.perf_counter()
    stop.wait(seconds)
    rate = (sum(done) - before) / (time.perf_counter() - start)
    stop.set()
    for t in threads:
        t.join()
    serve.delete(f"spin-{isolation}-{replicas}")
    return rate


def zygote_starts(n: int) -> list[float]:
    """Start-to-ready of n replica processes (a no-op deployment) from the zygote."""
    ready: dict[str, float] = {}
    arrived = threading.Condition()

    def report(event: Any) -> None:
        if isinstance(event, ChildReady):
            with arrived:
                ready[event.replica_id] = time.perf_counter() if event.error is None else float("nan")
                arrived.notify_all()

    children = ReplicaProcesses(report)
    spec = DeploymentSpec("bench", "Noop", "bench._apps:Noop", None, [], {}, Noop.config.to_dict(), "v1", [str(ROOT)])
    blob = msgpack.packb(encode_fields(spec), use_bin_type=True)
    config = config_to_json(Config())
    samples = []
    try:
        for i in range(n + 2):
            rid = f"bench.Noop.{i}"
            plan = ReplicaPlan(rid, "bench", blob, None, "ipc:///nonexistent#controller", config, {}, 60.0)
            started = time.perf_counter()
            children.start(plan)
            with arrived:
                if not arrived.wait_for(lambda: rid in ready, 60):
                    raise TimeoutError(f"replica {rid} did not start within 60 s")
            if i >= 2:  # the first two warm the zygote
                samples.append(ready[rid] - started)
            children.stop(rid, 0.0)
    finally:
        children.close()
    return samples


def cold_imports(n: int) -> list[float]:
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import actors.serve"], check=True, cwd=ROOT)
        samples.append(time.perf_counter() - started)
    return samples


def deploy_many(isolation: str, replicas: int) -> float:
    started = time.perf_counter()
    serve.run(Noop.options(num_replicas=replicas, isolation=isolation).bind(), name=f"many-{isolation}", route_prefix=None)
    elapsed = time.perf_counter() - started
    serve.delete(f"many-{isolation}")
    return elapsed


def main() -> int:
    args = parse_args(__doc__.split("\n")[0])
    seconds, starts, many = (2.0, 8, 64) if args.quick else (5.0, 30, 64)
    out: dict[str, float | int | str] = {}
    zygote = zygote_starts(starts)
    cold = cold_imports(starts)
    out["start_to_ready_p50_ms"] = round(median(zygote) * 1000, 1)
    out["start_to_ready_p99_ms"] = round(percentile(zygote, 99) * 1000, 1)
    out["cold_import_p50_ms"] = round(median(cold) * 1000, 1)
    out["start_speedup"] = round(median(cold) / median(zygote), 1)
    serve.start(workers=[{"CPU": 2}])
    try:
        rates = {(mode, n): cpu_rate(mode, n, seconds) for mode in ("process", "thread") for n in (1, 2)}
        deploys = {mode: deploy_many(mode, many) for mode in ("process", "thread")}
    finally:
        serve.shutdown()
    for (mode, n), rate in rates.items():
        out[f"cpu_{mode}_{n}_rps"] = round(rate, 1)
    out["cpu_scaling_process"] = round(rates[("process", 2)] / rates[("process", 1)], 2)
    out["cpu_scaling_thread"] = round(rates[("thread", 2)] / rates[("thread", 1)], 2)
    out["deploy_64_process_s"] = round(deploys["process"], 2)
    out["deploy_64_thread_s"] = round(deploys["thread"], 2)
    print_table(
        f"(a) CPU-bound pure Python on one worker ({CLIENTS} clients, {seconds:.0f} s each)",
        ["", "1 replica req/s", "2 replicas req/s", "2 over 1", "target"],
        [
            ["process replicas", out["cpu_process_1_rps"], out["cpu_process_2_rps"], out["cpu_scaling_process"], ">= 1.7"],
            ["thread replicas", out["cpu_thread_1_rps"], out["cpu_thread_2_rps"], out["cpu_scaling_thread"], "about 1.1"],
        ],
    )
    print_table(
        f"(b) replica start-to-ready ({starts} starts)",
        ["", "p50 ms", "p99 ms", "", "target"],
        [
            ["from the zygote (constructor included)", out["start_to_ready_p50_ms"], out["start_to_ready_p99_ms"], "", ""],
            ["cold `python -c 'import actors.serve'`", out["cold_import_p50_ms"], "", "", ""],
            ["speed-up", out["start_speedup"], "", "", ">= 5"],
        ],
    )
    print_table(
        f"(c) a {many}-replica deployment, serve.run to all RUNNING",
        ["", "seconds"],
        [["process mode", out["deploy_64_process_s"]], ["thread mode", out["deploy_64_thread_s"]]],
    )
    write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
