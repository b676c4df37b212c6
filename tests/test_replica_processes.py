"""Replicas in their own processes: each dies alone, is replaced at once, and
sees only its own GPUs. Real worker and replica processes, real sockets."""

from __future__ import annotations

import glob
import os
import signal
import tempfile
import time
from typing import Any, Iterator

import psutil
import pytest

from actors import serve
from actors.serve import DeployFailedError, ReplicaDiedError
from tests import serve_apps
from tests.conftest import fast_serve_config
from tests.helpers import Traffic, child_pids, wait_for


@pytest.fixture
def one_worker() -> Iterator[Any]:
    """An embedded head with one worker that declares two GPUs."""
    serve.start(workers=[{"CPU": 2, "GPU": 2}], config=fast_serve_config(), http_options={"port": 0})
    try:
        yield serve
    finally:
        serve.shutdown()


def _replicas(app: str, deployment: str) -> list[Any]:
    return serve.status(replicas=True).applications[app].deployments[deployment].replicas


def test_each_replica_runs_in_its_own_process_and_status_shows_pid_node_and_memory(one_worker: Any) -> None:
    handle = serve.run(serve_apps.Echo.options(num_replicas=3).bind(), name="own", route_prefix=None)
    pids = {handle.whoami.remote().result(timeout_s=10)["pid"] for _ in range(60)}
    assert len(pids) == 3 and os.getpid() not in pids
    shown = wait_for(lambda: (r := _replicas("own", "Echo")) and all(x.rss_bytes > 0 for x in r) and r, 15,
                     "every replica's memory in the status")
    assert {r.pid for r in shown} == pids
    assert {r.node_id for r in shown} == {"worker-0"} and {r.isolation for r in shown} == {"process"}
    for r in shown:
        assert psutil.Process(r.pid).memory_info().rss > 0


@pytest.mark.parametrize("how", ["exit", "segfault", "memory"])
def test_a_replica_process_that_dies_dies_alone_and_is_replaced_within_a_second(one_worker: Any, how: str) -> None:
    siblings = serve.run(serve_apps.Echo.options(num_replicas=2).bind(), name="siblings", route_prefix=None)
    fragile = serve.run(
        serve_apps.Mortal.options(ray_actor_options={"memory": 200 * 2**20}).bind(), name="fragile", route_prefix=None
    )
    victim = fragile.whoami.remote().result(timeout_s=10)
    with Traffic(lambda: siblings.remote("ok").result(timeout_s=10), threads=2) as traffic:
        wait_for(lambda: len(traffic.answers) >= 5, 10, "sibling traffic to flow")
        with pytest.raises(ReplicaDiedError, match=victim["replica_id"]):
            fragile.die.remote(how).result(timeout_s=30)
        died = time.monotonic()
        replacement = wait_for(
            lambda: [r for r in _replicas("fragile", "Mortal") if r.replica_id != victim["replica_id"] and r.state == "RUNNING"],
            10, "a replacement to run",
        )
        replaced_in = time.monotonic() - died
        answered = len(traffic.answers)
        wait_for(lambda: len(traffic.answers) >= answered + 5, 10, "sibling traffic to keep flowing")
    assert traffic.failures == [], "the sibling replicas on the same worker answered every request"
    assert replaced_in < 1.0, f"the replacement ran {replaced_in:.2f}s after the death"
    assert not psutil.pid_exists(victim["pid"]) or psutil.Process(victim["pid"]).status() == psutil.STATUS_ZOMBIE
    assert fragile.whoami.remote().result(timeout_s=10)["replica_id"] == replacement[0].replica_id


def test_gpu_replicas_see_disjoint_devices_and_fractions_share_one(one_worker: Any) -> None:
    whole = serve.run(serve_apps.Mortal.options(num_replicas=2, ray_actor_options={"num_gpus": 1}).bind(), name="whole", route_prefix=None)
    seen = wait_for(lambda: s if len(s := {whole.devices.remote().result(timeout_s=10) for _ in range(20)}) == 2 else None,
                    10, "both replicas to answer")
    assert seen == {"0", "1"}
    serve.delete("whole")
    halves = serve.run(serve_apps.Mortal.options(num_replicas=2, ray_actor_options={"num_gpus": 0.5}).bind(), name="halves", route_prefix=None)
    assert {halves.devices.remote().result(timeout_s=10) for _ in range(20)} == {"0"}, "two halves pack onto one GPU"
    plain = serve.run(serve_apps.Mortal.bind(), name="plain", route_prefix=None)
    assert plain.devices.remote().result(timeout_s=10) == "", "a replica that asked for no GPU sees none"


def test_a_replica_process_that_cannot_import_its_dependency_is_deploy_failed_with_the_childs_error(one_worker: Any) -> None:
    with pytest.raises(DeployFailedError, match="No module named 'corral_no_such_dependency'"):
        serve.run(serve_apps.NeedsMissingDependency.bind(), name="missing", route_prefix=None)
    assert serve.run(serve_apps.Echo.options(num_replicas=1).bind(), name="after", route_prefix=None).remote("x").result(timeout_s=10) == "x"


def test_a_replica_that_overstays_its_stop_is_killed_and_its_request_fails(one_worker: Any) -> None:
    handle = serve.run(serve_apps.Echo.options(num_replicas=1, graceful_shutdown_timeout_s=0.2).bind(), name="overstay", route_prefix=None)
    pid = handle.whoami.remote().result(timeout_s=10)["pid"]
    slow = handle.slow.remote(30)
    wait_for(lambda: handle._router is not None and sum(handle._router.statistics().in_flight.values()) == 1, 10, "the request in flight")
    serve.delete("overstay")
    with pytest.raises(ReplicaDiedError):
        slow.result(timeout_s=10)
    wait_for(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, 10, "the process to be gone")


def test_thread_mode_replicas_share_their_workers_process(one_worker: Any) -> None:
    handle = serve.run(serve_apps.Echo.options(num_replicas=3, isolation="thread").bind(), name="packed", route_prefix=None)
    answers = [handle.whoami.remote().result(timeout_s=10) for _ in range(40)]
    assert len({a["replica_id"] for a in answers}) == 3 and len({a["pid"] for a in answers}) == 1
    worker_pid = answers[0]["pid"]
    shown = wait_for(lambda: (r := _replicas("packed", "Echo")) and all(x.pid == worker_pid and x.rss_bytes > 0 for x in r) and r,
                     15, "the worker's process in the status of each thread-mode replica")
    assert {r.isolation for r in shown} == {"thread"}


def test_num_gpus_in_thread_mode_is_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="num_gpus' needs isolation='process'"):
        serve_apps.Echo.options(isolation="thread", ray_actor_options={"num_gpus": 1})


def test_replica_processes_of_a_killed_worker_exit_and_leave_no_socket_file(one_worker: Any) -> None:
    handle = serve.run(serve_apps.Echo.options(num_replicas=2).bind(), name="orphans", route_prefix=None)
    pids = {handle.whoami.remote().result(timeout_s=10)["pid"] for _ in range(40)}
    assert len(pids) == 2
    sockets = {pid: glob.glob(os.path.join(tempfile.gettempdir(), "**", f"{pid}-*.sock"), recursive=True) for pid in pids}
    assert all(sockets.values()), sockets  # each replica process listens on its own ipc socket
    (worker,) = child_pids()
    os.kill(worker, signal.SIGKILL)
    for pid in pids:
        wait_for(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, 15,
                 f"replica process {pid} to exit after its worker")
    assert [path for paths in sockets.values() for path in paths if os.path.exists(path)] == []
