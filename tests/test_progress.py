"""Progress on a terminal: the table it draws (pure), and `corral deploy` under a
pseudo-terminal drawing it while off a terminal it stays quiet."""

from __future__ import annotations

import io
import os
import pty
import select
import subprocess
import time
from pathlib import Path
from typing import Callable

from rich.console import Console

from actors.serve._progress import table
from actors.serve._status import ApplicationStatusOverview, DeploymentStatusOverview, ServeStatus
from tests.test_cli import CORRAL, ENV, ROOT, cluster  # noqa: F401 (the fixture)


def rendered(status: ServeStatus, names: set[str]) -> str:
    out = io.StringIO()
    Console(file=out, width=200).print(table(status, names, started=100.0, now=112.0))
    return out.getvalue()


def test_the_progress_table_shows_running_over_target_the_elapsed_time_and_the_message() -> None:
    dep = DeploymentStatusOverview("UPDATING", "deploying: 1 of 3 replicas running", {"RUNNING": 1, "STARTING": 2}, 3)
    status = ServeStatus(applications={"a": ApplicationStatusOverview("DEPLOYING", "", "D", {"D": dep})})
    text = rendered(status, {"a", "b"})
    assert "a/D" in text and "1 / 3" in text and "12s" in text and "deploying: 1 of 3 replicas running" in text
    assert "not known to the controller yet" in text, "an app the controller has not heard of yet"


def test_corral_deploy_draws_progress_on_a_terminal(cluster: Callable[..., str], tmp_path: Path) -> None:  # noqa: F811
    port = cluster("--workers", "1")
    (tmp_path / "app.yaml").write_text(
        "applications:\n  - name: echo\n    import_path: tests.serve_apps:Echo\n    route_prefix: null\n")
    leader, follower = pty.openpty()
    try:
        proc = subprocess.Popen([*CORRAL, "deploy", str(tmp_path / "app.yaml"), "--port", port], stdout=follower,
                                stderr=subprocess.PIPE, env=dict(ENV, COLUMNS="160"), cwd=ROOT)
        os.close(follower)
        follower = -1
        chunks = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 1.0)
            if ready:
                try:
                    data = os.read(leader, 65536)
                except OSError:  # the terminal closed: the command ended
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
        assert proc.wait(timeout=30) == 0
    finally:
        os.close(leader)
        if follower != -1:
            os.close(follower)
    text = b"".join(chunks).decode(errors="replace")
    assert "RUNNING / TARGET" in text and "deployed: echo" in text, text
