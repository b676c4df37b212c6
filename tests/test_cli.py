"""The corral command, run as a subprocess the way a person runs it."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Callable, Iterator

import pytest

from scripts._cluster_files import alive, cluster_dir, free_port, read_head
from tests.helpers import wait_for

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = Path(sys.executable).parent / "corral"
CORRAL = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "scripts.cli"]
ENV = dict(os.environ, PYTHONPATH=str(ROOT))


def corral(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CORRAL, *args], capture_output=True, text=True, timeout=timeout, env=ENV, cwd=ROOT)


@pytest.fixture
def cluster() -> Iterator[Callable[..., str]]:
    """Starts clusters with ``corral start``; always ``corral stop``s them."""
    ports: list[int] = []

    def start(*extra: str) -> str:
        port = free_port()
        ports.append(port)
        http = () if "--http-port" in extra else ("--http-port", "0")  # clusters side by side: no contention for 8000
        dashboard = () if "--dashboard-port" in extra or "--no-dashboard" in extra else ("--dashboard-port", "0")
        out = corral("start", "--port", str(port), *http, *dashboard, *extra)
        assert out.returncode == 0, out.stderr
        return str(port)

    yield start
    for port in ports:
        head = read_head(port)
        corral("stop", "--port", str(port))
        shutil.rmtree(cluster_dir(port), ignore_errors=True)  # its keys, checkpoint and logs
        if head is not None:
            for pid in [head["pid"], *head["workers"]]:
                assert not alive(pid), f"process {pid} outlived corral stop"


CONFIG = """
applications:
  - name: echo
    import_path: tests.serve_apps:Echo
    args: {prefix: "cfg:"}
    deployments:
      - name: Echo
        num_replicas: 3
"""


def test_start_deploy_status_call_delete_stop(cluster: Callable[..., str], tmp_path: Path) -> None:
    port = cluster("--workers", "2")
    (tmp_path / "app.yaml").write_text(CONFIG)
    out = corral("deploy", str(tmp_path / "app.yaml"), "--port", port)
    assert out.returncode == 0, out.stderr
    assert "deployed: echo (3 replicas running)" in out.stdout and "HEALTHY" not in out.stdout, "no progress drawn off a terminal"
    status = corral("status", "--port", port)
    assert re.search(r"echo\s+Echo\s+RUNNING\s+HEALTHY\s+RUNNING=3", status.stdout), status.stdout
    assert "worker-0" in status.stdout and "worker-1" in status.stdout
    data = json.loads(corral("status", "--json", "--port", port).stdout)
    assert data["applications"]["echo"]["deployments"]["Echo"]["replica_states"] == {"RUNNING": 3}
    pids = {r["replica_id"]: r["pid"] for r in data["applications"]["echo"]["deployments"]["Echo"]["replicas"]}
    assert len(pids) == 3 and all(alive(pid) for pid in pids.values()), "each replica's own process"
    verbose = corral("status", "-v", "--port", port).stdout
    for rid, pid in pids.items():
        assert re.search(rf"{re.escape(rid)}\s+RUNNING\s+worker-\d\s+{pid}\s+(\d+ MiB|-)\s+process", verbose), verbose
    assert corral("call", "echo", '["x"]', "--port", port).stdout.strip() == '"cfg:x"'
    assert corral("call", "echo", '{"x": 5}', "--port", port).stdout.strip() == '"cfg:5"'
    assert json.loads(corral("call", "echo", "--method", "whoami", "--port", port).stdout)["app"] == "echo"
    assert corral("delete", "echo", "--port", port).returncode == 0
    assert "echo" not in corral("status", "--port", port).stdout


def test_starting_twice_on_a_port_says_so(cluster: Callable[..., str]) -> None:
    port = cluster("--workers", "1")
    out = corral("start", "--port", port)
    assert out.returncode == 1 and f"a corral cluster already runs on port {port}" in out.stderr


def test_a_worker_joins_from_another_shell_and_stop_stops_it_too(cluster: Callable[..., str]) -> None:
    port = cluster("--workers", "1")
    address = read_head(int(port))["address"]  # type: ignore[index]
    out = corral("start", "--join", address, "--resources", '{"CPU": 1, "GPU": 2}')
    assert out.returncode == 0, out.stderr
    pid = int(re.search(r"pid (\d+)", out.stdout).group(1))  # type: ignore[union-attr]
    data = json.loads(corral("status", "--json", "--port", port).stdout)
    assert len(data["nodes"]) == 2 and any(n["total"].get("GPU") == 2 for n in data["nodes"])
    assert corral("stop", "--port", port).returncode == 0
    wait_for(lambda: not alive(pid), 30, "the joined worker to stop")


def test_a_cluster_started_with_an_http_port_serves_its_config_over_http(cluster: Callable[..., str], tmp_path: Path) -> None:
    import socket

    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        http_port = probe.getsockname()[1]
    metrics_port = free_port()
    port = cluster("--workers", "1", "--http-port", str(http_port), "--metrics-port", str(metrics_port))
    (tmp_path / "app.yaml").write_text(
        f"http_options: {{port: {http_port}}}\napplications:\n"
        "  - {name: web, import_path: tests.http_apps:SyncPlain, route_prefix: /web}\n"
    )
    out = corral("deploy", str(tmp_path / "app.yaml"), "--port", port)
    assert out.returncode == 0, out.stderr
    assert httpx.get(f"http://127.0.0.1:{http_port}/web/hi", timeout=10).text == "sync GET /web/hi"
    assert httpx.get(f"http://127.0.0.1:{http_port}/nothing-here", timeout=10).status_code == 404
    status = corral("status", "--port", port).stdout
    assert re.search(r"/web\s+web", status) and f"http://127.0.0.1:{http_port}" in status, status

    def scrape() -> str:
        return httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text

    counted = ('corral_http_requests_total{proxy="head",route="/web",status="200"} 1.0',
               'corral_http_requests_total{proxy="head",route="(none)",status="404"} 1.0')
    text = wait_for(lambda: all(line in (t := scrape()) for line in counted) and t, 20,
                    "both HTTP requests to be counted per route and status")
    assert 'corral_http_request_latency_seconds_count{proxy="head",route="/web"} 1.0' in text


@pytest.mark.parametrize(
    ("config", "text"),
    [
        ("applications: []\n", "applications: expected a non-empty list"),
        ("applications:\n  - name: a\n    import_path: tests.serve_apps:Echo\n    deployments:\n      - name: Echo\n        num_replicas: -2\n",
         r"applications\[0\]\.deployments\[0\]\.num_replicas: deployment option 'num_replicas': expected an int >= 0, got -2"),
        ("applications:\n  - name: a\n    import_path: nowhere:App\n", r"applications\[0\]\.import_path: cannot import 'nowhere:App'"),
        ("applications:\n  - name: a\n    import_path: tests.serve_apps:Echo\n    replicas: 2\n", r"applications\[0\]\.replicas: unknown field"),
        ("applications:\n  - name: a\n    import_path: tests.serve_apps:Echo\n    deployments:\n      - name: Nope\n",
         r"applications\[0\]\.deployments\[0\]\.name: no deployment 'Nope'"),
        ("applications: [\n", "not valid YAML"),
        ("applications:\n  - name: a\n    import_path: tests.serve_apps:Echo\n    route_prefix: nope\n",
         r"applications\[0\]\.route_prefix: expected None or a string starting with '/', got 'nope'"),
        ("applications:\n  - {name: a, import_path: tests.serve_apps:Echo, route_prefix: /x}\n"
         "  - {name: b, import_path: tests.serve_apps:Echo, route_prefix: /x}\n",
         r"applications\[1\]\.route_prefix: '/x' is also the route_prefix of application 'a'"),
        ("http_options: {prot: 1}\napplications:\n  - name: a\n    import_path: tests.serve_apps:Echo\n",
         r"http_options: unknown option\(s\) \['prot'\]"),
    ],
)
def test_a_bad_config_names_the_file_and_field_exits_2_and_deploys_nothing(
    cluster: Callable[..., str], tmp_path: Path, config: str, text: str
) -> None:
    port = cluster("--workers", "1")
    path = tmp_path / "bad.yaml"
    path.write_text(config)
    out = corral("deploy", str(path), "--port", port)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert re.search(text, out.stderr) and str(path) in out.stderr, out.stderr
    assert json.loads(corral("status", "--json", "--port", port).stdout)["applications"] == {}


def test_deploy_leaves_other_apps_alone_unless_told_to_prune(cluster: Callable[..., str], tmp_path: Path) -> None:
    port = cluster("--workers", "1")
    (tmp_path / "a.yaml").write_text(CONFIG)
    (tmp_path / "b.yaml").write_text(CONFIG.replace("name: echo", "name: other\n    route_prefix: /other"))
    assert corral("deploy", str(tmp_path / "a.yaml"), "--port", port).returncode == 0
    assert corral("deploy", str(tmp_path / "b.yaml"), "--port", port).returncode == 0
    apps = json.loads(corral("status", "--json", "--port", port).stdout)["applications"]
    assert set(apps) == {"echo", "other"}
    out = corral("deploy", str(tmp_path / "b.yaml"), "--prune", "--port", port)
    assert "pruned application 'echo'" in out.stdout
    wait_for(lambda: set(json.loads(corral("status", "--json", "--port", port).stdout)["applications"]) == {"other"}, 20, "the prune")


def test_deploy_exits_non_zero_with_the_reason_on_deploy_failed(cluster: Callable[..., str], tmp_path: Path) -> None:
    port = cluster("--workers", "1")
    (tmp_path / "f.yaml").write_text("applications:\n  - name: broken\n    import_path: tests.serve_apps:FailsToStart\n")
    out = corral("deploy", str(tmp_path / "f.yaml"), "--port", port)
    assert out.returncode == 1 and "broken/FailsToStart failed to deploy" in out.stderr and "cannot load the model file" in out.stderr


def test_no_cluster_at_the_address_is_one_clear_line_and_exit_2(tmp_path: Path) -> None:
    out = corral("status", "--address", f"ipc://{tmp_path}/none.sock")
    assert out.returncode == 2 and out.stderr.strip().count("\n") == 0
    assert out.stderr.startswith("error: no corral cluster answers at ipc://")
    port = str(free_port())
    out = corral("call", "x", "--port", port)
    assert out.returncode == 2 and f"no corral cluster runs on port {port}" in out.stderr


def test_run_serves_in_the_foreground_until_ctrl_c_and_leaves_no_process(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [*CORRAL, "run", "scripts.serving_demo:app", "--workers", "2", "--dashboard-port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=ENV, cwd=ROOT,
    )
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        assert "serving scripts.serving_demo:app as 'default' on 2 workers" in line, line
        children = _children_of(proc.pid)
        assert len(children) == 2
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
        assert "stopped" in proc.stdout.read()  # type: ignore[union-attr]
        wait_for(lambda: not any(alive(pid) for pid in children), 30, "the workers to exit")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as fh:
                    if text.encode() in fh.read() and alive(int(entry)):
                        found.append(int(entry))
            except OSError:
                continue
    return found


def _children_of(pid: int) -> list[int]:
    out: list[int] = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as fh:
            out += [int(p) for p in fh.read().split()]
    return out


def test_the_readme_config_example_deploys(cluster: Callable[..., str], tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```yaml\n(applications:.*?)```", readme, re.S)
    assert block, "the README has a config example"
    (tmp_path / "readme.yaml").write_text(block.group(1))
    port = cluster("--workers", "2")
    out = corral("deploy", str(tmp_path / "readme.yaml"), "--port", port)
    assert out.returncode == 0, out.stderr
    assert corral("call", "scoring", '["hello"]', "--port", port).returncode == 0


def test_the_controller_serves_prometheus_metrics_when_asked(cluster: Callable[..., str], tmp_path: Path) -> None:
    import urllib.request

    metrics_port = free_port()
    settings = '{"metrics_push_interval_s": 0.2, "metrics_record_interval_s": 0.05}'
    port = cluster("--workers", "1", "--metrics-port", str(metrics_port), "--settings", settings)
    (tmp_path / "app.yaml").write_text(CONFIG)
    assert corral("deploy", str(tmp_path / "app.yaml"), "--port", port).returncode == 0
    for i in range(5):
        assert corral("call", "echo", f"[{i}]", "--port", port).returncode == 0
    failed = corral("call", "echo", '["boom"]', "--method", "fail", "--port", port)
    assert failed.returncode == 1 and "ValueError: boom" in failed.stderr

    def scrape() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as response:
            return response.read().decode()

    labels = 'app="echo",deployment="Echo"'
    wait_for(lambda: f"corral_requests_total{{{labels}}} 6.0" in scrape(), 20, "the six requests to be counted")
    text = scrape()
    assert f"corral_request_errors_total{{{labels}}} 1.0" in text
    assert f'corral_request_latency_seconds_count{{{labels}}} 6.0' in text
    assert f'corral_replicas{{{labels},state="RUNNING"}} 3.0' in text
    assert f"corral_target_replicas{{{labels}}} 3.0" in text
    assert 'corral_reconcile_loop_seconds{quantile="0.5"}' in text
    assert "corral_metrics_pushes_received_total" in text
    assert "corral_controller_restarts 0.0" in text and "corral_leaked_reservations 0.0" in text
    assert "corral_checkpoint_writes_total" in text and "corral_checkpoint_failures_total 0.0" in text


def test_ctrl_c_during_deploy_exits_promptly_and_leaves_no_process(cluster: Callable[..., str], tmp_path: Path) -> None:
    port = cluster("--workers", "1", "--resources", '{"CPU": 2}')
    (tmp_path / "wait.yaml").write_text(
        "applications:\n  - name: waits\n    import_path: tests.serve_apps:Echo\n    deployments:\n"
        "      - name: Echo\n        num_replicas: 2\n        actor_options: {num_cpus: 2}\n"
    )
    proc = subprocess.Popen([*CORRAL, "deploy", str(tmp_path / "wait.yaml"), "--port", port],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=ROOT)
    try:
        wait_for(lambda: "waits" in json.loads(corral("status", "--json", "--port", port).stdout)["applications"], 30,
                 "the deploy to be sent and waiting")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 130
        assert "interrupted" in proc.stderr.read()  # type: ignore[union-attr]
        assert _processes_mentioning(str(tmp_path / "wait.yaml")) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()


def test_the_cluster_is_encrypted_and_a_client_without_its_keys_gets_nothing(cluster: Callable[..., str], tmp_path: Path) -> None:
    from transport import generate_keys

    port = cluster("--workers", "1")
    keys = Path(read_head(int(port))["log"]).parent / "keys"  # type: ignore[index]
    for name in ("server.key", "client.key"):
        assert oct(os.stat(keys / name).st_mode & 0o777) == "0o600"
    assert corral("status", "--port", port).returncode == 0
    generate_keys(tmp_path / "wrong")
    out = corral("status", "--port", port, "--keys", str(tmp_path / "wrong"))
    assert out.returncode == 2 and "no corral cluster answers" in out.stderr
    assert corral("status", "--port", port).returncode == 0, "the head is still serving its members"


def test_a_head_killed_and_started_again_recovers_its_apps_and_keeps_their_replicas(cluster: Callable[..., str], tmp_path: Path) -> None:
    port = cluster("--workers", "2")
    (tmp_path / "c.yaml").write_text(CONFIG)
    assert corral("deploy", str(tmp_path / "c.yaml"), "--port", port).returncode == 0
    before = json.loads(corral("status", "--json", "--port", port).stdout)
    head = read_head(int(port))
    assert head is not None
    os.kill(head["pid"], signal.SIGKILL)
    wait_for(lambda: not alive(head["pid"]), 10, "the head to die")
    out = corral("start", "--port", port)
    assert out.returncode == 0, out.stderr
    assert "head restarted" in out.stdout and "recovering 2 workers and 1 applications" in out.stdout
    restarted = read_head(int(port))
    assert restarted is not None and restarted["workers"] == head["workers"], "the same workers, not new ones"
    after = wait_for(lambda: (s := json.loads(corral("status", "--json", "--port", port).stdout))["applications"]["echo"]["status"] == "RUNNING" and s, 30, "the app to be RUNNING")
    assert _without_memory(after["applications"]["echo"]) == _without_memory(before["applications"]["echo"])
    assert corral("call", "echo", '["x"]', "--port", port).stdout.strip() == '"cfg:x"'


def test_a_corrupt_checkpoint_stops_start_with_one_line_and_fresh_starts_empty(cluster: Callable[..., str], tmp_path: Path) -> None:
    import sqlite3

    port = cluster("--workers", "1")
    (tmp_path / "c.yaml").write_text(CONFIG)
    assert corral("deploy", str(tmp_path / "c.yaml"), "--port", port).returncode == 0
    head = read_head(int(port))
    assert head is not None
    os.kill(head["pid"], signal.SIGKILL)
    wait_for(lambda: not alive(head["pid"]), 10, "the head to die")
    with sqlite3.connect(Path(head["store"][len("sqlite://"):])) as db:
        db.execute("UPDATE checkpoint SET blob = ?", (b"\x01\x02",))
    out = corral("start", "--port", port)
    assert out.returncode == 2
    assert out.stderr.startswith("error: the checkpoint in sqlite://") and "is corrupt" in out.stderr and "--fresh" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    out = corral("start", "--port", port, "--fresh")
    assert out.returncode == 0, out.stderr
    status = json.loads(corral("status", "--json", "--port", port).stdout)
    assert status["applications"] == {}


def test_a_restarted_head_keeps_the_keys_and_address_its_joined_workers_know(cluster: Callable[..., str], tmp_path: Path) -> None:
    port = cluster("--workers", "1")
    head = read_head(int(port))
    assert head is not None
    keys = (Path(head["log"]).parent / "keys" / "server.key").read_bytes()
    assert corral("start", "--join", head["address"]).returncode == 0
    (tmp_path / "c.yaml").write_text(CONFIG)
    assert corral("deploy", str(tmp_path / "c.yaml"), "--port", port).returncode == 0
    for pid in [head["pid"], *head["workers"]]:  # the head and its own worker die; the joined worker lives
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda pid=pid: not alive(pid), 10, "the process to die")
    out = corral("start", "--port", port, "--settings", '{"recovery_timeout_s": 2}')  # the dead worker is given up sooner
    assert out.returncode == 0 and "head restarted" in out.stdout, out.stdout + out.stderr
    assert (Path(head["log"]).parent / "keys" / "server.key").read_bytes() == keys, "the survivors' keys are kept"
    assert read_head(int(port))["address"] == head["address"]  # type: ignore[index]
    status = wait_for(lambda: (s := json.loads(corral("status", "--json", "--port", port).stdout))["applications"]["echo"]["status"] == "RUNNING" and s, 60, "the app to be RUNNING on the joined worker")
    assert [n["node_id"] for n in status["nodes"]] != ["worker-0"] and len(status["nodes"]) == 1
    assert status["controller"]["epoch"] == 1


def _without_memory(app: dict) -> dict:
    """An app's status less what changes by the second (each replica's resident
    memory, age, load and counters), its replicas in id order."""
    for deployment in app["deployments"].values():
        for replica in deployment["replicas"]:
            for changing in ("rss_bytes", "age_s", "ongoing", "requests", "errors"):
                replica.pop(changing)
        deployment["replicas"].sort(key=lambda r: r["replica_id"])
    return app
