"""Chaos bench: requests at a fixed concurrency while faults are injected on a schedule.

A head and three workers run as separate processes (workers outlive the head).
Two apps: ``svc`` (4 replicas) and ``gang`` (2 gangs of 2). A baseline phase
runs the load with no fault; then, round after round, the chaos phase injects:

- ``kill-worker``: SIGKILL a worker with replicas (a fresh worker joins after
  the cluster is back at its target);
- ``kill-controller``: SIGKILL the head and start it again at once (it
  recovers from its SQLite checkpoint); every replica that served before must
  still serve after, with the same id (else it is a needless restart);
- ``head-down-kill-worker``: SIGKILL the head, then SIGKILL a worker with
  replicas while the head stays down for a few seconds (nobody publishes a new
  replica set): requests in flight on the dead worker must fail with
  ``ReplicaDiedError`` within 1 s of the kill (``dead_replica_failfast_s``),
  and no later request may stall on a dead replica
  (``head_down_max_latency_s``); then the head is started again;
- ``fail-health``: one replica of ``svc`` starts failing its health checks;
- ``freeze-worker``: SIGSTOP a worker (``docker pause`` with ``--docker``)
  until it is given up, then let it go on: it rejoins;
- ``partition-worker`` (only with ``--docker``, where every process has its
  own address): cut a worker's container off the network until it is given
  up, then heal it: it rejoins.

Each request is sent with a 5 s timeout. It either succeeds, fails with a
clear error (the replica it was on died), or is lost (no answer by its
timeout: must be 0). After each fault: the time until every deployment is
back at its target replica count, HEALTHY. At the end: gang reservations that
no gang uses (must be 0).

    python bench/bench_chaos.py [--quick] [--json FILE] [--docker]
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from actors import Config, ServeSettings, serve  # noqa: E402
from actors._errors import AskTimeout  # noqa: E402
from bench._apps import GangMember, Sturdy  # noqa: E402
from bench._common import median, parse_args, percentile, print_table, wait_until, write_json  # noqa: E402
from scripts._local_cluster import LocalCluster  # noqa: E402
from transport import TransportConfig  # noqa: E402

CONCURRENCY = 16
REQUEST_TIMEOUT_S = 5.0
TRANSPORT = {"heartbeat_interval_s": 0.1, "heartbeat_liveness": 5}
SLOW_RECOVERY_S = 8.0  # a recovery slower than this prints the head's last warnings
SETTINGS = {"reconcile_interval_s": 0.05, "recovery_retry_s": 0.2, "recovery_timeout_s": 10.0, "control_timeout_s": 5.0}
TARGETS = {("svc", "Sturdy"): 4, ("gang", "GangMember"): 4}
HEAD_DOWN_S = 3.0  # several transport quarantines (a liveness window each)


class Load:
    """``CONCURRENCY`` threads sending requests back to back; counts every outcome."""

    def __init__(self, calls: list[Callable[[], Any]]) -> None:
        self.calls = calls
        self.sent = 0
        self.succeeded = 0
        self.lost = 0
        self.failed: Counter[str] = Counter()
        self.latencies: list[float] = []
        self.finished: list[tuple[float, float, str]] = []  # (sent at, finished at, outcome) on the monotonic clock
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(CONCURRENCY)]

    def _run(self, i: int) -> None:
        call = self.calls[i % len(self.calls)]
        while not self._stop.is_set():
            sent_at = time.monotonic()
            start = time.perf_counter()
            try:
                call()
                outcome = None
            except (AskTimeout, TimeoutError) as exc:
                outcome = f"lost: {exc}"
            except Exception as exc:  # a clear error: counted by its type
                outcome = type(exc).__name__
            elapsed = time.perf_counter() - start
            with self._lock:
                self.finished.append((sent_at, sent_at + elapsed, outcome or "ok"))
                self.sent += 1
                if outcome is None:
                    self.succeeded += 1
                    self.latencies.append(elapsed)
                elif outcome.startswith("lost"):
                    self.lost += 1
                else:
                    self.failed[outcome] += 1

    def start(self) -> "Load":
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(REQUEST_TIMEOUT_S + 5)


def at_target() -> bool:
    try:
        apps = serve.status().applications
    except Exception:
        return False
    for (app, name), target in TARGETS.items():
        d = apps.get(app) and apps[app].deployments.get(name)
        if not d or d.status != "HEALTHY" or d.replica_states != {"RUNNING": target}:
            return False
    return True


def serving_replicas() -> dict[str, str]:
    """Replica id -> worker of every RUNNING replica."""
    from actors.serve._api import current_session

    session = current_session()
    return {r.replica_id: r.node_id for app, name in TARGETS for r in session.routers[(app, name)].replicas()}


def live_nodes() -> set[str]:
    try:
        return {n.node_id for n in serve.status().nodes}
    except Exception:  # the controller is restarting
        return set()


def controller_stats() -> dict[str, Any] | None:
    try:
        return serve.controller_stats()
    except Exception:
        return None


class LocalControl:
    """Head and workers as local processes."""

    faults = ("kill-worker", "kill-controller", "head-down-kill-worker", "fail-health", "freeze-worker")

    def __init__(self, folder: Path) -> None:
        self.cluster = LocalCluster(folder, settings=SETTINGS, transport=TRANSPORT)
        self.address = self.cluster.address
        self.client_transport = TransportConfig(**TRANSPORT)

    def start(self, workers: int) -> None:
        self.cluster.start_head()
        for i in range(workers):
            self.cluster.start_worker(f"w{i}", {"CPU": 4})

    def live_workers(self) -> list[str]:
        return [n for n, p in self.cluster.workers.items() if p.poll() is None]

    def kill_worker(self, name: str) -> None:
        self.cluster.kill_worker(name)
        del self.cluster.workers[name]

    def add_worker(self, name: str) -> None:
        self.cluster.start_worker(name, {"CPU": 4})

    def kill_and_restart_head(self) -> None:
        self.kill_head()
        self.restart_head()

    def kill_head(self) -> None:
        self.cluster.kill_head()

    def restart_head(self) -> None:
        self.cluster.start_head(recovery="required")

    def head_log(self) -> str:
        path = self.cluster.folder / "head.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def freeze(self, name: str) -> None:
        os.kill(self.cluster.workers[name].pid, signal.SIGSTOP)

    def thaw(self, name: str) -> None:
        os.kill(self.cluster.workers[name].pid, signal.SIGCONT)

    def close(self) -> None:
        self.cluster.close()


class DockerControl:
    """Head and workers in Docker containers with their own addresses (``--docker``)."""

    faults = ("kill-worker", "kill-controller", "head-down-kill-worker", "fail-health", "freeze-worker", "partition-worker")

    def __init__(self, folder: Path) -> None:
        from scripts._docker_cluster import DockerCluster, docker_client

        client, self._dockerd = docker_client()
        self.cluster = DockerCluster(client, folder)
        self.address = ""
        self.client_transport = TransportConfig(**TRANSPORT, host=self.cluster.gateway, curve=self.cluster.keys)
        self.killed: set[str] = set()

    def start(self, workers: int) -> None:
        self.cluster.start_head(SETTINGS, TRANSPORT)
        self.address = self.cluster.head_address
        for i in range(workers):
            self.add_worker(f"w{i}")

    def live_workers(self) -> list[str]:
        return [n for n in self.cluster.containers if n != "head" and n not in self.killed]

    def kill_worker(self, name: str) -> None:
        self.cluster.kill(name)
        self.killed.add(name)

    def add_worker(self, name: str) -> None:
        self.cluster.start_worker(name, SETTINGS, TRANSPORT)

    def kill_and_restart_head(self) -> None:
        self.kill_head()
        self.restart_head()

    def kill_head(self) -> None:
        self.cluster.kill("head")

    def restart_head(self) -> None:
        self.cluster.restart_killed("head", "head.ready")

    def head_log(self) -> str:
        return self.cluster.logs("head")

    def freeze(self, name: str) -> None:
        self.cluster.pause(name)

    def thaw(self, name: str) -> None:
        self.cluster.unpause(name)

    def partition(self, name: str) -> None:
        self.cluster.disconnect(name)

    def heal(self, name: str) -> None:
        self.cluster.reconnect(name)

    def close(self) -> None:
        from scripts._docker_cluster import stop_dockerd

        self.cluster.close()
        stop_dockerd(self._dockerd)


class Chaos:
    def __init__(self, control: Any, flag_dir: str) -> None:
        self.control = control
        self.flag_dir = flag_dir
        self.recover_s: dict[str, list[float]] = {f: [] for f in control.faults}
        self.needless_restarts = 0
        self.spare = 0
        self.head_down_windows: list[tuple[float, float]] = []  # (worker killed at, head back at)

    def _busy_worker(self) -> str:
        placed = Counter(node for node in serving_replicas().values())
        return max(self.control.live_workers(), key=lambda n: placed.get(n, 0))

    def _back(self, fault: str, since: float) -> None:
        wait_until(at_target, 60, f"the target replica count after {fault}")
        self.recover_s[fault].append(time.monotonic() - since)
        if self.recover_s[fault][-1] > SLOW_RECOVERY_S:  # say why, for whoever looks into it
            said = [line for line in self.control.head_log().splitlines() if any(w in line for w in ("WARNING", "ERROR"))]
            print(f"  {fault} took {self.recover_s[fault][-1]:.2f}s; the head's last warnings:", *said[-12:], sep="\n    ", flush=True)

    def inject(self, fault: str) -> None:
        if fault == "kill-worker":
            victim = self._busy_worker()
            since = time.monotonic()
            self.control.kill_worker(victim)
            wait_until(lambda: victim not in live_nodes(), 30, "the dead worker to be noticed")
            self._back(fault, since)
            self.spare += 1
            self.control.add_worker(f"spare-{self.spare}")
        elif fault == "kill-controller":
            before = set(serving_replicas())
            since = time.monotonic()
            self.control.kill_and_restart_head()
            wait_until(lambda: (s := controller_stats()) is not None and s["recovery"]["recovery_s"] is not None, 60, "the recovery")
            self._back(fault, since)
            self.needless_restarts += len(before - set(serving_replicas()))
        elif fault == "head-down-kill-worker":
            victim = self._busy_worker()
            self.control.kill_head()
            since = time.monotonic()
            self.control.kill_worker(victim)
            threading.Event().wait(HEAD_DOWN_S)  # the load goes on; only the routers know of the death
            self.head_down_windows.append((since, time.monotonic()))
            self.control.restart_head()
            wait_until(lambda: (s := controller_stats()) is not None and s["recovery"]["recovery_s"] is not None, 60, "the recovery")
            self._back(fault, since)
            self.spare += 1
            self.control.add_worker(f"spare-{self.spare}")
        elif fault == "fail-health":
            victim = next(rid for rid in serving_replicas() if rid.startswith("svc."))
            since = time.monotonic()
            Path(self.flag_dir, victim).touch()
            wait_until(lambda: victim not in serving_replicas(), 30, "the sick replica to be replaced")
            self._back(fault, since)
        elif fault in ("freeze-worker", "partition-worker"):
            cut, mend = (self.control.freeze, self.control.thaw) if fault == "freeze-worker" else (self.control.partition, self.control.heal)
            victim = self._busy_worker()
            since = time.monotonic()
            cut(victim)
            try:
                wait_until(lambda: victim not in live_nodes(), 30, f"the {fault} victim to be given up")
                self._back(fault, since)
            finally:
                mend(victim)
            # it comes back: stops its stale replicas and registers again, counted once
            wait_until(lambda: victim in live_nodes(), 30, "the worker to rejoin")
            wait_until(at_target, 30, "the target after the worker rejoined")


def head_down_figures(load: Load, windows: list[tuple[float, float]]) -> tuple[float, float]:
    """For the head-down phases: the longest a request that failed for the dead
    worker took to fail after the kill, and the slowest success sent while the
    head was down."""
    failfast, stalls = 0.0, 0.0
    for killed, back in windows:
        for sent, finished, outcome in load.finished:
            if outcome == "ReplicaDiedError" and killed <= finished <= back:
                failfast = max(failfast, finished - max(sent, killed))
            elif outcome == "ok" and killed <= sent <= back:
                stalls = max(stalls, finished - sent)
    return failfast, stalls


def run(seconds_baseline: float, rounds: int, docker: bool) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="corral-chaos-"))
    flag_dir = str(folder / "flags")
    os.mkdir(flag_dir)
    control = DockerControl(folder) if docker else LocalControl(folder)
    try:
        control.start(workers=3)
        serve.start(address=control.address, config=Config(transport=control.client_transport, serve=ServeSettings(**SETTINGS)))
        svc = serve.run(Sturdy.bind(flag_dir), name="svc", route_prefix=None)
        gang = serve.run(GangMember.options(num_replicas=4, gang_scheduling_config={"gang_size": 2}).bind(flag_dir), name="gang", route_prefix=None)
        calls = [lambda: svc.remote().result(timeout_s=REQUEST_TIMEOUT_S), lambda: gang.remote().result(timeout_s=REQUEST_TIMEOUT_S)]

        baseline = Load(calls).start()
        threading.Event().wait(seconds_baseline)
        baseline.stop()

        chaos = Chaos(control, flag_dir)
        load = Load(calls).start()
        started = time.monotonic()
        try:
            for _ in range(rounds):
                for fault in control.faults:
                    chaos.inject(fault)
                    print(f"  {fault}: back at target in {chaos.recover_s[fault][-1]:.2f}s", flush=True)
        finally:
            load.stop()
        chaos_s = time.monotonic() - started
        stats = wait_until(controller_stats, 30, "the controller's statistics")
        return {"baseline": baseline, "load": load, "chaos": chaos, "chaos_s": chaos_s, "base_s": seconds_baseline, "stats": stats}
    finally:
        serve.shutdown()
        control.close()
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], extra=[("--docker", "run the cluster in Docker containers and also partition a worker")])
    out = run(seconds_baseline=4.0 if args.quick else 10.0, rounds=1 if args.quick else 3, docker=args.docker)
    base, load, chaos, stats = out["baseline"], out["load"], out["chaos"], out["stats"]
    faults = list(chaos.recover_s)
    every = [s for f in faults for s in chaos.recover_s[f]]
    base_rate, chaos_rate = base.succeeded / out["base_s"], load.succeeded / out["chaos_s"]
    print_table(
        f"requests at concurrency {CONCURRENCY}, {REQUEST_TIMEOUT_S:.0f} s timeout",
        ["phase", "sent", "succeeded", "failed (clear error)", "lost", "req/s", "p50 ms", "p99 ms"],
        [
            ["baseline, no faults", base.sent, base.succeeded, sum(base.failed.values()), base.lost, base_rate,
             median(base.latencies) * 1000, percentile(base.latencies, 99) * 1000],
            [f"chaos, {len(every)} faults", load.sent, load.succeeded, sum(load.failed.values()), load.lost, chaos_rate,
             median(load.latencies) * 1000, percentile(load.latencies, 99) * 1000],
        ],
    )
    if load.failed:
        print("  failed by error: " + ", ".join(f"{k} {v}" for k, v in load.failed.most_common()))
    print_table(
        "back at the target replica count after each fault (s)",
        ["fault", "times", "p50", "max"],
        [[f, len(chaos.recover_s[f]), median(chaos.recover_s[f]), max(chaos.recover_s[f])] for f in faults],
    )
    failfast, stalls = head_down_figures(load, chaos.head_down_windows)
    figures = {
        "sent": load.sent,
        "succeeded": load.succeeded,
        "failed": sum(load.failed.values()),
        "lost": load.lost,
        "baseline_lost": base.lost,
        "throughput_ratio_chaos_vs_baseline": round(chaos_rate / base_rate, 3),
        "recover_p50_s": round(median(every), 3),
        "recover_max_s": round(max(every), 3),
        **{f"recover_{f.replace('-', '_')}_p50_s": round(median(chaos.recover_s[f]), 3) for f in faults},
        "needless_restarts": chaos.needless_restarts,
        "dead_replica_failfast_s": round(failfast, 3),
        "head_down_max_latency_s": round(stalls, 3),
        "leaked_reservations": stats["leaked_reservations"],
        "controller_epoch": stats["recovery"]["epoch"],
    }
    print_table("summary", ["figure", "value"], [[k, v] for k, v in figures.items() if not k.startswith("recover_") or k in ("recover_p50_s", "recover_max_s")])
    write_json(args.json, figures)


if __name__ == "__main__":
    main()
