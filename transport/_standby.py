"""The standby of a transport's I/O thread: work run inline never holds the sockets hostage.

After a round of receiving, the I/O thread may run short work itself
(``Transport.defer``: a replica's sync method), saving the hand-off to another
thread. While it does, nobody polls the sockets. Between pieces of work the
thread looks at the clock: once the round has run for ``inline_budget_s`` it
goes back to its sockets, and the pieces not started run first after the
next poll (many short pieces never cost a thread). The standby watches one
piece: when it has run for ``inline_budget_s``, or is about to block (a
``Future.get`` calls :func:`about_to_block`), a new I/O thread takes the
sockets over at once, and the work not started yet goes where its deferrer
said. The old thread finishes what it runs, then ends.

Its watcher thread wakes every budget while inline work came lately (so
starting a run costs no wake-up), and sleeps once none came for a second.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Any, Callable

log = logging.getLogger("corral.transport")

#: Run elsewhere: takes the work a superseded thread did not start.
Elsewhere = Callable[[Callable[[], None]], None]

_IDLE_S = 1.0


class _Running(threading.local):
    """Per thread: ``run``, the round of inline work it runs now (None: none). A class
    default, so that threads that never ran any read it without a failed lookup."""

    run: _Run | None = None


_running = _Running()


def more_inline_work() -> bool:
    """Whether this thread runs a round of inline work with more to do after what runs
    now (its sends queue, to go out together after the round; the last piece's need not wait)."""
    run = _running.run
    return run is not None and (run.more or bool(run.queue))


def more_to_come(more: bool) -> None:
    """Said by a piece of inline work that serves several messages (an actor's queued
    asks): whether more follow the one it serves now, so that its sends queue as
    those of more pieces would. Off the I/O thread's inline work it does nothing."""
    run = _running.run
    if run is not None:
        run.more = more


def about_to_block() -> None:
    """Called before a wait: a thread running inline work hands the sockets on first."""
    run = _running.run
    if run is not None:
        run.standby.take_over(run)


class _Run:
    """One round of inline work on one thread."""

    __slots__ = ("standby", "since", "queue", "superseded", "more")

    def __init__(self, standby: Standby, items: list[tuple[Callable[[], None], Elsewhere]]) -> None:
        self.standby = standby
        self.since = time.monotonic()  # when the piece running now began
        self.queue = collections.deque(items)
        self.superseded = False
        self.more = False  # the piece running now has more to serve (more_to_come)


class Standby:
    """Watches one transport's inline work (see the module docstring).

    Args:
        budget_s: how long inline work may hold the I/O thread.
        successor: starts a new I/O thread (called under no lock of ours).
    """

    def __init__(self, budget_s: float, successor: Callable[[], None]) -> None:
        self.budget_s = budget_s
        self._successor = successor
        self._lock = threading.Lock()  # entered directly: a Condition's own enter and exit are Python calls
        self._cond = threading.Condition(self._lock)
        self._current: _Run | None = None  # the round running on the thread that drives the sockets
        self._closed = False
        self._thread: threading.Thread | None = None
        self._last = 0.0  # when inline work last began
        self._asleep = False  # the watcher waits untimed (idle for a while): a run wakes it
        self.takeovers = 0

    def run(self, items: list[tuple[Callable[[], None], Elsewhere]]) -> list[tuple[Callable[[], None], Elsewhere]] | None:
        """Run ``items`` on this (the I/O) thread, in order, for at most about ``budget_s``.

        Returns:
            The items not started when the round's budget ran out (the thread
            polls its sockets, then runs them first), or None: another thread
            took the sockets over meanwhile (the items not started went elsewhere).
        """
        run = _Run(self, items)
        with self._lock:
            self._current, self._last = run, run.since
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name="corral-io-standby", daemon=True)
                self._thread.start()
            elif self._asleep:
                self._cond.notify()
        _running.run = run
        ends = run.since + self.budget_s
        rest: list[tuple[Callable[[], None], Elsewhere]] = []
        try:
            while True:
                with self._lock:
                    if not run.queue:
                        break
                    now = time.monotonic()
                    if now > ends and not run.superseded:
                        rest, run.queue = list(run.queue), collections.deque()
                        break
                    work, _ = run.queue.popleft()
                    run.since, run.more = now, False
                run_quietly(work)
        finally:
            _running.run = None
        with self._lock:
            if self._current is run:
                self._current = None
            return None if run.superseded else rest

    def take_over(self, run: _Run | None = None) -> None:
        """Let a new I/O thread take the sockets now from ``run`` (the current
        round when None); the work it has not started goes elsewhere."""
        with self._lock:
            run = run or self._current
            if run is None or run is not self._current or self._closed:
                return
            run.superseded, self._current = True, None
            rest, run.queue = list(run.queue), collections.deque()
            self.takeovers += 1
        self._successor()
        for work, elsewhere in rest:
            run_quietly(elsewhere, work)

    def close(self, timeout_s: float = 1.0) -> None:
        """Stop watching (the transport closed); the watcher thread is gone when this returns."""
        with self._lock:
            self._closed = True
            self._cond.notify()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)

    def _watch(self) -> None:
        while True:
            with self._lock:
                if self._closed:
                    return
                run = self._current
                if run is None:
                    if time.monotonic() - self._last < _IDLE_S:
                        self._cond.wait(self.budget_s)
                    else:
                        self._asleep = True
                        self._cond.wait()
                        self._asleep = False
                    continue
                overdue = run.since + self.budget_s - time.monotonic()
                if overdue > 0:
                    self._cond.wait(overdue)
                    continue
            self.take_over(run)


def run_quietly(fn: Callable[..., Any], *args: Any) -> None:
    """``fn(*args)``; an exception is logged, not raised (a callback or inline work must not end the I/O thread)."""
    try:
        fn(*args)
    except Exception:
        log.exception("%r failed on the I/O thread (which goes on)", fn)
