"""Gang bench: reserve and start K gangs, tear them down, and recover under chaos.

Over 4 workers (2 CPU each, members reserve 0.25 CPU): time to reserve and
start K gangs of size 4 and of size 8; teardown time; then, while requests
flow, a member is made to fail (its health checks) every second for a bounded
time: time back to HEALTHY after each failure (median, max), and the number of
incomplete gangs ever published to the handle (must be 0).

    python bench/bench_gang.py [--quick] [--json FILE]
"""

from __future__ import annotations

import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from actors import Config, ServeSettings, serve  # noqa: E402
from actors.serve._api import current_session  # noqa: E402
from bench._apps import GangMember  # noqa: E402
from bench._common import median, parse_args, print_table, wait_until, write_json  # noqa: E402

K = 4


def deployment(app: str) -> Any:
    return serve.status().applications[app].deployments["GangMember"]


def start_and_teardown(size: int, flag_dir: str) -> tuple[float, float]:
    app = f"gangs{size}"
    options = GangMember.options(num_replicas=K * size, gang_scheduling_config={"gang_size": size})
    start = time.perf_counter()
    serve.run(options.bind(flag_dir), name=app, route_prefix=None)
    started = time.perf_counter() - start
    assert deployment(app).replica_states == {"RUNNING": K * size}
    start = time.perf_counter()
    serve.delete(app)
    return started, time.perf_counter() - start


def chaos(seconds: float, flag_dir: str) -> dict[str, Any]:
    handle = serve.run(GangMember.options(num_replicas=K * 4).bind(flag_dir), name="chaos", route_prefix=None)
    handle.remote().result(timeout_s=10)
    router = current_session().router("chaos", "GangMember")
    published: list[Any] = []
    original = router.update

    def record(update: Any) -> None:
        published.append(update)
        original(update)

    router.update = record  # type: ignore[method-assign]
    failures: list[BaseException] = []
    sent = [0]
    stop = threading.Event()

    def traffic() -> None:
        while not stop.is_set():
            try:
                handle.remote().result(timeout_s=10)
                sent[0] += 1
            except BaseException as exc:  # noqa: BLE001 - counted
                failures.append(exc)

    threads = [threading.Thread(target=traffic) for _ in range(2)]
    for t in threads:
        t.start()
    rng = random.Random(11)
    recoveries = []
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            members = [r.replica_id for r in router._replicas]
            victim = rng.choice(members)
            Path(flag_dir, victim).write_text("")
            killed = time.perf_counter()
            wait_until(lambda: victim not in {r.replica_id for r in router._replicas}, 30)
            wait_until(lambda: deployment("chaos").status == "HEALTHY" and deployment("chaos").replica_states == {"RUNNING": K * 4}, 60)
            recoveries.append(time.perf_counter() - killed)
            threading.Event().wait(max(0.0, 1.0 - (time.perf_counter() - killed)))
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        serve.delete("chaos")
    partial = 0
    for update in published:
        gangs: dict[str, int] = {}
        for replica in update.replicas:
            gangs[replica.replica_id.rsplit(".", 1)[0]] = gangs.get(replica.replica_id.rsplit(".", 1)[0], 0) + 1
        partial += sum(1 for n in gangs.values() if n != 4)
    return {"recoveries": recoveries, "partial": partial, "published": len(published), "requests": sent[0], "failed": len(failures)}


def main() -> int:
    args = parse_args(__doc__.split("\n")[0])
    rounds, chaos_s = (3, 8.0) if args.quick else (7, 30.0)
    settings = ServeSettings(reconcile_interval_s=0.05)
    figures: dict[str, float | int | str] = {}
    with tempfile.TemporaryDirectory() as flag_dir:
        serve.start(workers=[{"CPU": 2}] * 4, config=Config(serve=settings))
        try:
            for size in (4, 8):
                samples = [start_and_teardown(size, flag_dir) for _ in range(rounds)]
                figures[f"start_gangs{size}_s"] = round(median([s[0] for s in samples]), 3)
                figures[f"teardown_gangs{size}_s"] = round(median([s[1] for s in samples]), 3)
            result = chaos(chaos_s, flag_dir)
        finally:
            serve.shutdown()
    figures["teardown_s"] = figures["teardown_gangs4_s"]
    figures["gangs"] = K
    figures["faults"] = len(result["recoveries"])
    figures["recover_p50_s"] = round(statistics.median(result["recoveries"]), 3)
    figures["recover_max_s"] = round(max(result["recoveries"]), 3)
    figures["partial_gangs_published"] = result["partial"]
    figures["replica_sets_published"] = result["published"]
    figures["chaos_requests"] = result["requests"]
    figures["chaos_failed_requests"] = result["failed"]
    print_table(
        f"gangs over 4 workers (median of {rounds} rounds)",
        ["", "size 4", "size 8"],
        [
            [f"reserve and start {K} gangs (s)", figures["start_gangs4_s"], figures["start_gangs8_s"]],
            ["tear down (s)", figures["teardown_gangs4_s"], figures["teardown_gangs8_s"]],
        ],
    )
    print_table(
        f"chaos: a gang member fails every second for {chaos_s:.0f}s while requests flow",
        ["faults", "back to HEALTHY p50 s", "max s", "incomplete gangs published", "sets published", "requests", "failed"],
        [[figures["faults"], figures["recover_p50_s"], figures["recover_max_s"], figures["partial_gangs_published"],
          figures["replica_sets_published"], figures["chaos_requests"], figures["chaos_failed_requests"]]],
    )
    write_json(args.json, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
