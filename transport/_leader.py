"""A thread or an event loop that waits for answers reads them off the ROUTER itself.

Without this, an answer costs its asker two wake-ups in a row: ZeroMQ wakes
the I/O thread, which decodes the answer and wakes the asker. A bare ZeroMQ
client pays one. So the I/O thread does not wait on the ROUTER itself but on
an epoll set holding the ROUTER's descriptor (:class:`RouterWatch`). A thread
about to wait for an answer (``Future.get``) empties that set, which takes
effect at once and wakes nobody, and then waits on the ROUTER's descriptor
itself, reading and dispatching what comes exactly as the I/O thread would
(under the socket lock), until its answer is in or its time is up. Then it
puts the descriptor back; if something arrived after its last read (whose
signal it took), it wakes the I/O thread. Everything else (the hand-off
queue, heartbeats, monitors) stays with the I/O thread meanwhile.

An asyncio loop whose coroutine awaits an answer (``await future``) leads the
same way, from its own selector (:meth:`RouterWatch.lead_loop`): the answers
its coroutines await are then read on the loop and wake them with no
``call_soon_threadsafe``. It keeps the lead while it awaits answers and
gives it back once it has awaited none for ``_LOOP_IDLE_S``. A loop that
stops reading (blocked by user code, stopped, closed) while messages wait
loses the lead at the I/O thread's next round after ``_LOOP_STALE_S``
(:meth:`RouterWatch.check_loop`), so heartbeats are never held up for
longer; should the loop itself wait for an answer in ``Future.get``, it
reads the ROUTER there, as a leading thread does. What the leading loop sends
waits in its cork until the end of the turn and leaves in one batch per peer
(``_cork.py``).

One thread or loop leads at a time; others wait as before. Should the I/O
thread read the leader's answer first (it was already awake), the answer's
future wakes the leader through :meth:`RouterWatch.wake_leader`. Work a
handler would defer to the I/O thread is not deferred on a leader
(``Transport.defer`` answers False there): it runs elsewhere, as on a loop.

Without epoll (not Linux) there is no watch: the I/O thread polls the ROUTER
and nobody leads.
"""

from __future__ import annotations

import asyncio
import os
import select
import threading
import time
from typing import Any, Callable

import zmq

from ._cork import Cork
from ._frames import has_message
from ._waker import Waker, poll_spinning

_SLICE_S = 0.05  # a leader looks at its deadline, and at the transport closing, this often at least
_LOOP_IDLE_S = 0.05  # a loop that awaited no answer for this long gives the ROUTER back
_LOOP_STALE_S = 0.05  # a loop that has not read for this long while messages wait loses the ROUTER


class LoopLead:
    """An event loop that reads the ROUTER for its coroutines (see :meth:`RouterWatch.lead_loop`).

    Attributes:
        loop: the loop.
        ident: the loop's thread.
        awaited: answers its coroutines await now.
        used: when it last stopped awaiting one (``time.monotonic()``).
        read: when it last read the ROUTER.
        over: the lead ended (given back, taken away, or the watch closed).
        fd: what the loop watches (-1 once it stopped).
        cork: what the loop sent this turn, not sent yet.
    """

    __slots__ = ("loop", "ident", "awaited", "used", "read", "over", "fd", "cork")

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int) -> None:
        self.loop = loop
        self.fd = fd  # the loop's own duplicate of the ROUTER's descriptor: closed by it, never reused under it
        self.ident = threading.get_ident()
        self.awaited = 1
        self.used = self.read = time.monotonic()
        self.over = False
        self.cork = Cork()

    def done(self) -> None:
        """A coroutine stopped awaiting its answer (it came, or the coroutine was cancelled)."""
        self.awaited -= 1
        self.used = time.monotonic()


class RouterWatch:
    """The ROUTER's readiness as the I/O thread waits on it, and who leads.

    Args:
        router: the bound ROUTER.
        sockets: the transport's socket lock, held around every use of the ROUTER.
        drain: reads and dispatches what waits on the ROUTER (the transport's own reader);
            returns True when it stopped at its bound with more to read.
        unread: tells the I/O thread that messages wait on the ROUTER that its descriptor
            will not signal (a leader took the signal without reading them); under the lock.
        may_lead: whether the calling thread may lead now (it is not the one driving the sockets).
        uncork: sends what a leading loop's cork holds; under the lock (None: nothing is corked).
        spin_s: how long a leading thread polls without sleeping, per wait, before it sleeps
            (``TransportConfig.answer_spin_s``).
    """

    def __init__(self, router: zmq.Socket, sockets: Any, drain: Callable[[], Any], unread: Callable[[], None],
                 may_lead: Callable[[], bool], uncork: Callable[[Cork], None] | None = None, spin_s: float = 0.0) -> None:
        self._router = router
        self._spin_s = spin_s
        self._sockets = sockets
        self._drain = drain
        self._unread = unread
        self._may_lead = may_lead
        self._uncork = uncork
        self._fd: int = router.getsockopt(zmq.FD)
        self._epoll = select.epoll()
        self._epoll.register(self._fd, select.EPOLLIN)
        self._leader_waker = Waker()
        self._waiter = select.poll()  # what a leader waits on; one leader at a time, so one poll object
        self._waiter.register(self._fd, select.POLLIN)
        self._waiter.register(self._leader_waker.fileno(), select.POLLIN)
        self._leading = threading.Lock()  # one leader at a time
        self.leads = 0  # times a waiting thread or loop led (statistics)
        self.leader = 0  # the thread that reads now as a leader (0: none): what it dispatches must not block
        self.loop_lead: LoopLead | None = None  # the loop that leads, if one does
        self.closed = False

    def fileno(self) -> int:
        """What the I/O thread polls instead of the ROUTER: readable when the ROUTER is, unless a thread leads."""
        return self._epoll.fileno()

    def wake_leader(self) -> None:
        """An answer a leader waits for was completed by another thread: the leader stops waiting."""
        self._leader_waker.wake()

    def lead(self, done: Callable[[], bool], deadline: float) -> bool:
        """About to wait for an answer: read and dispatch what reaches the ROUTER on this
        thread until ``done()`` or ``deadline`` (``time.monotonic()``), a wake-up less.

        Returns:
            False when this thread may not lead or another leads (wait as usual), else True.
        """
        lead = self.loop_lead
        if lead is not None and lead.ident == threading.get_ident() and not lead.over:
            if self._uncork is not None and lead.cork:  # the leading loop blocks: its requests go out first,
                with self._sockets:
                    self._uncork(lead.cork)
            self._read_until(done, deadline, lead)  # and nobody else would read
            return True
        if self.closed or not self._may_lead() or not self._leading.acquire(blocking=False):
            return False
        with self._sockets:
            if self.closed:
                self._leading.release()
                return False
            self._epoll.modify(self._fd, 0)  # the I/O thread stops waking for the ROUTER; nobody is woken
        self.leads += 1
        self.leader = threading.get_ident()
        left_unread = True
        try:
            left_unread = self._read_until(done, deadline, None)
        finally:
            self.leader = 0
            self._give_back(left_unread)
        return True

    def _read_until(self, done: Callable[[], bool], deadline: float, lead: LoopLead | None) -> bool:
        """Returns False when this thread's last read found the ROUTER empty: whatever
        comes next signals the I/O thread's descriptor (True: it may not)."""
        fd, nudged, waiter = self._fd, self._leader_waker.fileno(), self._waiter
        more: bool | None = False  # the ROUTER was read empty by the last reader: its descriptor signals what comes next
        read = False
        spin_until = time.monotonic() + self._spin_s
        while True:
            now = time.monotonic()
            if done() or now >= deadline or self.closed or (lead is not None and lead.over):
                return more is not False or not read  # another may have taken the signal of what it did not read
            if more:
                ready = []
            else:
                polled = poll_spinning(lambda: waiter.poll(0), min(spin_until, deadline)) if now < spin_until else []
                ready = [f for f, _ in polled or waiter.poll(int(min(deadline - now, _SLICE_S) * 1000) + 1)]
            if nudged in ready:
                self._leader_waker.drain()
            if more or fd in ready:
                more, read = self._read(lead), True  # reads until nothing waits, so that the next arrival signals again
                if more is None:  # the ROUTER is gone, or the loop lost the lead
                    return True

    def _give_back(self, left_unread: bool = True) -> None:
        """``left_unread`` False: this leader's last read found the ROUTER empty (see ``_read_until``)."""
        try:
            with self._sockets:
                if not self.closed:
                    self._epoll.modify(self._fd, select.EPOLLIN)
                    if left_unread and has_message(self._router):  # came after the last read, which took its signal
                        self._unread()
        finally:
            self._leading.release()

    # ---- a leading loop ---------------------------------------------------------------------

    def lead_loop(self, loop: asyncio.AbstractEventLoop) -> LoopLead | None:
        """On ``loop``'s thread, a coroutine is about to await an answer: ``loop`` reads the
        ROUTER from its selector while it awaits answers (see the module docstring).

        Returns:
            The lead, whose ``done()`` the coroutine calls when it stops awaiting; None when
            ``loop`` may not lead or something else leads (the answer wakes it as usual).
        """
        lead = self.loop_lead
        if lead is not None and lead.loop is loop and not lead.over:
            lead.awaited += 1
            return lead
        if lead is not None or self.closed or not self._may_lead() or not self._leading.acquire(blocking=False):
            return None
        with self._sockets:
            if self.closed:
                self._leading.release()
                return None
            self._epoll.modify(self._fd, 0)
            lead = self.loop_lead = LoopLead(loop, os.dup(self._fd))
        try:
            loop.add_reader(lead.fd, self._loop_read, lead)
        except (NotImplementedError, RuntimeError, OSError, ValueError):  # a loop that cannot watch descriptors
            with self._sockets:
                self._end(lead)
            self._forget(lead)
            return None
        self.leads += 1
        loop.call_soon(self._loop_read, lead)  # what came before it led may have had its signal taken
        loop.call_later(_LOOP_IDLE_S, self._loop_idle, lead)
        return lead

    def _loop_read(self, lead: LoopLead) -> None:
        if lead.over:
            self._forget(lead)
        elif self._read(lead):
            lead.loop.call_soon(self._loop_read, lead)

    def _read(self, lead: LoopLead | None) -> bool | None:
        """Read and dispatch what waits on the ROUTER, as the leading thread (``lead`` None:
        it is :attr:`leader` already) or as the leading loop. Returns whether more waits,
        or None when the ROUTER is gone or the loop's lead ended."""
        with self._sockets:
            if self.closed or (lead is not None and lead.over):
                return None
            if lead is None:
                return bool(self._drain())
            self.leader = lead.ident
            try:
                return bool(self._drain())
            finally:
                self.leader, lead.read = 0, time.monotonic()

    def _loop_idle(self, lead: LoopLead) -> None:
        if not lead.over and (lead.awaited > 0 or time.monotonic() - lead.used < _LOOP_IDLE_S):
            lead.loop.call_later(_LOOP_IDLE_S, self._loop_idle, lead)
            return
        with self._sockets:
            if self._end(lead) and has_message(self._router):
                self._unread()
        self._forget(lead)

    @staticmethod
    def _forget(lead: LoopLead) -> None:
        """On the lead's loop (or once it is closed): stop watching the ROUTER there."""
        if lead.fd >= 0:
            if not lead.loop.is_closed():
                lead.loop.remove_reader(lead.fd)
            os.close(lead.fd)
            lead.fd = -1

    def _let_go(self, lead: LoopLead) -> None:
        """Under the socket lock, off the lead's loop: end it; the loop stops watching at its next turn."""
        self._end(lead)
        try:
            lead.loop.call_soon_threadsafe(self._forget, lead)
        except RuntimeError:  # the loop is closed: nothing runs there any more
            self._forget(lead)

    def _end(self, lead: LoopLead) -> bool:
        """Under the socket lock: end ``lead`` if it leads; the I/O thread watches the ROUTER again."""
        if self.loop_lead is not lead:
            return False
        lead.over, self.loop_lead = True, None
        if self._uncork is not None:
            self._uncork(lead.cork)  # (a frame corked after this goes out at the end of the loop's turn)
        if not self.closed:
            self._epoll.modify(self._fd, select.EPOLLIN)
        self._leading.release()
        return True

    def check_loop(self, now: float) -> None:
        """Under the socket lock, by the I/O thread each round: a leading loop that stopped
        reading (closed, blocked, stopped) while messages wait, or while what it sent waits
        in its cork, loses the ROUTER, read here, and its cork is sent."""
        lead = self.loop_lead
        if lead is None or lead.ident == threading.get_ident():
            return
        if not lead.loop.is_closed() and now - lead.read < _LOOP_STALE_S and not lead.cork.stale(now, _LOOP_STALE_S):
            return
        if lead.loop.is_closed() or lead.cork.stale(now, _LOOP_STALE_S) or has_message(self._router):
            self._let_go(lead)
            self._unread()

    def close(self) -> None:
        """With the socket lock, before the ROUTER closes: no more leading (a leading thread sees
        it at its next look, within ``_SLICE_S``; a leading loop at its next read)."""
        lead = self.loop_lead
        if lead is not None:
            self._let_go(lead)
        self.closed = True
        self._epoll.close()
        self._leader_waker.close()


def router_watch(router: Any, sockets: Any, drain: Callable[[], Any], unread: Callable[[], None],
                 may_lead: Callable[[], bool], uncork: Callable[[Cork], None] | None = None,
                 spin_s: float = 0.0) -> RouterWatch | None:
    """The watch of ``router`` (see :class:`RouterWatch`), or None where epoll does not exist."""
    return RouterWatch(router, sockets, drain, unread, may_lead, uncork, spin_s) if hasattr(select, "epoll") else None
