"""A replica's event loop: where its ``async def`` methods run, and how their requests reach it.

Requests come off the process's ROUTER on one of two threads:

- **the loop's own thread**, while the loop leads the ROUTER: from the first
  request it starts until it has run none for a moment, the loop reads the
  ROUTER from its selector (``transport.RouterWatch.lead_loop``), so a request
  starts with no thread hop and its answer leaves at the end of the loop's turn,
  batched with the turn's others (``transport/_cork.py``). Should user code
  block the loop, the I/O thread takes the ROUTER back within about 50 ms, so
  heartbeats and other replicas are never held up for longer;
- **the I/O thread** otherwise (another loop leads, or the loop is idle): the
  requests it read in one round reach the loop with one ``call_soon_threadsafe``.

After a turn that found something, the loop looks again without sleeping for
``TransportConfig.io_spin_s`` before it sleeps (``transport.SpinningSelector``),
as the I/O thread does: the next request, if it comes by then, costs no wake-up.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import threading
from typing import Any, Callable, Coroutine

from transport import SpinningSelector

from ..._future import Reader
from .._context import ReplicaContext, set_replica_context

log = logging.getLogger("corral.serve")

_running_loop = asyncio.events._get_running_loop  # None off any loop, without raising

#: A request's key for cancellation: (its sender's address, its ask id).
Key = tuple[str, int]


class AsyncLimit:
    """At most ``limit`` requests inside at once on one event loop (used on its thread only):
    ``asyncio.Semaphore``'s job, with no coroutine, generator or wake-up per request while
    there is room; the others wait in order and each leaving one lets the next in.

    Attributes:
        inside: requests inside now.
    """

    __slots__ = ("limit", "inside", "_waiting")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.inside = 0
        self._waiting: collections.deque[asyncio.Future[None]] = collections.deque()

    def enter_nowait(self) -> bool:
        """Enter if there is room and nobody waits; False otherwise (then ``await enter()``)."""
        if self.inside < self.limit and not self._waiting:
            self.inside += 1
            return True
        return False

    async def enter(self) -> None:
        """Wait for room, behind those waiting already. Raises CancelledError as any await does."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.leave()  # it was let in as it was cancelled: the next one goes instead
            elif waiter in self._waiting:
                self._waiting.remove(waiter)
            raise

    def leave(self) -> None:
        """One inside left: the oldest waiting enters in its place (or there is room)."""
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.inside -= 1


class ReplicaLoop:
    """One replica's event loop on its own thread, started on first use.

    Args:
        context: the replica's identity (its loop thread runs with it).
        reader: the process's ROUTER watch (``ActorSystem.reader``): the loop leads it
            while it runs requests; None: it never leads.
        start_timeout_s: how long :meth:`get` waits for a new loop's thread to run.
        spin_s: how long the loop looks for more without sleeping after a turn that found
            something (``TransportConfig.io_spin_s``, as the I/O thread does): a request that
            comes within it costs no wake-up. 0: it sleeps at once.
    """

    def __init__(self, context: ReplicaContext, reader: Reader | None, start_timeout_s: float = 5.0, spin_s: float = 0.0) -> None:
        self.context = context
        self.reader = reader
        self.spin_s = spin_s
        self.start_timeout_s = start_timeout_s
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None
        self.tasks: dict[Key, asyncio.Task[Any]] = {}  # running requests, by key; the loop's thread only
        self._lock = threading.Lock()  # the I/O thread and the actor's thread may both start it
        self._starts: collections.deque[Callable[[], None]] = collections.deque()
        self._scheduled = False  # a call_soon_threadsafe for what waits in _starts is on its way

    def get(self) -> asyncio.AbstractEventLoop:
        """The loop, started on its thread if it was not.

        Raises:
            RuntimeError: its thread did not run within ``start_timeout_s``.
        """
        if self.loop is not None:
            return self.loop
        with self._lock:
            if self.loop is None:
                self.loop = self._start()
        return self.loop

    def submit(self, begin: Callable[[], None]) -> None:
        """Run ``begin()`` on the loop: now, if called there; else soon, with the others
        submitted before the loop's next turn (one wake-up of its thread for them all).

        Raises:
            RuntimeError: the loop is closed (the replica is stopping).
        """
        loop = self.get()
        if _running_loop() is loop:
            begin()
            return
        if loop.is_closed():
            raise RuntimeError("the replica's event loop is closed")
        self._starts.append(begin)
        if not self._scheduled:
            self._scheduled = True
            try:
                loop.call_soon_threadsafe(self._run_starts)
            except RuntimeError:
                self._scheduled = False
                self._starts.remove(begin)  # it never ran: the caller answers for it
                raise

    def _run_starts(self) -> None:
        self._scheduled = False  # before taking: what is appended after this gets a call of its own
        starts = self._starts
        while starts:
            begin = starts.popleft()
            try:
                begin()
            except Exception:  # one request's failure to start must not strand the others
                log.exception("a request of replica %s did not start", self.context.replica_id)

    def run(self, work: Callable[[Callable[[], None]], Coroutine[Any, Any, None]], key: Key) -> None:
        """On the loop: run the coroutine ``work(finished)`` as a task, cancellable by ``key``
        (its ask id 0: not), leading the ROUTER while it runs. The coroutine calls
        ``finished()`` once as it ends (a ``finally``): no wrapper task or done callback per request."""
        assert self.loop is not None
        lead = self.reader.lead_loop(self.loop) if self.reader is not None else None
        task = self.loop.create_task(work(functools.partial(self._finished, key, lead)))
        if key[1]:
            self.tasks[key] = task

    def _finished(self, key: Key, lead: Any) -> None:
        if key[1]:
            self.tasks.pop(key, None)
        if lead is not None:
            lead.done()

    def cancel(self, key: Key) -> None:
        """From any thread: cancel the request ``key`` if it still runs (its caller gave up)."""
        loop = self.loop
        if loop is None:
            return
        if _running_loop() is loop:
            self._cancel(key)
            return
        try:
            loop.call_soon_threadsafe(self._cancel, key)
        except RuntimeError:
            pass  # the loop is closed: nothing runs there any more

    def _cancel(self, key: Key) -> None:
        task = self.tasks.get(key)
        if task is not None and self.loop is not None:
            # after the task's first step (scheduled before this): a task cancelled before it
            # would never enter its coroutine, which then could neither answer nor call finished()
            self.loop.call_soon(task.cancel)

    def stop(self) -> None:
        """Stop the loop (its thread closes it); what still runs there is dropped."""
        loop = self.loop
        if loop is not None:
            try:
                loop.call_soon_threadsafe(loop.stop)
            except RuntimeError:
                pass  # already closed

    def _start(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.SelectorEventLoop(SpinningSelector(self.spin_s))
        started = threading.Event()

        def run() -> None:
            set_replica_context(self.context)
            asyncio.set_event_loop(loop)
            loop.call_soon(started.set)
            loop.run_forever()
            loop.close()

        self.thread = threading.Thread(target=run, name=f"replica-loop-{self.context.replica_id}", daemon=True)
        self.thread.start()
        if not started.wait(self.start_timeout_s):
            raise RuntimeError(f"the event loop of replica {self.context.replica_id} did not start "
                               f"within {self.start_timeout_s}s")
        return loop
