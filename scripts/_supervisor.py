"""Keeps the local workers of a ``corral start`` cluster running.

The head process runs one :class:`WorkerSupervisor`. It reads the cluster's
head record (written by ``corral start`` once the workers it started have
registered), and starts a worker again, with the same node id and command
line, when its process is gone. Restarts back off exponentially while a
worker keeps dying young (:class:`Backoff`, pure), and are counted in the
record (``corral status``) and in Prometheus. ``corral stop`` stops the head
first, so a worker it stops is never started again.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._cluster_files import is_recorded_process, process_record, write_json

log = logging.getLogger("corral.supervisor")


@dataclass
class Backoff:
    """When a dead worker may be started again.

    Attributes:
        base_s: the pause before the first restart of a worker that ran well.
        cap_s: the longest pause.
        healthy_after_s: a worker that ran this long counts as healthy again,
            so its next death restarts it after ``base_s``.
    """

    base_s: float = 0.5
    cap_s: float = 30.0
    healthy_after_s: float = 60.0

    def next_start(self, started_at: float, died_at: float, failures: int) -> tuple[float, int]:
        """The earliest restart time and the new count of young deaths in a row.

        Args:
            started_at: when the dead process was started (monotonic seconds).
            died_at: when its death was seen.
            failures: young deaths in a row before this one.
        """
        failures = 0 if died_at - started_at >= self.healthy_after_s else failures + 1
        return died_at + min(self.cap_s, self.base_s * 2 ** max(0, failures - 1)), failures


@dataclass
class _Watched:
    started_at: float
    failures: int = 0
    due: float | None = None


@dataclass
class WorkerSupervisor:
    """Restarts the head's local workers when they die (a thread of the head process).

    Args:
        head_file: the cluster's ``head.json``.
        backoff: the restart policy.
        poll_s: how often the workers are looked at.
    """

    head_file: Path
    backoff: Backoff = field(default_factory=Backoff)
    poll_s: float = 0.25
    restarts: dict[str, int] = field(default_factory=dict)
    _watched: dict[str, _Watched] = field(default_factory=dict)
    _children: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="worker-supervisor", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.check(time.monotonic())
            except Exception:
                log.exception("supervising the workers failed; trying again")

    def check(self, now: float) -> None:
        """Look at every local worker once; start again those that are gone and due."""
        try:
            head = json.loads(self.head_file.read_text())
        except (OSError, json.JSONDecodeError):
            return  # not written yet (corral start is still starting the workers)
        if head.get("pid") != os.getpid():
            return  # the record of another head
        for child in self._children.values():
            child.poll()  # reap the workers this head started, so a dead one is not a zombie
        records: list[dict[str, Any]] = head.get("worker_records", [])
        changed = False
        for record in records:
            if "args" not in record or "log" not in record:
                continue  # a record from an older corral: it says not how to start the worker again
            node_id = str(record.get("node_id", ""))
            watched = self._watched.setdefault(node_id, _Watched(now))
            if is_recorded_process(record):
                continue
            if watched.due is None:
                watched.due, watched.failures = self.backoff.next_start(watched.started_at, now, watched.failures)
                log.warning("worker %s (pid %s) is gone; starting it again in %.1fs",
                            node_id, record.get("pid"), watched.due - now)
            if now < watched.due or self._stop.is_set():
                continue
            record.update(self._spawn(node_id, record))
            record["restarts"] = int(record.get("restarts", 0)) + 1
            self.restarts[node_id] = record["restarts"]
            watched.started_at, watched.due = now, None
            changed = True
        if changed:
            head["workers"] = [r["pid"] for r in records]
            head["worker_records"] = records
            write_json(self.head_file, head)

    def _spawn(self, node_id: str, record: dict[str, Any]) -> dict[str, Any]:
        with open(record["log"], "a") as out:
            proc = subprocess.Popen(
                [sys.executable, *record["args"]], stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                start_new_session=True,
            )
        self._children[node_id] = proc
        log.warning("worker %s started again (pid %d)", record.get("node_id"), proc.pid)
        try:
            return process_record(proc.pid)
        except ProcessLookupError:
            return {"pid": proc.pid, "started": 0.0}
