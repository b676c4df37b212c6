"""A thread that waits for an answer reads it off the ROUTER itself.

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

One thread leads at a time; others wait as before. Should the I/O thread
read the leader's answer first (it was already awake), the answer's future
wakes the leader through :meth:`RouterWatch.wake_leader`. Work a handler
would defer to the I/O thread is not deferred on a leader
(``Transport.defer`` answers False there): it runs elsewhere, as on a loop.

Without epoll (not Linux) there is no watch: the I/O thread polls the ROUTER
and nobody leads.
"""

from __future__ import annotations

import select
import threading
import time
from typing import Any, Callable

import zmq

from ._waker import Waker

_SLICE_S = 0.05  # a leader looks at its deadline, and at the transport closing, this often at least


class RouterWatch:
    """The ROUTER's readiness as the I/O thread waits on it, and who leads.

    Args:
        router: the bound ROUTER.
        sockets: the transport's socket lock, held around every use of the ROUTER.
        drain: reads and dispatches what waits on the ROUTER (the transport's own reader).
        unread: tells the I/O thread that messages wait on the ROUTER that its descriptor
            will not signal (a leader took the signal without reading them); under the lock.
        may_lead: whether the calling thread may lead now (it is not the one driving the sockets).
    """

    def __init__(self, router: zmq.Socket, sockets: Any, drain: Callable[[], Any], unread: Callable[[], None],
                 may_lead: Callable[[], bool]) -> None:
        self._router = router
        self._sockets = sockets
        self._drain = drain
        self._unread = unread
        self._may_lead = may_lead
        self._fd: int = router.getsockopt(zmq.FD)
        self._epoll = select.epoll()
        self._epoll.register(self._fd, select.EPOLLIN)
        self._leader_waker = Waker()
        self._leading = threading.Lock()  # one leader at a time
        self.leads = 0  # times a waiting thread led (statistics)
        self.leader = 0  # the thread that leads now (0: none): what it dispatches must not block
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
        if self.closed or not self._may_lead() or not self._leading.acquire(blocking=False):
            return False
        sockets = self._sockets
        with sockets:
            if self.closed:
                self._leading.release()
                return False
            self._epoll.modify(self._fd, 0)  # the I/O thread stops waking for the ROUTER; nobody is woken
        fd, nudged = self._fd, self._leader_waker.fileno()
        waiter = select.poll()
        waiter.register(fd, select.POLLIN)
        waiter.register(nudged, select.POLLIN)
        self.leads += 1
        self.leader = threading.get_ident()
        try:
            while True:  # the ROUTER was read empty by the last reader: its descriptor signals what comes next
                now = time.monotonic()
                if done() or now >= deadline or self.closed:
                    return True
                ready = [f for f, _ in waiter.poll(int(min(deadline - now, _SLICE_S) * 1000) + 1)]
                if nudged in ready:
                    self._leader_waker.drain()
                if fd in ready:
                    with sockets:
                        if self.closed:  # the ROUTER is gone
                            return True
                        self._drain()  # reads until nothing waits, so that the next arrival signals again
        finally:
            self._give_back()

    def _give_back(self) -> None:
        self.leader = 0
        try:
            with self._sockets:
                if not self.closed:
                    self._epoll.modify(self._fd, select.EPOLLIN)
                    if self._router.getsockopt(zmq.EVENTS) & zmq.POLLIN:  # came after the last read; this took its signal
                        self._unread()
        finally:
            self._leading.release()

    def close(self) -> None:
        """With the socket lock, before the ROUTER closes: no more leading (a leader sees it
        at its next look, within ``_SLICE_S``)."""
        self.closed = True
        self._epoll.close()
        self._leader_waker.close()


def router_watch(router: Any, sockets: Any, drain: Callable[[], Any], unread: Callable[[], None],
                 may_lead: Callable[[], bool]) -> RouterWatch | None:
    """The watch of ``router`` (see :class:`RouterWatch`), or None where epoll does not exist."""
    return RouterWatch(router, sockets, drain, unread, may_lead) if hasattr(select, "epoll") else None
