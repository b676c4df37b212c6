"""What went wrong in a new user's first hour, each reproduced with real
processes: scripts that never exited, deploys from the user's own folder,
stray kills by reused pids, requests sent to a dead replica while the head is
down, calls to a failed app that hung, and the CLI's smaller faults."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterator

import psutil
import pytest
import zmq

from actors import ActorSystem, Config, ServeSettings, serve
from actors.serve import DeployFailedError, ReplicaDiedError
from scripts._cluster_files import cluster_dir, free_port, read_head
from scripts._local_cluster import LocalCluster
from transport import TransportConfig, generate_keys

from .conftest import FAST
from .helpers import interruptible, wait_for
from .serve_apps import Echo, FailsToStart, SlowToStart
from .test_cli import CORRAL, ENV, ROOT

NO_PYTHONPATH = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def run_corral(*args: str, cwd: Path | str = ROOT, env: dict[str, str] | None = None,
               timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CORRAL, *args], capture_output=True, text=True, timeout=timeout,
                          env=ENV if env is None else env, cwd=cwd)


def _reap(proc: subprocess.Popen[str]) -> None:
    """Kill a process the test started if it still runs, and close its pipes."""
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)
    for stream in (proc.stdout, proc.stderr):
        if stream:
            stream.close()


@pytest.fixture
def clusters() -> Iterator[Callable[..., str]]:
    """``corral start`` from any folder; every cluster is stopped after the test."""
    ports: list[int] = []

    def start(*extra: str, cwd: Path | str = ROOT, env: dict[str, str] | None = None) -> str:
        port = free_port()
        ports.append(port)
        out = run_corral("start", "--port", str(port), *extra, cwd=cwd, env=env)
        assert out.returncode == 0, out.stderr
        return str(port)

    yield start
    for port in ports:
        head = read_head(port)
        run_corral("stop", "--port", str(port))
        shutil.rmtree(cluster_dir(port), ignore_errors=True)  # its keys, checkpoint and logs
        for record in (head or {}).get("worker_records", []):
            wait_for(lambda pid=record["pid"]: not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie",
                     30, f"worker {record['pid']} to exit")


# ---- 1. a script that ends without serve.shutdown() exits ------------------------------------

SCRIPT = """
import sys, time
from actors import Config, ServeSettings, serve
from actors.serve._api import current_session
from tests.serve_apps import Echo

serve.start(workers=1, config=Config(serve=ServeSettings(reconcile_interval_s=0.05)), http_options={"port": 0})
handle = serve.run(Echo.bind("x:"), name="e", route_prefix=None)
print("READY", handle.remote("y").result(timeout_s=30), *[w.proc.pid for w in current_session().workers], flush=True)
if sys.argv[1] == "raise":
    raise RuntimeError("an uncaught error")
if sys.argv[1] == "sigint":
    time.sleep(120)
"""


@pytest.mark.parametrize("ending", ["end", "raise", "sigint"])
def test_a_script_that_never_calls_shutdown_exits_promptly_and_stops_its_workers(ending: str, tmp_path: Path) -> None:
    script = tmp_path / "forgot_shutdown.py"
    script.write_text(SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), ending], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=ENV, cwd=tmp_path, preexec_fn=interruptible)
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        assert line.startswith("READY x:y"), (line, proc.stderr.read() if proc.poll() is not None else "")  # type: ignore[union-attr]
        workers = [int(pid) for pid in line.split()[2:]]
        assert workers, "the script started a worker"
        if ending == "sigint":
            proc.send_signal(signal.SIGINT)
        finished = time.monotonic()
        code = proc.wait(15)
        assert time.monotonic() - finished < 10, "it exited within a few seconds"
        assert code == {"end": 0, "raise": 1, "sigint": -signal.SIGINT}[ending]
        wait_for(lambda: not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie" for pid in workers),
                 10, "its workers to exit")
    finally:
        _reap(proc)


# ---- 2. corral deploy from the user's own folder ---------------------------------------------

MYAPP = """
from actors import serve

@serve.deployment(num_replicas=2)
class Greeter:
    def __call__(self, name="you"):
        return f"hello {name}"

    def shout(self, name):
        return f"HELLO {name.upper()}"

app = Greeter.bind()
"""


def _user_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "myproject"
    folder.mkdir()
    (folder / "myapp.py").write_text(MYAPP)
    (folder / "config.yaml").write_text("applications:\n  - name: greet\n    import_path: myapp:app\n")
    return folder


def test_a_user_deploys_and_calls_their_own_module_from_their_folder(clusters: Callable[..., str], tmp_path: Path) -> None:
    folder = _user_folder(tmp_path)
    port = clusters("--workers", "2", cwd=folder, env=NO_PYTHONPATH)
    out = run_corral("deploy", "config.yaml", "--port", port, cwd=folder, env=NO_PYTHONPATH)
    assert out.returncode == 0, out.stderr
    out = run_corral("call", "greet", '["ann"]', "--port", port, cwd=folder, env=NO_PYTHONPATH)
    assert out.returncode == 0 and json.loads(out.stdout) == "hello ann", out.stderr
    # options after the JSON argument, or before it
    out = run_corral("call", "greet", "--method", "shout", '["ann"]', "--port", port, cwd=folder, env=NO_PYTHONPATH)
    assert out.returncode == 0 and json.loads(out.stdout) == "HELLO ANN", out.stderr
    assert run_corral("stop", "--port", port, cwd=folder, env=NO_PYTHONPATH).returncode == 0


def test_a_cluster_started_in_another_folder_runs_code_deployed_from_the_users_folder(
    clusters: Callable[..., str], tmp_path: Path
) -> None:
    folder = _user_folder(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    port = clusters("--workers", "1", cwd=elsewhere, env=NO_PYTHONPATH)
    out = run_corral("deploy", str(folder / "config.yaml"), "--app-dir", str(folder), "--port", port,
                     cwd=elsewhere, env=NO_PYTHONPATH)
    assert out.returncode == 0, out.stderr + out.stdout
    out = run_corral("call", "greet", '"bo"', "--port", port, cwd=elsewhere, env=NO_PYTHONPATH)
    assert out.returncode == 0 and json.loads(out.stdout) == "hello bo", out.stderr


# ---- 3. corral stop signals only the processes it started ------------------------------------


def test_stop_leaves_alone_a_process_that_got_a_recorded_pid_and_removes_stale_records(
    clusters: Callable[..., str],
) -> None:
    port = clusters("--workers", "1")
    folder = cluster_dir(int(port))
    bystanders = [subprocess.Popen(["sleep", "120"]) for _ in range(2)]
    try:
        first, second = bystanders
        # a joined worker that died, whose pid the kernel gave to an unrelated program since
        (folder / f"joined-{first.pid}.json").write_text(json.dumps({
            "pid": first.pid, "started": psutil.Process(first.pid).create_time() - 100.0,
            "cmdline": [sys.executable, "-m", "actors.serve.worker"], "address": "tcp://127.0.0.1:1",
        }))
        # an old record with a bare pid
        (folder / f"joined-{second.pid}.json").write_text(json.dumps({"pid": second.pid, "address": "tcp://127.0.0.1:2"}))
        out = run_corral("stop", "--port", port)
        assert out.returncode == 0, out.stderr
        assert first.poll() is None and second.poll() is None, "unrelated processes were not signalled"
        assert not list(folder.glob("joined-*.json")), "stale records are removed"
    finally:
        for proc in bystanders:
            proc.kill()
            proc.wait(10)


# ---- 4. the router drops a dead replica at once, even while the head is down -------------------


@pytest.fixture
def slow_heartbeat_cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    """A head and two workers whose heartbeats need 5 s to call a peer dead, as by default."""
    transport = {"heartbeat_interval_s": 1.0, "heartbeat_liveness": 5}
    settings = {"reconcile_interval_s": 0.05, "control_timeout_s": 10.0}
    local = LocalCluster(tmp_path, settings=settings, transport=transport)
    try:
        local.start_head()
        for node in ("w0", "w1"):
            local.start_worker(node)
        serve.start(address=local.address, config=Config(transport=TransportConfig(**transport),
                                                          serve=ServeSettings(**settings, request_timeout_s=30.0)))
        yield local
    finally:
        serve.shutdown()
        local.close()


def test_with_the_head_down_a_killed_workers_replicas_fail_fast_and_get_no_more_requests(
    slow_heartbeat_cluster: LocalCluster,
) -> None:
    handle = serve.run(Echo.options(num_replicas=2).bind(), name="spread", route_prefix=None)
    nodes: dict[str, str] = {}
    wait_for(lambda: nodes.update({(a := handle.whoami.remote().result(10))["node"]: a["replica_id"]}) or len(nodes) == 2,
             30, "a replica on each worker")
    slow_heartbeat_cluster.kill_head()
    in_flight = [handle.slow.remote(4) for _ in range(8)]
    wait_for(lambda: handle._router is not None and sum(handle._router.statistics().in_flight.values()) == 8,
             10, "the slow requests to be in flight")
    on_w0 = handle._router.statistics().in_flight.get(nodes["w0"], 0)  # type: ignore[union-attr]
    assert on_w0 > 0, "some requests run on the worker about to die"
    finished_at: dict[int, float] = {}
    for i, response in enumerate(in_flight):
        response._future.add_done_callback(lambda _done, i=i: finished_at.setdefault(i, time.monotonic()))
    slow_heartbeat_cluster.kill_worker("w0")
    killed = time.monotonic()
    died = []
    for i, response in enumerate(in_flight):
        try:
            assert response.result(timeout_s=10) == "slept 4"
        except ReplicaDiedError as exc:
            died.append(finished_at[i] - killed)
            assert nodes["w0"] in str(exc)
    assert len(died) == on_w0, "exactly the requests on the dead worker failed"
    assert max(died) < 1.0, f"their failure was known within 1 s, not a liveness window: {died}"
    # past the transport's quarantine (a liveness window), the dead replica is still never picked
    until = time.monotonic() + 7.0
    while time.monotonic() < until:
        sent = time.monotonic()
        assert handle.whoami.remote().result(timeout_s=5)["node"] == "w1"
        assert time.monotonic() - sent < 1.0, "no request stalls on the dead replica"


# ---- 5. requests to a failed or never-ready deployment say so ---------------------------------


def test_a_request_to_a_deploy_failed_app_fails_at_once_with_its_message(serve_cluster: Any) -> None:
    handle = serve.run(FailsToStart.bind(), name="broken", wait_for_ready=False, route_prefix=None)
    early = handle.remote()  # waits at the handle: no replica yet
    wait_for(lambda: serve.status().applications["broken"].status == "DEPLOY_FAILED", 60, "DEPLOY_FAILED")
    with pytest.raises(DeployFailedError, match="cannot load the model file"):
        early.result(timeout_s=10)
    started = time.monotonic()
    with pytest.raises(DeployFailedError, match="DEPLOY_FAILED.*cannot load the model file"):
        serve.get_app_handle("broken").remote().result(timeout_s=30)
    assert time.monotonic() - started < 2.0


def test_a_request_that_waits_for_replicas_that_do_not_exist_says_so_when_it_times_out(serve_cluster: Any) -> None:
    handle = serve.run(SlowToStart.bind(60.0), name="nowhere", wait_for_ready=False, route_prefix=None)
    with pytest.raises(TimeoutError, match="no running replica"):
        handle.remote("x").result(timeout_s=0.5)


def test_corral_call_of_a_failed_app_reports_the_failure_at_once(clusters: Callable[..., str], tmp_path: Path) -> None:
    port = clusters("--workers", "1")
    config = tmp_path / "broken.yaml"
    config.write_text("applications:\n  - name: broken\n    import_path: tests.serve_apps:FailsToStart\n")
    assert run_corral("deploy", str(config), "--port", port).returncode == 1  # it failed to deploy
    started = time.monotonic()
    out = run_corral("call", "broken", "--port", port)
    assert out.returncode == 1 and "DeployFailedError" in out.stderr and "cannot load the model file" in out.stderr
    assert time.monotonic() - started < 15, "no 60 s wait"


# ---- 6. the smaller ones ---------------------------------------------------------------------


def test_fresh_starts_over_a_checkpoint_file_that_is_not_a_database(clusters: Callable[..., str], tmp_path: Path) -> None:
    store = tmp_path / "checkpoint.sqlite"
    store.write_bytes(b"this is not an SQLite database" * 10)
    port = free_port()
    out = run_corral("start", "--workers", "0", "--port", str(port), "--store", f"sqlite:///{store}")
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and str(store) in out.stderr, out.stderr
    port_text = clusters("--workers", "0", "--store", f"sqlite:///{store}", "--fresh")
    assert run_corral("status", "--port", port_text).returncode == 0
    kept = list(tmp_path.glob("checkpoint.sqlite.unreadable-*"))
    assert len(kept) == 1 and kept[0].read_bytes().startswith(b"this is not"), "the unreadable file is kept aside"


def test_a_config_whose_module_raises_on_import_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "explodes.py").write_text("raise RuntimeError('the model registry is down')\n")
    (tmp_path / "c.yaml").write_text("applications:\n  - name: a\n    import_path: explodes:app\n")
    out = run_corral("deploy", "c.yaml", "--port", str(free_port()), cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "error: c.yaml: applications[0].import_path: importing 'explodes:app' raised RuntimeError: the model registry is down"
    ]


def test_a_missing_attribute_is_named_once(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("applications:\n  - name: a\n    import_path: tests.serve_apps:nope\n")
    out = run_corral("deploy", str(tmp_path / "c.yaml"), "--port", str(free_port()))
    assert out.returncode == 2 and out.stderr.count("cannot import") == 1, out.stderr
    assert "'nope' not found in module 'tests.serve_apps'" in out.stderr


def test_the_worker_module_runs_without_a_runtime_warning() -> None:
    out = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-m", "actors.serve.worker", "--help"],
                         capture_output=True, text=True, timeout=60, env=ENV, cwd=ROOT)
    assert out.returncode == 0 and "RuntimeWarning" not in out.stderr, out.stderr


def test_corral_run_is_found_by_status_call_and_stop(tmp_path: Path) -> None:
    port = str(free_port())
    proc = subprocess.Popen([*CORRAL, "run", "tests.serve_apps:Echo", "--workers", "1", "--port", port, "--dashboard-port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=ROOT)
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        assert " at ipc://" in line or " at tcp://" in line, line
        status = run_corral("status", "--json", "--port", port)
        assert status.returncode == 0 and "default" in json.loads(status.stdout)["applications"], status.stderr
        out = run_corral("call", "default", '"ping"', "--port", port)
        assert out.returncode == 0 and json.loads(out.stdout) == "ping", out.stderr
        assert run_corral("stop", "--port", port).returncode == 0
        assert proc.wait(30) == 0
        assert read_head(int(port)) is None
    finally:
        _reap(proc)


def test_status_into_a_closed_pipe_ends_quietly(clusters: Callable[..., str]) -> None:
    port = clusters("--workers", "0")
    out = subprocess.run(f"{' '.join(CORRAL)} status --port {port} | true", shell=True, capture_output=True,
                         text=True, env=ENV, cwd=ROOT, timeout=60)
    assert "Traceback" not in out.stderr and "BrokenPipe" not in out.stderr, out.stderr


@pytest.mark.parametrize("count", ["-1", "two"])
def test_a_negative_or_non_numeric_worker_count_is_refused(count: str) -> None:
    out = run_corral("start", "--workers", count, "--port", str(free_port()))
    assert out.returncode == 2 and "--workers" in out.stderr and "whole number >= 0" in out.stderr


def test_a_plain_stranger_on_a_keyed_port_is_counted_and_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    keys = generate_keys(tmp_path / "keys")
    host = ActorSystem(Config(transport=TransportConfig(**FAST, host="127.0.0.1", curve=keys)))
    ctx = zmq.Context()
    stranger = ctx.socket(zmq.DEALER)
    try:
        with caplog.at_level("WARNING", logger="corral.transport"):
            stranger.setsockopt(zmq.LINGER, 0)
            stranger.connect(host.address)
            stranger.send(b"hello?")
            wait_for(lambda: host.statistics().transport.auth_failures >= 1, 10, "the plain stranger to be counted")
        assert any("refused a connection" in r.getMessage() for r in caplog.records)
    finally:
        stranger.close()
        ctx.term()
        host.shutdown()


def test_a_local_worker_that_dies_is_started_again_and_counted(clusters: Callable[..., str]) -> None:
    metrics_port = free_port()
    port = clusters("--workers", "2", "--metrics-port", str(metrics_port))
    head = read_head(int(port))
    assert head is not None
    victim = next(r for r in head["worker_records"] if r["node_id"] == "worker-0")
    os.kill(victim["pid"], signal.SIGKILL)

    def restarted() -> bool:
        now = read_head(int(port)) or {}
        record = next(r for r in now.get("worker_records", []) if r["node_id"] == "worker-0")
        return record["pid"] != victim["pid"] and psutil.pid_exists(record["pid"]) and record["restarts"] == 1

    wait_for(restarted, 30, "worker-0 to be started again")

    def two_nodes() -> dict[str, Any] | None:
        status = json.loads(run_corral("status", "--json", "--port", port).stdout)
        return status if len(status["nodes"]) == 2 else None

    status = wait_for(two_nodes, 30, "the cluster to be back at two workers")
    assert status["worker_restarts"] == {"worker-0": 1, "worker-1": 0}
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
    assert 'corral_worker_restarts_total{node="worker-0"} 1.0' in text


def test_connecting_without_the_clusters_keys_says_so_and_with_them_works(clusters: Callable[..., str]) -> None:
    port = clusters("--workers", "0")
    address = read_head(int(port))["address"]  # type: ignore[index]
    with pytest.raises(ConnectionError, match="keys"):
        serve.start(address=address)
    serve.start(address=address, keys=str(cluster_dir(int(port)) / "keys"))
    try:
        assert serve.status().applications == {}
    finally:
        serve.shutdown()


SLOW_CLEANUP = """
import time
from actors import Config, ServeSettings, serve
from actors.serve._api import current_session
from tests.serve_apps import Echo

serve.start(workers=1, config=Config(serve=ServeSettings(reconcile_interval_s=0.05, exit_timeout_s=60)), http_options={"port": 0})
serve.run(Echo.bind(), name="e", route_prefix=None)
current_session().close = lambda: time.sleep(60)  # a clean-up that would take a minute
print("READY", *[w.proc.pid for w in current_session().workers], flush=True)
"""


def test_a_second_ctrl_c_exits_at_once_while_the_clean_up_runs(tmp_path: Path) -> None:
    script = tmp_path / "slow_cleanup.py"
    script.write_text(SLOW_CLEANUP)
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=ENV, cwd=tmp_path)
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        assert line.startswith("READY"), line
        workers = [int(pid) for pid in line.split()[1:]]
        # the main thread ended: the exit hook waits for the clean-up and says so; Ctrl-C now exits at once
        assert "Ctrl-C again" in proc.stderr.readline()  # type: ignore[union-attr]
        interrupted = time.monotonic()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 130
        assert time.monotonic() - interrupted < 3
        wait_for(lambda: not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie" for pid in workers),
                 15, "its worker to exit with it")
    finally:
        _reap(proc)


def test_a_worker_that_died_while_the_head_was_down_is_given_up_as_soon_as_the_head_is_back(
    slow_heartbeat_cluster: LocalCluster,
) -> None:
    serve.run(Echo.options(num_replicas=2).bind(), name="spread", route_prefix=None)
    slow_heartbeat_cluster.kill_head()
    slow_heartbeat_cluster.kill_worker("w0")
    slow_heartbeat_cluster.start_head(recovery="required")

    def recovered() -> dict[str, Any] | None:
        try:
            stats = serve.controller_stats()["recovery"]
        except Exception:
            return None
        return stats if stats["recovery_s"] is not None else None

    stats = wait_for(recovered, 20, "the recovery to finish")
    assert stats["workers_given_up"] == 1
    assert stats["recovery_s"] < 5.0, "not after recovery_timeout_s (15 s)"
    wait_for(lambda: serve.status().applications["spread"].deployments["Echo"].replica_states == {"RUNNING": 2},
             30, "the lost replica to be replaced")
