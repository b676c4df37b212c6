"""Where a cluster started by ``corral start`` keeps its address and processes."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

DEFAULT_PORT = 6390


def cluster_dir(port: int) -> Path:
    """The directory of the cluster on ``port`` (mode 0700, created on demand)."""
    base = Path(tempfile.gettempdir()) / f"corral-{os.getuid()}"
    base.mkdir(mode=0o700, exist_ok=True)
    path = base / f"cluster-{port}"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def read_head(port: int) -> dict[str, Any] | None:
    """The head record of the cluster on ``port``, if one was started here."""
    path = cluster_dir(port) / "head.json"
    try:
        return json.loads(path.read_text())  # type: ignore[no-any-return]
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)


def alive(pid: int) -> bool:
    """Whether a process with this pid runs (and is not a zombie)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def process_record(pid: int) -> dict[str, Any]:
    """What identifies a process beyond its pid (pids wrap): its start time and command line.

    Raises:
        ProcessLookupError: no process has this pid.
    """
    try:
        proc = psutil.Process(pid)
        return {"pid": pid, "started": proc.create_time(), "cmdline": proc.cmdline()}
    except psutil.NoSuchProcess:
        raise ProcessLookupError(f"no process {pid}") from None


def is_recorded_process(record: dict[str, Any]) -> bool:
    """Whether the process a record names still runs: same pid, start time and
    command line, not a zombie. A record without them (an old one) is checked
    by its command line being a corral process."""
    try:
        proc = psutil.Process(int(record["pid"]))
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        cmdline = proc.cmdline()
        started = record.get("started")
        if started is None:
            return any(part in ("actors.serve.worker", "scripts._head") for part in cmdline)
        return abs(proc.create_time() - float(started)) < 0.01 and cmdline == record.get("cmdline", cmdline)
    except (psutil.NoSuchProcess, psutil.AccessDenied, KeyError, TypeError, ValueError):
        return False


def joined_workers(port: int) -> list[dict[str, Any]]:
    """Workers started here with ``corral start --join`` for this cluster that
    still run; records of the others are removed."""
    out = []
    for path in sorted(cluster_dir(port).glob("joined-*.json")):
        try:
            record = json.loads(path.read_text()) | {"file": str(path)}
        except (OSError, json.JSONDecodeError):
            path.unlink(missing_ok=True)
            continue
        if is_recorded_process(record):
            out.append(record)
        else:
            path.unlink(missing_ok=True)
    return out


def head_workers(head: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The records of the workers a head record names (old records hold bare pids)."""
    if head is None:
        return []
    records = head.get("worker_records")
    if records is None:
        return [{"pid": pid} for pid in head.get("workers", [])]
    return list(records)


def child_env(*first: str) -> dict[str, str]:
    """The environment for a corral child process: our import path (``first`` ahead of it) as its PYTHONPATH."""
    paths = [*first, *(p for p in sys.path if p and os.path.isdir(p))]
    return dict(os.environ, PYTHONPATH=os.pathsep.join(dict.fromkeys(paths)))


def wait_for_file(path: Path, proc: subprocess.Popen[bytes], timeout: float) -> str:
    """The contents of a ready file, once the process has written it.

    Raises:
        RuntimeError: the process exited first, or ``timeout`` passed.
    """
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not path.exists():
        if proc.poll() is not None:
            raise RuntimeError(f"it exited with code {proc.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"it was not ready within {timeout}s")
        pause.wait(0.02)
    return path.read_text()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on now (for tests, benches and demos)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def dashboard_key(folder: Path) -> Path:
    """The file holding the cluster key the dashboard asks of changing requests
    (made once per cluster folder, mode 0600; readable by this user only)."""
    path = folder / "dashboard.key"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(32))
    return path
