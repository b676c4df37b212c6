"""`corral start --foreground` (the head, or one worker with --join, in the
process a container runs as PID 1) and `corral health`, the probe."""

from __future__ import annotations

import shutil
import signal
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from scripts._cluster_files import cluster_dir
from tests.helpers import wait_for
from tests.test_cli import CORRAL, ENV, ROOT, corral, free_port


class Started(list):  # type: ignore[type-arg]
    """The processes a test started, and the cluster folders they made."""

    folders: list[Path]


@pytest.fixture
def processes() -> Iterator[Started]:
    started = Started()
    started.folders = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)
    for folder in started.folders:
        shutil.rmtree(folder, ignore_errors=True)


def spawn(processes: list[subprocess.Popen[str]], *args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([*CORRAL, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=ROOT)
    processes.append(proc)
    return proc


def test_a_foreground_head_and_worker_serve_answer_health_probes_and_stop_on_sigterm(
        processes: list[subprocess.Popen[str]], tmp_path: Path) -> None:
    port = free_port()
    processes.folders.append(cluster_dir(port))  # type: ignore[attr-defined]
    address, keys = f"tcp://127.0.0.1:{port}", str(cluster_dir(port) / "keys")
    head = spawn(processes, "start", "--foreground", "--port", str(port), "--host", "127.0.0.1",
                 "--http-port", "0", "--dashboard-port", "0")
    wait_for(lambda: corral("health", "--address", address, "--keys", keys).returncode == 0, 60, "the head to answer")
    worker = spawn(processes, "start", "--foreground", "--join", address, "--keys", keys, "--host", "127.0.0.1",
                   "--node-id", "fg-worker")
    wait_for(lambda: corral("health", "--address", address, "--keys", keys, "--node", "fg-worker").returncode == 0, 60,
             "the worker to register")
    missing = corral("health", "--address", address, "--keys", keys, "--node", "nobody")
    assert missing.returncode == 1 and "does not know worker 'nobody'" in missing.stderr
    (tmp_path / "app.yaml").write_text("applications:\n  - name: echo\n    import_path: tests.serve_apps:Echo\n"
                                       "    route_prefix: null\n    deployments:\n      - name: Echo\n        num_replicas: 1\n")
    assert corral("deploy", str(tmp_path / "app.yaml"), "--address", address, "--keys", keys).returncode == 0
    assert corral("call", "echo", '["fg"]', "--address", address, "--keys", keys).stdout.strip() == '"fg"'
    for proc in (worker, head):
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, proc.communicate()[1][-2000:]


def test_a_foreground_worker_that_cannot_reach_the_head_exits_non_zero_saying_so(processes: list[subprocess.Popen[str]]) -> None:
    port = free_port()
    worker = spawn(processes, "start", "--foreground", "--join", f"tcp://127.0.0.1:{port}", "--host", "127.0.0.1",
                   "--settings", '{"worker_start_timeout_s": 2}')
    assert worker.wait(timeout=60) == 1
    assert f"no corral cluster answers at tcp://127.0.0.1:{port}" in worker.communicate()[1]


def test_foreground_with_local_workers_is_refused() -> None:
    out = corral("start", "--foreground", "--workers", "2", "--port", str(free_port()))
    assert out.returncode == 2 and "the head runs alone" in out.stderr
