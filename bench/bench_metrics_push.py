"""Metrics bench (seed 002): one push per process against one push per handle.

M handles (1000) spread over P client processes (4), each with light traffic
and a few hot deployments. Both modes run against the same head with the same
push interval, and report: messages per push interval the controller receives
(from the client processes), controller CPU seconds per minute (the controller
process's own accounting), payload bytes per interval; and whether the
autoscaling decisions of the two modes agree.

    python bench/bench_metrics_push.py [--quick] [--json FILE]
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from actors import Config, ServeSettings, serve  # noqa: E402
from actors.serve._autoscaling import AutoscalingConfig, PolicyContext, desired_replicas  # noqa: E402
from bench._apps import Noop  # noqa: E402
from bench._common import Child, parse_args, print_table, write_json  # noqa: E402

PROCESSES = 4
HANDLES = 1000
HOT = 5


def measure(address: str, mode: str, settings_json: str, window_s: float, push_s: float, autoscaling: AutoscalingConfig) -> dict[str, float]:
    apps = HANDLES // PROCESSES
    clients = [
        Child(["bench/_metrics_client.py", address, "--mode", mode, "--apps", str(apps), "--hot", str(HOT), "--serve", settings_json], ready="READY")
        for _ in range(PROCESSES)
    ]
    try:
        pause = threading.Event()
        pause.wait(3 * push_s)  # warm up: let every client settle into its push rhythm
        before = serve.controller_stats()
        start = time.monotonic()
        pause.wait(window_s)
        after = serve.controller_stats()
        elapsed = time.monotonic() - start
        intervals = elapsed / push_s
        status = serve.status()
        workers = {n.address for n in status.nodes}
        client_msgs = sum(
            count - before["metrics_by_sender"].get(sender, 0)
            for sender, count in after["metrics_by_sender"].items()
            if sender not in workers
        )
        decisions = {}
        for i in range(apps):
            auto = status.applications[f"app{i}"].deployments["Noop"].autoscaling
            ctx = PolicyContext(autoscaling, 1, 1, auto["total_requests"], False)
            decisions[f"app{i}"] = desired_replicas(ctx)
        return {
            "msgs_per_interval": (after["metrics_messages"] - before["metrics_messages"]) / intervals,
            "client_msgs_per_interval": client_msgs / intervals,
            "bytes_per_interval": (after["metrics_bytes"] - before["metrics_bytes"]) / intervals,
            "cpu_s_per_min": (after["process_cpu_s"] - before["process_cpu_s"]) / elapsed * 60,
            "reports_per_interval": (after["metrics_reports"] - before["metrics_reports"]) / intervals,
            "decisions": decisions,  # type: ignore[dict-item]
        }
    finally:
        for client in clients:
            client.close()


def main() -> int:
    args = parse_args(__doc__.split("\n")[0])
    push_s, record_s, window_s = (0.5, 0.1, 5.0) if args.quick else (2.0, 0.5, 40.0)
    settings = {"metrics_push_interval_s": push_s, "metrics_record_interval_s": record_s, "reconcile_interval_s": 0.1}
    settings_json = json.dumps(settings)
    autoscaling = AutoscalingConfig(
        target_ongoing_requests=1, min_replicas=1, max_replicas=10,
        upscale_delay_s=3600, downscale_delay_s=3600, look_back_period_s=3 * push_s,
    )
    apps = HANDLES // PROCESSES
    with Child(["bench/_cluster_head.py", "--workers", "1", "--serve", settings_json]) as head:
        serve.start(address=head.address, config=Config(serve=ServeSettings(**settings)))
        try:
            deployment = Noop.options(autoscaling_config=autoscaling.to_dict(), max_ongoing_requests=8)
            for i in range(apps):
                serve.run(deployment.bind(), name=f"app{i}", wait_for_ready=False, route_prefix=None)
            deadline = time.monotonic() + 120
            while not all(a.status == "RUNNING" for a in serve.status().applications.values()):
                if time.monotonic() > deadline:
                    raise TimeoutError("the apps did not start")
                threading.Event().wait(0.2)
            pause = threading.Event()
            pause.wait(2 * push_s)
            idle0 = serve.controller_stats()
            idle_start = time.monotonic()
            pause.wait(window_s)
            idle1 = serve.controller_stats()
            idle_cpu = (idle1["process_cpu_s"] - idle0["process_cpu_s"]) / (time.monotonic() - idle_start) * 60
            results = {mode: measure(head.address, mode, settings_json, window_s, push_s, autoscaling) for mode in ("process", "handle")}
        finally:
            serve.shutdown()
    proc, handle = results["process"], results["handle"]
    agree = sum(1 for k, v in proc["decisions"].items() if handle["decisions"][k] == v)  # type: ignore[union-attr]
    hot = [proc["decisions"][f"app{i}"] for i in range(HOT)]  # type: ignore[index]
    figures: dict[str, float | int | str] = {
        "processes": PROCESSES,
        "handles": HANDLES,
        "push_interval_s": push_s,
        "process_mode_msgs_per_interval": round(proc["client_msgs_per_interval"], 2),
        "handle_mode_msgs_per_interval": round(handle["client_msgs_per_interval"], 2),
        "process_mode_all_msgs_per_interval": round(proc["msgs_per_interval"], 2),
        "handle_mode_all_msgs_per_interval": round(handle["msgs_per_interval"], 2),
        "process_mode_cpu_s_per_min": round(proc["cpu_s_per_min"], 3),
        "handle_mode_cpu_s_per_min": round(handle["cpu_s_per_min"], 3),
        "controller_cpu_ratio": round(handle["cpu_s_per_min"] / max(proc["cpu_s_per_min"], 1e-9), 1),
        "idle_cpu_s_per_min": round(idle_cpu, 3),
        "controller_cpu_ratio_above_idle": round(
            (handle["cpu_s_per_min"] - idle_cpu) / max(proc["cpu_s_per_min"] - idle_cpu, 1e-9), 1
        ),
        "process_mode_bytes_per_interval": round(proc["bytes_per_interval"]),
        "handle_mode_bytes_per_interval": round(handle["bytes_per_interval"]),
        "process_mode_reports_per_interval": round(proc["reports_per_interval"], 1),
        "handle_mode_reports_per_interval": round(handle["reports_per_interval"], 1),
        "decisions_agree": agree,
        "decisions_total": apps,
        "hot_decisions": ",".join(map(str, hot)),
    }
    print_table(
        f"metrics pushes: {HANDLES} handles over {PROCESSES} client processes, push interval {push_s}s, {window_s}s window per mode",
        ["", "per process", "per handle", "handle/process"],
        [
            ["client msgs per interval", figures["process_mode_msgs_per_interval"], figures["handle_mode_msgs_per_interval"],
             round(handle["client_msgs_per_interval"] / max(proc["client_msgs_per_interval"], 1e-9), 1)],
            ["all msgs per interval (+ worker)", figures["process_mode_all_msgs_per_interval"], figures["handle_mode_all_msgs_per_interval"], ""],
            ["handle reports per interval", figures["process_mode_reports_per_interval"], figures["handle_mode_reports_per_interval"], ""],
            ["payload bytes per interval", figures["process_mode_bytes_per_interval"], figures["handle_mode_bytes_per_interval"], ""],
            ["controller CPU s per minute", figures["process_mode_cpu_s_per_min"], figures["handle_mode_cpu_s_per_min"], figures["controller_cpu_ratio"]],
            ["  the same above idle (" + str(figures["idle_cpu_s_per_min"]) + " s/min)",
             round(proc["cpu_s_per_min"] - idle_cpu, 3), round(handle["cpu_s_per_min"] - idle_cpu, 3), figures["controller_cpu_ratio_above_idle"]],
        ],
    )
    print(f"autoscaling decisions agree for {agree} of {apps} deployments (hot ones want {hot} replicas in process mode, "
          f"{[handle['decisions'][f'app{i}'] for i in range(HOT)]} in handle mode)")  # type: ignore[index]
    print(f"targets: per-process mode sends exactly {PROCESSES} client messages per interval; controller CPU ratio >= 20")
    write_json(args.json, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
