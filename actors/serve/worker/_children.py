"""Replica processes of one worker: started from a zygote, watched, stopped, killed.

The zygote is the standard library's forkserver: a fresh single-threaded
interpreter (started with exec, never forked from this process, which owns
ZeroMQ sockets and threads) that has already imported corral, msgpack, pyzmq
and numpy; each replica process is a fork of it. One watcher thread waits on
every child's exit sentinel and pipe at once, so an exit is seen the moment
it happens, and kills children that overstay a stop or pass their memory limit.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import multiprocessing.forkserver
import os
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import psutil

from ._replica_process import ReplicaPlan, run_replica_process

log = logging.getLogger("corral.serve")

ZYGOTE_PRELOAD = ["actors.serve.worker._replica_process", "actors.serve", "numpy", "pydantic"]
_WATCH_S = 0.1
_MEMORY_CHECK_S = 0.1
_KILL_GRACE_S = 2.0


@dataclass(frozen=True)
class ChildReady:
    """A replica process constructed its replica (or failed to: ``error``)."""

    replica_id: str
    address: str = ""
    pid: int = 0
    error: str | None = None


@dataclass(frozen=True)
class ChildExited:
    """A replica process exited; ``asked`` says whether it was told to stop."""

    replica_id: str
    reason: str
    asked: bool


@dataclass
class _Child:
    replica_id: str
    process: Any
    conn: Any
    memory_limit: int
    started: float
    ready: bool = False
    stop_deadline: float | None = None
    killed_for: str = ""
    rss: int = 0
    ps: Any = None


def zygote_context() -> Any:
    """The forkserver context, preloading corral and its dependencies; start it now."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(ZYGOTE_PRELOAD)
    multiprocessing.forkserver.ensure_running()
    return ctx


class ReplicaProcesses:
    """Starts, watches and stops the replica processes of this worker.

    Args:
        report: called from the watcher thread with :class:`ChildReady` and
            :class:`ChildExited` events (must not block).
    """

    def __init__(self, report: Callable[[Any], None]) -> None:
        self.report = report
        self._children: dict[str, _Child] = {}
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._closed = False
        self._ctx: Any = None
        self._ctx_lock = threading.Lock()
        self._thread = threading.Thread(target=self._watch, name="replica-processes", daemon=True)
        self._thread.start()
        self._warm = threading.Thread(target=self._context, name="zygote-start", daemon=True)
        self._warm.start()  # the first replica should not wait for the zygote's imports

    def _context(self) -> Any:
        with self._ctx_lock:
            if self._ctx is None:
                self._ctx = zygote_context()
            return self._ctx

    def start(self, plan: ReplicaPlan, memory_limit: int = 0) -> None:
        """Start a replica process (answers come through ``report``).

        Raises:
            RuntimeError: the process could not be created.
        """
        ctx = self._context()
        parent_end, child_end = ctx.Pipe(duplex=True)
        process = ctx.Process(
            target=run_replica_process, args=(plan, child_end), name=f"replica-{plan.replica_id}", daemon=False
        )
        process.start()
        child_end.close()
        with self._lock:
            self._children[plan.replica_id] = _Child(plan.replica_id, process, parent_end, memory_limit, time.monotonic())
        self._wake()

    def stop(self, replica_id: str, timeout_s: float) -> bool:
        """Ask a replica process to drain for ``timeout_s`` and exit; it is killed
        ``timeout_s`` + 2 s later if it has not. Returns False if it is unknown."""
        with self._lock:
            child = self._children.get(replica_id)
            if child is None:
                return False
            if child.stop_deadline is None:
                child.stop_deadline = time.monotonic() + timeout_s + _KILL_GRACE_S
                try:
                    child.conn.send(("stop", timeout_s))
                except (OSError, ValueError):
                    pass  # it is exiting; the sentinel tells
        self._wake()
        return True

    def info(self) -> dict[str, tuple[int, int]]:
        """``{replica_id: (pid, resident bytes)}`` of every live replica process."""
        with self._lock:
            return {rid: (c.process.pid or 0, c.rss) for rid, c in self._children.items()}

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop every replica process now (no drain), killing those that do not exit within ``timeout_s``.
        Idempotent (a second call must not close descriptor numbers that were reused meanwhile)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            children = list(self._children.values())
        for child in children:
            try:
                child.conn.close()  # end of file: the child stops at once
            except OSError:
                pass
        deadline = time.monotonic() + timeout_s
        for child in children:
            child.process.join(max(0.0, deadline - time.monotonic()))
            if child.process.is_alive():
                _kill(child.process.pid)
                child.process.join(1.0)
        self._wake()
        self._thread.join(timeout_s)
        os.close(self._wake_r)
        os.close(self._wake_w)

    # ---- the watcher thread -------------------------------------------------------------

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except (BlockingIOError, OSError):
            pass  # already awake, or closing

    def _watch(self) -> None:
        next_memory = 0.0
        while True:
            with self._lock:
                if self._closed:
                    return
                children = list(self._children.values())
            waitables: dict[Any, tuple[str, _Child]] = {}
            for child in children:
                waitables[child.process.sentinel] = ("exit", child)
                if not child.conn.closed:
                    waitables[child.conn] = ("pipe", child)
            try:
                ready = multiprocessing.connection.wait([self._wake_r, *waitables], timeout=_WATCH_S)
            except OSError:
                ready = []
            for item in ready:
                if item == self._wake_r:
                    try:
                        os.read(self._wake_r, 4096)
                    except OSError:
                        pass
                    continue
                what, child = waitables[item]
                if what == "pipe":
                    self._read(child)
                else:
                    self._exited(child)
            now = time.monotonic()
            self._kill_overdue(children, now)
            if now >= next_memory:
                next_memory = now + _MEMORY_CHECK_S
                self._check_memory(children)

    def _read(self, child: _Child) -> None:
        try:
            message = child.conn.recv()
        except (EOFError, OSError):
            child.conn.close()
            return
        if not isinstance(message, tuple) or not message:
            return
        if message[0] == "ready":
            child.ready = True
            self._call(ChildReady(child.replica_id, message[1], message[2]))
        elif message[0] == "failed":
            self._call(ChildReady(child.replica_id, error=str(message[1])))

    def _exited(self, child: _Child) -> None:
        child.process.join(0)
        with self._lock:
            self._children.pop(child.replica_id, None)
        try:
            child.conn.close()
        except OSError:
            pass
        reason = child.killed_for or _exit_reason(child.process.pid, child.process.exitcode)
        if not child.ready and child.stop_deadline is None:
            self._call(ChildReady(child.replica_id, error=f"the replica process {reason} before it was ready"))
        self._call(ChildExited(child.replica_id, reason, child.stop_deadline is not None))

    def _kill_overdue(self, children: list[_Child], now: float) -> None:
        for child in children:
            if child.stop_deadline is not None and now > child.stop_deadline and not child.killed_for:
                child.killed_for = f"process {child.process.pid} was killed: it did not stop in time"
                _kill(child.process.pid)

    def _check_memory(self, children: list[_Child]) -> None:
        for child in children:
            try:
                if child.ps is None:
                    child.ps = psutil.Process(child.process.pid)
                child.rss = child.ps.memory_info().rss
            except (psutil.Error, ValueError, TypeError):
                continue
            if child.memory_limit and child.rss > child.memory_limit and not child.killed_for:
                child.killed_for = (
                    f"process {child.process.pid} was killed: it used {child.rss / 2**20:.0f} MiB, "
                    f"over its memory limit of {child.memory_limit / 2**20:.0f} MiB"
                )
                log.warning("replica %s: %s", child.replica_id, child.killed_for)
                _kill(child.process.pid)

    def _call(self, event: Any) -> None:
        try:
            self.report(event)
        except Exception:
            log.exception("reporting %r failed", event)


def _kill(pid: int | None) -> None:
    if pid:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _exit_reason(pid: int | None, code: int | None) -> str:
    if code is None:
        return f"process {pid} ended"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"process {pid} was killed by {name}"
    return f"process {pid} exited with code {code}"
