"""A head and workers as separate local processes, for tests and the chaos benchmark.

Unlike ``serve.start(workers=...)``, the workers here outlive the head, so a
head can be SIGKILLed and started again (it recovers from its checkpoint
store), and a worker can be killed on its own.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from actors.serve.worker._args import worker_args

from ._cluster_files import child_env, free_port, wait_for_file
from ._head import head_args

ROOT = Path(__file__).resolve().parent.parent


def _wait_ready(path: Path, proc: subprocess.Popen[bytes], what: str, timeout: float) -> str:
    try:
        return wait_for_file(path, proc, timeout)
    except RuntimeError as exc:
        raise RuntimeError(f"{what}: {exc}") from None


def _stop(proc: subprocess.Popen[bytes], sig: int, timeout: float) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


@dataclass
class LocalCluster:
    """A head process and worker processes on this machine.

    Args:
        folder: where ready files, logs and the SQLite checkpoint go.
        port: the head's TCP port.
        settings: ServeSettings fields for the head and the workers.
        transport: TransportConfig fields for every process (heartbeats...).
        store: the checkpoint store (default: an SQLite file in ``folder``).
        http: HttpOptions fields (default: the proxy on any free port, so
            clusters side by side do not contend for 8000).
    """

    folder: Path
    port: int = 0  # 0: a free one
    settings: dict[str, Any] = field(default_factory=dict)
    transport: dict[str, Any] = field(default_factory=dict)
    store: str = ""
    http: dict[str, Any] = field(default_factory=lambda: {"port": 0})
    head: subprocess.Popen[bytes] | None = None
    workers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    worker_addresses: dict[str, str] = field(default_factory=dict)
    _starts: int = 0

    def __post_init__(self) -> None:
        self.port = self.port or free_port()

    @property
    def address(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def start_head(self, recovery: str = "auto", timeout: float = 60.0) -> dict[str, Any]:
        """Start the head (again); returns what it wrote to its ready file.

        Raises:
            RuntimeError: it exited (its log says why) or was not ready in time.
        """
        self._starts += 1
        ready = self.folder / f"head-{self._starts}.ready"
        log = self.folder / "head.log"
        store = self.store or f"sqlite:///{self.folder / 'checkpoint.sqlite'}"
        with open(log, "ab") as out:
            self.head = subprocess.Popen(
                [sys.executable, *head_args(self.port, str(ready), store=store, recovery=recovery,
                                            settings=json.dumps(self.settings), transport=json.dumps(self.transport),
                                            http=json.dumps(self.http))],
                stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=child_env(str(ROOT)), cwd=ROOT,
            )
        try:
            return json.loads(_wait_ready(ready, self.head, "the head", timeout))  # type: ignore[no-any-return]
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}; the head's log ends with:\n{log.read_text()[-1500:]}") from None

    def start_worker(self, node_id: str, resources: dict[str, float] | None = None, timeout: float = 60.0) -> str:
        """Start a detached worker that registers with the head; returns its address."""
        ready = self.folder / f"{node_id}-{self._starts}.ready"
        ready.unlink(missing_ok=True)
        config = {"transport": self.transport, "serve": self.settings, "http": self.http}
        with open(self.folder / f"{node_id}.log", "ab") as out:
            proc = subprocess.Popen(
                [sys.executable, *worker_args(f"{self.address}#controller", node_id, json.dumps(resources or {"CPU": 4}),
                                              json.dumps(config), str(ready), detached=True)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=child_env(str(ROOT)), cwd=ROOT,
            )
        self.workers[node_id] = proc
        self.worker_addresses[node_id] = _wait_ready(ready, proc, f"worker {node_id}", timeout)
        return self.worker_addresses[node_id]

    def kill_head(self) -> None:
        """SIGKILL the head (its workers live on)."""
        if self.head is not None:
            _stop(self.head, signal.SIGKILL, 10)

    def kill_worker(self, node_id: str) -> None:
        """SIGKILL one worker with its replicas."""
        _stop(self.workers[node_id], signal.SIGKILL, 10)

    def close(self) -> None:
        """Stop every process (workers first, then the head), killing what does not stop in 20 s."""
        for proc in self.workers.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.workers.values():
            _stop(proc, signal.SIGTERM, 20)
        if self.head is not None:
            _stop(self.head, signal.SIGTERM, 20)
