#!/usr/bin/env python3
"""Create the project's virtualenv when needed, then run a job in it.

    python3 scripts/dev.py demo          # the main job: the serving demo
    python3 scripts/dev.py test          # the whole test suite
    python3 scripts/dev.py bench         # every benchmark in --quick mode
    python3 scripts/dev.py actors-demo   # the actor runtime on its own
    python3 scripts/dev.py vendor        # fetch the dashboard's chart library from npm (a build step)

Needs only Python 3.10+. The virtualenv lives in .venv at the repository's
top; it is (re)installed whenever setup.cfg changes.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
STAMP = VENV / ".corral-installed"


def _python() -> Path:
    return VENV / "bin" / "python"


def ensure_venv() -> Path:
    """Create .venv and install the project with its test extra if setup.cfg changed."""
    if sys.version_info < (3, 10):
        sys.exit(f"corral needs Python 3.10 or newer, this is {sys.version.split()[0]}")
    wanted = hashlib.sha256((ROOT / "setup.cfg").read_bytes() + (ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == wanted and _python().exists():
        return _python()
    if not _python().exists():
        print(f"creating virtualenv in {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    print("installing corral and its test dependencies into .venv", flush=True)
    pip = [str(_python()), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "--upgrade", "pip", "setuptools", "wheel"], check=True)
    subprocess.run([*pip, "-e", f"{ROOT}[test]"], check=True)
    STAMP.write_text(wanted)
    return _python()


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("demo", "test", "bench", "actors-demo", "vendor"):
        print(__doc__)
        return 2
    job, rest = argv[0], argv[1:]
    if job == "vendor":
        sys.path.insert(0, str(ROOT))
        from scripts._vendor import vendor

        for name, digest in vendor().items():
            print(f"{name}  {digest}")
        return 0
    python = str(ensure_venv())
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    if job == "demo":
        cmd = [python, str(ROOT / "scripts" / "serving_demo.py"), *rest]
    elif job == "actors-demo":
        cmd = [python, str(ROOT / "scripts" / "actors_demo.py"), *rest]
    elif job == "test":
        cmd = [python, "-m", "pytest", *rest]
    else:
        benches = sorted((ROOT / "bench").glob("bench_*.py"))
        for bench in benches:
            code = subprocess.run([python, str(bench), "--quick", *rest], cwd=ROOT, env=env).returncode
            if code != 0:
                return code
        return 0
    return subprocess.run(cmd, cwd=ROOT, env=env).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
