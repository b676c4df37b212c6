"""The control plane end to end: real worker processes, real sockets."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from actors import serve
from actors.serve import DeployFailedError, DeploymentNotFoundError, DeploymentOptionError
from tests import serve_apps
from tests.helpers import Traffic, child_pids, wait_for

ROOT = Path(__file__).resolve().parent.parent


def replica_ids(handle: Any, n: int = 40) -> set[str]:
    return {handle.whoami.remote().result(timeout_s=10)["replica_id"] for _ in range(n)}


def deployment_status(app: str, name: str) -> Any:
    return serve.status().applications[app].deployments[name]


def test_run_returns_once_running_and_requests_reach_replicas_on_both_workers(serve_cluster: Any) -> None:
    handle = serve.run(serve_apps.Echo.bind("hi:"), name="echo", route_prefix=None)
    assert handle.remote("x").result(timeout_s=10) == "hi:x"
    seen = [handle.whoami.remote().result(timeout_s=10) for _ in range(40)]
    assert len({s["replica_id"] for s in seen}) == 2
    assert {s["node"] for s in seen} == {"worker-0", "worker-1"}
    assert all(s["pid"] != os.getpid() for s in seen)


def test_status_has_ray_serve_shape(serve_cluster: Any) -> None:
    serve.run(serve_apps.Echo.bind(), name="echo", route_prefix=None)
    status = serve.status()
    app = status.applications["echo"]
    assert (app.status, app.ingress) == ("RUNNING", "Echo")
    d = app.deployments["Echo"]
    assert (d.status, d.message, d.replica_states, d.target_replicas) == ("HEALTHY", "", {"RUNNING": 2}, 2)
    assert sorted(n.node_id for n in status.nodes) == ["worker-0", "worker-1"]
    assert sum(n.replicas for n in status.nodes) == 2


def test_the_replica_context_names_replica_deployment_app_and_node(serve_cluster: Any) -> None:
    handle = serve.run(serve_apps.Echo.options(num_replicas=1).bind(), name="ctx", route_prefix=None)
    info = handle.whoami.remote().result(timeout_s=10)
    assert info["deployment"] == "Echo" and info["app"] == "ctx" and info["node"] in ("worker-0", "worker-1")
    assert info["replica_id"].startswith("ctx.Echo.")
    with pytest.raises(RuntimeError, match="only be called inside a replica"):
        serve.get_replica_context()


def test_wait_for_ready_false_returns_the_handle_at_once(serve_cluster: Any) -> None:
    handle = serve.run(serve_apps.Echo.bind("q:"), name="quick", wait_for_ready=False, route_prefix=None)
    assert serve.status().applications["quick"].status in ("DEPLOYING", "RUNNING")
    assert handle.remote(1).result(timeout_s=20) == "q:1"


def test_scaling_through_options_and_run_again_changes_the_replica_count(serve_cluster: Any) -> None:
    serve.run(serve_apps.Echo.bind(), name="scale", route_prefix=None)
    serve.run(serve_apps.Echo.options(num_replicas=4).bind(), name="scale", route_prefix=None)
    assert deployment_status("scale", "Echo").replica_states == {"RUNNING": 4}
    handle = serve.run(serve_apps.Echo.options(num_replicas=1).bind(), name="scale", route_prefix=None)
    assert deployment_status("scale", "Echo").replica_states == {"RUNNING": 1}
    assert len(replica_ids(handle, 10)) == 1


def test_many_thread_mode_replicas_share_one_worker_process(serve_cluster: Any) -> None:
    handle = serve.run(serve_apps.Echo.options(num_replicas=6, isolation="thread").bind(), name="many", route_prefix=None)
    assert sorted(n.replicas for n in serve.status().nodes) == [3, 3]
    pids = {handle.whoami.remote().result(timeout_s=10)["pid"] for _ in range(60)}
    assert len(pids) == 2


def test_a_user_config_change_calls_reconfigure_without_restarting(serve_cluster: Any) -> None:
    handle = serve.run(serve_apps.Configurable.options(user_config={"threshold": 1}).bind(), name="cfg", route_prefix=None)
    first = handle.remote().result(timeout_s=10)
    assert first["config"] == {"threshold": 1} and first["reconfigured"] == 1
    serve.run(serve_apps.Configurable.options(user_config={"threshold": 2}).bind(), name="cfg", route_prefix=None)
    second = handle.remote().result(timeout_s=10)
    assert second == {"config": {"threshold": 2}, "reconfigured": 2, "instance": first["instance"]}


def test_a_code_change_rolls_the_replicas_while_serving_with_zero_failed_requests(serve_cluster: Any) -> None:
    handle = serve.run(serve_apps.Echo.options(num_replicas=4).bind("v1:"), name="roll", route_prefix=None)
    old = replica_ids(handle)
    with Traffic(lambda: handle.remote("x").result(timeout_s=10)) as traffic:
        serve.run(serve_apps.Echo.options(num_replicas=4).bind("v2:"), name="roll", route_prefix=None)
    assert traffic.failures == [] and traffic.answers
    assert set(traffic.answers) <= {"v1:x", "v2:x"}
    assert handle.remote("x").result(timeout_s=10) == "v2:x", "once run returns, requests reach the new version"
    assert replica_ids(handle).isdisjoint(old)
    assert deployment_status("roll", "Echo").replica_states == {"RUNNING": 4}


def test_a_crashing_constructor_gives_deploy_failed_with_its_error_and_the_cluster_stays_usable(serve_cluster: Any) -> None:
    with pytest.raises(DeployFailedError, match="cannot load the model file"):
        serve.run(serve_apps.FailsToStart.bind(), name="broken", route_prefix=None)
    app = serve.status().applications["broken"]
    assert app.status == "DEPLOY_FAILED"
    d = app.deployments["FailsToStart"]
    assert d.status == "DEPLOY_FAILED" and "RuntimeError: cannot load the model file" in d.message
    assert "Traceback" in d.message and "serve_apps.py" in d.message, "the constructor's traceback is shown"
    assert d.replica_states == {}
    handle = serve.run(serve_apps.Echo.bind("ok:"), name="fine", route_prefix=None)
    assert handle.remote(1).result(timeout_s=10) == "ok:1"


def test_a_replica_failing_its_health_checks_is_replaced(serve_cluster: Any, tmp_path: Path) -> None:
    flag = tmp_path / "unhealthy"
    handle = serve.run(serve_apps.Fragile.bind(str(flag)), name="fragile", route_prefix=None)
    sick = handle.remote().result(timeout_s=10)
    flag.write_text(sick)
    wait_for(lambda: _answer_other_than(handle, sick), 20, "a replacement replica")
    wait_for(lambda: deployment_status("fragile", "Fragile").status == "HEALTHY", 20, "HEALTHY again")


def test_thread_replicas_checked_together_by_their_worker_are_replaced_one_by_one(serve_cluster: Any, tmp_path: Path) -> None:
    flag = tmp_path / "unhealthy"
    handle = serve.run(serve_apps.Fragile.options(num_replicas=4, isolation="thread").bind(str(flag)), name="packed",
                       route_prefix=None)

    def instances() -> set[str]:
        return {handle.remote().result(timeout_s=10) for _ in range(80)}

    wait_for(lambda: len(instances()) == 4, 20, "four replicas answering (two workers host them, so each checks several at once)")
    before = instances()
    sick = sorted(before)[0]
    flag.write_text(sick)
    wait_for(lambda: (now := instances()) and sick not in now and len(now) == 4, 30, "the sick replica replaced")
    wait_for(lambda: deployment_status("packed", "Fragile").status == "HEALTHY", 20, "HEALTHY again")
    assert before - {sick} <= instances(), "the healthy replicas checked in the same messages kept running"
    serve.delete("packed")


def test_a_worker_answers_for_its_thread_replicas_in_one_message_each_by_its_own_check(serve_cluster: Any, tmp_path: Path) -> None:
    from actors.serve._api import current_session
    from protocol import HealthChecks

    flag = tmp_path / "unhealthy"
    options = {"num_replicas": 4, "isolation": "thread", "health_check_period_s": 60.0}  # no periodic check meanwhile
    handle = serve.run(serve_apps.Fragile.options(**options).bind(str(flag)), name="asked", route_prefix=None)
    seen: dict[str, dict[str, Any]] = {}
    wait_for(lambda: seen.update({w["replica_id"]: w for w in (handle.whoami.remote().result(timeout_s=10) for _ in range(20))})
             or len(seen) == 4, 20, "all four replicas answering")
    worker = max({"worker-0", "worker-1"}, key=lambda n: sum(w["node"] == n for w in seen.values()))
    mine = sorted(rid for rid, w in seen.items() if w["node"] == worker)
    flag.write_text(seen[mine[0]]["instance"])
    session = current_session()
    address = next(w.address for w in session.workers if w.node_id == worker)
    answer = session.system.ref(address, "node").ask(HealthChecks([*(f"replica/{rid}" for rid in mine), "replica/gone"], 2.0),
                                                      timeout=10).get()
    assert answer[0] == {"error": "RuntimeError: flag file says unhealthy"}
    assert answer[1:-1] == [{"ongoing": 0, "models": []}] * (len(mine) - 1)
    assert answer[-1] == {"error": "LookupError: no replica actor 'replica/gone' runs in this process"}
    serve.delete("asked")


def _answer_other_than(handle: Any, instance: str) -> bool:
    try:
        return handle.remote().result(timeout_s=5) != instance
    except Exception:
        return False


def test_replicas_of_a_sigkilled_worker_are_replaced_on_the_survivor(serve_cluster: Any) -> None:
    handle = serve.run(serve_apps.Echo.options(num_replicas=4, isolation="thread").bind(), name="kill", route_prefix=None)
    victim = handle.whoami.remote().result(timeout_s=10)
    os.kill(victim["pid"], signal.SIGKILL)
    survivor = {"worker-0", "worker-1"} - {victim["node"]}

    def replaced() -> bool:
        d = deployment_status("kill", "Echo")
        nodes = serve.status().nodes
        return d.replica_states == {"RUNNING": 4} and [n.node_id for n in nodes] == list(survivor)

    wait_for(replaced, 20, "the replicas to be replaced on the surviving worker")
    assert {handle.whoami.remote().result(timeout_s=10)["node"] for _ in range(20)} == survivor


def test_delete_stops_every_replica_and_removes_the_application(serve_cluster: Any) -> None:
    handle = serve.run(serve_apps.Echo.bind(), name="gone", route_prefix=None)
    serve.delete("gone")
    assert "gone" not in serve.status().applications
    assert all(n.replicas == 0 for n in serve.status().nodes)
    with pytest.raises(DeploymentNotFoundError, match="no deployment 'Echo' in application 'gone'"):
        handle.remote(1).result(timeout_s=10)
    serve.delete("never-existed")


def test_downscaling_lets_in_flight_requests_finish(serve_cluster: Any) -> None:
    handle = serve.run(serve_apps.Echo.options(num_replicas=2).bind(), name="graceful", route_prefix=None)
    slow = [handle.slow.remote(1.0) for _ in range(4)]
    serve.run(serve_apps.Echo.options(num_replicas=1).bind(), name="graceful", route_prefix=None)
    assert [r.result(timeout_s=20) for r in slow] == ["slept 1.0"] * 4


def test_downscaling_stops_the_replica_idle_now_not_one_the_last_health_check_saw_idle(serve_cluster: Any, tmp_path: Path) -> None:
    handle = serve.run(serve_apps.Holder.bind(), name="holders", route_prefix=None)
    release = tmp_path / "release"
    held: dict[str, Any] = {}
    for i in range(40):  # hold requests until three of the four replicas are busy
        if len(held) == 3:
            break
        marker = tmp_path / f"marker{i}"
        response = handle.hold.remote(str(marker), str(release))
        wait_for(marker.exists, 10, "the held request to start")
        held.setdefault(marker.read_text(), response)
    assert len(held) == 3, "three replicas hold a request"
    serve.run(serve_apps.Holder.options(num_replicas=3).bind(), name="holders", route_prefix=None)
    wait_for(lambda: deployment_status("holders", "Holder").replica_states == {"RUNNING": 3}, 20, "the downscale to three")
    release.write_text("go")
    assert {replica: response.result(timeout_s=20) for replica, response in held.items()} == {r: r for r in held}
    assert {handle.whoami.remote().result(timeout_s=10) for _ in range(30)} <= set(held)
    serve.delete("holders")


def test_async_methods_and_named_methods_are_called_through_the_handle(serve_cluster: Any) -> None:
    handle = serve.run(serve_apps.Echo.bind(), name="methods", route_prefix=None)
    assert handle.async_echo.remote(3).result(timeout_s=10) == {"async": 3}
    assert handle.options(method_name="async_echo").remote(4).result(timeout_s=10) == {"async": 4}
    with pytest.raises(ValueError, match="boom"):
        handle.fail.remote("boom").result(timeout_s=10)
    with pytest.raises(AttributeError, match="deployment 'Echo' has no method 'nope'"):
        handle.nope.remote().result(timeout_s=10)
    with pytest.raises(TypeError, match="cannot be encoded"):
        handle.unencodable.remote().result(timeout_s=10)
    assert handle.remote("still serving").result(timeout_s=10) == "still serving"


def test_result_with_a_timeout_raises_timeout_error(serve_cluster: Any) -> None:
    handle = serve.run(serve_apps.Sleepy.bind(), name="sleepy", route_prefix=None)
    with pytest.raises(TimeoutError):
        handle.remote(2.0).result(timeout_s=0.2)


class NotEncodable:
    pass


@pytest.mark.parametrize(
    ("make", "error", "text"),
    [
        (lambda: serve.deployment(num_replicas=-1)(serve_apps.Sleepy.func_or_class), DeploymentOptionError, "'num_replicas': expected an int >= 0, got -1"),
        (lambda: serve_apps.Echo.options(num_replicas=2.5), DeploymentOptionError, "'num_replicas': expected an int, got 2.5"),
        (lambda: serve_apps.Echo.options(replicas=2), DeploymentOptionError, "unknown deployment option 'replicas'"),
        (lambda: serve_apps.Echo.options(max_ongoing_requests=0), DeploymentOptionError, "'max_ongoing_requests': expected an int >= 1"),
        (lambda: serve_apps.Echo.options(actor_options={"num_cpu": 1}), DeploymentOptionError, "unknown key 'num_cpu'"),
        (lambda: serve_apps.Echo.options(ray_actor_options={"num_cpus": -1}), DeploymentOptionError, "'actor_options.num_cpus': expected a number >= 0"),
        (lambda: serve_apps.Echo.options(user_config={1, 2}), DeploymentOptionError, "'user_config' must be msgpack-encodable"),
        (lambda: serve_apps.Echo.options(health_check_period_s=0), DeploymentOptionError, "'health_check_period_s': expected a number > 0"),
    ],
)
def test_invalid_options_are_refused_naming_the_field(make: Any, error: type, text: str) -> None:
    with pytest.raises(error, match=text):
        make()


def test_bad_applications_are_refused_and_nothing_is_deployed(serve_cluster: Any) -> None:
    with pytest.raises(TypeError, match=r"Echo.bind\(\): argument 0: cannot send tests.test_serve_control_plane.NotEncodable"):
        serve.run(serve_apps.Echo.bind(NotEncodable()), name="bad1", route_prefix=None)

    @serve.deployment
    class Local:
        pass

    with pytest.raises(DeploymentOptionError, match="defined inside a function"):
        serve.run(Local.bind(), name="bad2", route_prefix=None)
    with pytest.raises(DeploymentOptionError, match="more than any worker has"):
        serve.run(serve_apps.Echo.options(actor_options={"num_cpus": 64}).bind(), name="bad3", route_prefix=None)
    with pytest.raises(TypeError, match=r"takes an application made with .bind\(\)"):
        serve.run(serve_apps.Echo, name="bad4", route_prefix=None)  # type: ignore[arg-type]
    assert serve.status().applications == {}
    with pytest.raises(TypeError, match="cannot be called directly"):
        serve_apps.Echo()


def test_a_deployment_defined_in_the_users_own_script_runs_in_workers(tmp_path: Path) -> None:
    script = tmp_path / "my_app.py"
    script.write_text(
        "from actors import serve\n"
        "import os\n"
        "@serve.deployment(num_replicas=2)\n"
        "class Greeter:\n"
        "    def __init__(self, greeting):\n"
        "        self.greeting = greeting\n"
        "    def __call__(self, name):\n"
        "        return f'{self.greeting}, {name} from pid {os.getpid()}'\n"
        "if __name__ == '__main__':\n"
        "    serve.start(workers=1, http_options={'port': 0})\n"
        "    handle = serve.run(Greeter.bind('hello'), name='greet', route_prefix=None)\n"
        "    print(handle.remote('you').result(timeout_s=10), flush=True)\n"
        "    print(serve.status().applications['greet'].status, flush=True)\n"
        "    print(os.getpid(), flush=True)\n"
        "    serve.shutdown()\n"
    )
    before = child_pids()
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120,
        env=dict(os.environ, PYTHONPATH=str(ROOT)), cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0].startswith("hello, you from pid ") and lines[1] == "RUNNING"
    assert int(lines[0].rsplit(" ", 1)[1]) != int(lines[2]), "the replica runs in a worker, not the script"
    assert child_pids() <= before


def test_shutdown_leaves_no_worker_process_behind() -> None:
    from tests.conftest import fast_serve_config

    before = child_pids()
    serve.start(workers=2, config=fast_serve_config(), http_options={"port": 0})
    try:
        assert len(child_pids() - before) == 2
        serve.run(serve_apps.Echo.bind(), name="x", route_prefix=None)
    finally:
        serve.shutdown()
    assert child_pids() <= before
    with pytest.raises(RuntimeError, match="serve.start"):
        serve.status()


def test_starting_twice_in_one_process_is_refused(serve_cluster: Any) -> None:
    with pytest.raises(RuntimeError, match="already started"):
        serve.start(workers=1, http_options={"port": 0})


@pytest.mark.parametrize("workers", [-1, "two", [5], [{"CPU": -1}]])
def test_bad_worker_specs_are_refused(workers: Any) -> None:
    with pytest.raises(ValueError, match="workers"):
        serve.start(workers=workers, http_options={"port": 0})


HEAD_SCRIPT = """
import sys, threading
from actors import serve
from tests.conftest import fast_serve_config
serve.start(workers=1, config=fast_serve_config(), http_options={"port": 0})
from actors.serve._api import current_session
print("CONTROLLER", current_session().controller, flush=True)
sys.stdin.read()
serve.shutdown()
"""


def test_a_second_process_connects_to_a_running_head_by_address(tmp_path: Path) -> None:
    from tests.conftest import fast_serve_config

    head = subprocess.Popen(
        [sys.executable, "-c", HEAD_SCRIPT], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT)), cwd=ROOT,
    )
    try:
        line = head.stdout.readline()  # type: ignore[union-attr]
        assert line.startswith("CONTROLLER "), line
        address = line.split()[1]
        serve.start(address=address, config=fast_serve_config())
        try:
            handle = serve.run(serve_apps.Echo.options(num_replicas=1).bind("remote:"), name="via-address", route_prefix=None)
            assert handle.remote(1).result(timeout_s=10) == "remote:1"
            assert [n.node_id for n in serve.status().nodes] == ["worker-0"]
        finally:
            serve.shutdown()
    finally:
        head.stdin.close()  # type: ignore[union-attr]
        head.wait(30)
        head.stdout.close()  # type: ignore[union-attr]
    assert head.returncode == 0


def test_connecting_where_no_cluster_runs_is_a_clear_error(tmp_path: Path) -> None:
    from tests.conftest import fast_serve_config

    with pytest.raises(ConnectionError, match="no corral cluster answers at ipc://"):
        serve.start(address=f"ipc://{tmp_path}/nothing.sock", config=fast_serve_config())
    with pytest.raises(RuntimeError, match="serve.start"):
        serve.status()


def test_a_worker_cut_off_and_back_rejoins_cleanly_with_its_stale_replicas_stopped(serve_cluster: Any) -> None:
    from actors.serve._api import current_session
    from protocol import ListReplicas

    handle = serve.run(serve_apps.Echo.options(num_replicas=4).bind(), name="cut", route_prefix=None)
    session = current_session()
    victim = session.workers[0]
    node_ref = session.system.ref(victim.address, "node")
    assert len(node_ref.ask(ListReplicas(), timeout=5).get()) == 2
    os.kill(victim.proc.pid, signal.SIGSTOP)  # cut off: alive but silent
    try:
        wait_for(lambda: [n.node_id for n in serve.status().nodes] == ["worker-1"]
                 and deployment_status("cut", "Echo").replica_states == {"RUNNING": 4}, 20, "the replacement on worker-1")
    finally:
        os.kill(victim.proc.pid, signal.SIGCONT)
    wait_for(lambda: sorted(n.node_id for n in serve.status().nodes) == ["worker-0", "worker-1"], 20, "worker-0 to rejoin")
    wait_for(lambda: node_ref.ask(ListReplicas(), timeout=5).get() == [], 20, "its stale replicas to stop")
    status = serve.status()
    assert deployment_status("cut", "Echo").replica_states == {"RUNNING": 4}
    assert sum(n.replicas for n in status.nodes) == 4, "nothing counted twice"
    assert len(replica_ids(handle, 40)) == 4


def test_a_deployment_whose_health_check_always_fails_is_never_running(serve_cluster: Any) -> None:
    with pytest.raises(DeployFailedError, match="the first health check failed: RuntimeError: never healthy"):
        serve.run(serve_apps.NeverHealthy.bind(), name="sick", route_prefix=None, timeout_s=60)
    serve.delete("sick")


def test_a_hanging_health_check_fails_without_blocking_requests_and_the_replica_is_replaced(serve_cluster: Any, tmp_path: Any) -> None:
    flag = tmp_path / "hang"
    handle = serve.run(serve_apps.HangingHealth.bind(str(flag)), name="hangs", route_prefix=None)
    first = handle.remote().result(timeout_s=10)
    flag.write_text(first)
    started = time.monotonic()
    assert handle.remote().result(timeout_s=5) == first and time.monotonic() - started < 0.5, \
        "a request does not wait for the hung check"
    wait_for(lambda: handle.remote().result(timeout_s=10) != first, 30, "the replica with the hung check replaced")
    wait_for(lambda: deployment_status("hangs", "HangingHealth").replica_states == {"RUNNING": 1}, 30,
             "the hung replica to stop (not STOPPING for ever)")
    serve.delete("hangs")
