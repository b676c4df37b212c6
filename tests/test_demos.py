"""The demos run as a person runs them, and say what they claim to check."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / script)],
        capture_output=True, text=True, timeout=120, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )


def test_the_serving_demo_serves_scales_survives_a_killed_worker_and_stops_clean() -> None:
    out = run("serving_demo.py")
    assert out.returncode == 0, out.stdout + out.stderr
    for step in ("1. started a local cluster", "3. a request: {'text': 'hello corral', 'score': 6.0}",
                 "4. streamed: ['ONE', 'TWO', 'THREE']", "7. scaled Model to 4: {'RUNNING': 4}",
                 "8. SIGKILLed worker", "9. stopped the cluster: checked that no worker process is left behind"):
        assert step in out.stdout, step
    assert out.stdout.count("/rank") == 4


def test_the_actor_demo_runs_and_checks_its_own_clean_shutdown() -> None:
    out = run("actors_demo.py")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "death watch fired" in out.stdout and "8. shut down" in out.stdout
