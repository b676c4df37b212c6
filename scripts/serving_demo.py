"""corral's main demo: a local cluster serving an application.

Starts a head and three worker processes, deploys an app with composition
(an Ingress calling a Model) and a gang deployment, sends requests, streams a
response, shows the status, scales, survives a killed worker, and stops
cleanly, checking that no worker process is left behind. Then, with a head
in its own process: SIGKILLs the controller, keeps serving, starts it again
and shows every replica re-adopted from the checkpoint.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from actors import Config, serve  # noqa: E402
from actors.serve import GangSchedulingConfig, ReplicaDiedError, get_replica_context  # noqa: E402
from transport import TransportConfig  # noqa: E402


@serve.deployment(num_replicas=2)
class Model:
    """Scores text: a stand-in for a model."""

    def __init__(self, weight: float) -> None:
        self.weight = weight

    def __call__(self, text: str) -> float:
        return round(len(text) * self.weight, 3)

    def tokens(self, text: str) -> Any:
        for word in text.split():
            yield word.upper()

    def where(self) -> str:
        return get_replica_context().node_id

    def identity(self) -> str:
        return f"{get_replica_context().replica_id}@pid{os.getpid()}"


@serve.deployment(num_replicas=1)
class Ingress:
    """Composition: takes the Model's handle in its constructor."""

    def __init__(self, model: Any) -> None:
        self.model = model

    async def __call__(self, text: str) -> dict[str, Any]:
        score = await self.model.remote(text)
        return {"text": text, "score": score}


@serve.deployment(
    num_replicas=4,
    actor_options={"num_cpus": 0.5},
    gang_scheduling_config=GangSchedulingConfig(gang_size=2, gang_placement_strategy="SPREAD"),
)
class Shard:
    """A gang member: two ranks that live and die together."""

    def __call__(self) -> dict[str, Any]:
        context = get_replica_context()
        gang = context.gang_context
        assert gang is not None
        return {"gang": gang.gang_id.rsplit("-", 1)[1], "rank": gang.rank, "of": gang.world_size, "node": context.node_id}


@serve.deployment(num_replicas=1)
class Hello:
    """Over HTTP: gets a Starlette request, answers JSON."""

    async def __call__(self, request: Any) -> dict[str, Any]:
        return {"hello": request.query_params.get("name", "world"), "path": request.url.path}


# for `corral run scripts.serving_demo:app` and config files
app = Ingress.bind(Model.bind(0.5))


def say(text: str) -> None:
    print(text, flush=True)


def show_status() -> None:
    status = serve.status()
    for name, app in status.applications.items():
        for dname, d in app.deployments.items():
            say(f"     {name:8s} {dname:8s} {app.status:9s} {d.status:9s} {d.replica_states}")
    for node in status.nodes:
        say(f"     node {node.node_id}: {node.replicas} replicas, CPU free {node.available.get('CPU', 0):.1f} of {node.total.get('CPU', 0):.0f}")
    say(f"     {len(status.reservations)} gang reservations")


def main() -> int:
    started = time.perf_counter()
    config = Config(transport=TransportConfig(heartbeat_interval_s=0.2, heartbeat_liveness=5))
    serve.start(workers=[{"CPU": 2}, {"CPU": 2}, {"CPU": 2}], config=config, http_options={"port": 0})
    try:
        say(f"1. started a local cluster: a head and 3 worker processes in {time.perf_counter() - started:.2f}s")
        started = time.perf_counter()
        scoring = serve.run(app, name="scoring", route_prefix=None)
        shards = serve.run(Shard.bind(), name="shards", route_prefix=None)
        say(f"2. deployed 'scoring' (Ingress -> Model) and 'shards' (2 gangs of 2) in {time.perf_counter() - started:.2f}s")
        say(f"3. a request: {scoring.remote('hello corral').result(timeout_s=10)}")
        samples = []
        for i in range(500):
            t = time.perf_counter()
            scoring.remote(f"request {i}").result(timeout_s=10)
            samples.append(time.perf_counter() - t)
        samples.sort()
        say(f"   500 more through two deployments: p50 {samples[250] * 1e3:.2f} ms, p99 {samples[495] * 1e3:.2f} ms")
        serve.run(Hello.bind(), name="web", route_prefix="/hello")
        url = f"{serve.status().proxies[0].url}/hello?name=corral"
        with urllib.request.urlopen(url, timeout=10) as response:
            say(f"   over HTTP: GET {url} -> {response.status} {response.read().decode()}")
        model = serve.get_deployment_handle("Model", "scoring")
        say(f"4. streamed: {list(model.options(stream=True).tokens.remote('one two three'))}")
        members = {tuple(sorted(m.items())) for m in (shards.remote().result(timeout_s=10) for _ in range(60))}
        say(f"5. gang members answering: {sorted(dict(m)['gang'] + '/rank' + str(dict(m)['rank']) for m in members)}")
        say("6. `corral status` against this cluster:")
        _corral_status()
        serve.run(Model.options(num_replicas=4).bind(0.5), name="scoring", route_prefix=None)
        serve.run(Ingress.bind(Model.options(num_replicas=4).bind(0.5)), name="scoring", route_prefix=None)
        say(f"7. scaled Model to 4: {serve.status().applications['scoring'].deployments['Model'].replica_states}")
        victim_node, victim_pid = _worker_of(model)
        os.kill(victim_pid, signal.SIGKILL)
        killed = time.perf_counter()
        answered = died = 0
        for _ in range(20):
            try:
                scoring.remote("after the kill").result(timeout_s=20)
                answered += 1
            except ReplicaDiedError:
                died += 1
        deadline = time.monotonic() + 30
        pause = threading.Event()
        while not _recovered(victim_node):
            if time.monotonic() > deadline:
                say("8. the killed worker's replicas were NOT replaced within 30s")
                return 1
            pause.wait(0.05)
        say(
            f"8. SIGKILLed worker {victim_node}: of 20 requests sent right after, {answered} were answered and {died} failed with "
            f"ReplicaDiedError (sent to the dead worker before its death was noticed); it was noticed and its "
            f"replicas (and any gang with a member there) were replaced {time.perf_counter() - killed:.2f}s after the kill"
        )
        show_status()
    finally:
        before = _children()
        serve.shutdown()
    left = _children() & before
    if left:
        say(f"9. shutdown left processes behind: {sorted(left)}")
        return 1
    say("9. stopped the cluster: checked that no worker process is left behind")
    return controller_restart()


def controller_restart() -> int:
    """A head in its own process (workers outlive it): SIGKILL it, keep serving, start it again."""
    from scripts._local_cluster import LocalCluster

    folder = Path(tempfile.mkdtemp(prefix="corral-demo-"))
    transport = {"heartbeat_interval_s": 0.2, "heartbeat_liveness": 5}
    cluster = LocalCluster(folder, settings={"recovery_retry_s": 0.2}, transport=transport)
    try:
        cluster.start_head()
        for node in ("w0", "w1"):
            cluster.start_worker(node, {"CPU": 2})
        serve.start(address=cluster.address, config=Config(transport=TransportConfig(**transport)))
        scoring = serve.run(app, name="scoring", route_prefix=None)
        model = serve.get_deployment_handle("Model", "scoring")
        before = {model.identity.remote().result(timeout_s=10) for _ in range(40)}
        say(f"10. a head process and 2 workers; 'scoring' deployed, its Model replicas: {sorted(before)}")
        cluster.kill_head()
        answered = sum(1 for i in range(200) if scoring.remote(f"while down {i}").result(timeout_s=10))
        say(f"11. SIGKILLed the head (the controller): {answered} of 200 requests answered while it was down")
        started = time.perf_counter()
        cluster.start_head(recovery="required")
        deadline = time.monotonic() + 30
        pause = threading.Event()
        while (stats := _stats_when_recovered()) is None:
            if time.monotonic() > deadline:
                say("12. the restarted head did NOT recover within 30s")
                return 1
            pause.wait(0.05)
        after = {model.identity.remote().result(timeout_s=10) for _ in range(40)}
        recovery = stats["recovery"]
        say(
            f"12. started the head again: it read its SQLite checkpoint and recovered in {time.perf_counter() - started:.2f}s "
            f"(process start included); {recovery['adopted']} replicas re-adopted without a restart, "
            f"{recovery['dropped']} replaced; same Model replicas and processes: {after == before}"
        )
        return 0 if after == before else 1
    finally:
        serve.shutdown()
        cluster.close()
        shutil.rmtree(folder, ignore_errors=True)


def _stats_when_recovered() -> dict[str, Any] | None:
    try:
        stats = serve.controller_stats()
    except Exception:  # this client still sees the old head as gone
        return None
    return stats if stats["recovery"]["recovery_s"] is not None else None


def _corral_status() -> None:
    import subprocess

    from actors.serve._api import current_session

    out = subprocess.run(
        [sys.executable, "-m", "scripts.cli", "status", "--address", str(current_session().controller)],
        capture_output=True, text=True, timeout=60, cwd=Path(__file__).resolve().parent.parent,
    )
    for line in (out.stdout + out.stderr).rstrip().splitlines():
        say(f"     {line}")


def _worker_of(model: Any) -> tuple[str, int]:
    node = model.where.remote().result(timeout_s=10)
    from actors.serve._api import current_session

    for worker in current_session().workers:
        if worker.node_id == node:
            return node, worker.proc.pid
    raise RuntimeError(f"no worker {node}")


def _recovered(victim: str) -> bool:
    status = serve.status()
    healthy = all(
        d.status == "HEALTHY" for app in status.applications.values() for d in app.deployments.values()
    )
    return healthy and victim not in {n.node_id for n in status.nodes}


def _children() -> set[int]:
    pids: set[int] = set()
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/children") as fh:
                pids.update(int(p) for p in fh.read().split())
        except FileNotFoundError:
            pass
    return {p for p in pids if os.path.exists(f"/proc/{p}") and _alive(p)}


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


if __name__ == "__main__":
    sys.exit(main())
