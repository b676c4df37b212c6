"""Who runs a transport's I/O duties: its own thread polling the sockets
(:class:`ThreadDriver`, the default), or an asyncio event loop that the
transport was handed to (:class:`LoopDriver`), so that code on that loop sends
and receives with no second thread contending for the GIL.

A driver owns the sockets while it runs; the transport (``_transport.py``)
holds what is done with them. Ownership passes from one driver to the other
through the transport's hand-off list, so no socket is ever used by two
threads at once.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any, Callable, Protocol

import zmq

from ._frames import has_message
from ._links import LinkWatch
from ._standby import Elsewhere, Standby, run_quietly
from ._waker import poll_spinning

log = logging.getLogger("corral.transport")

#: What :meth:`Transport.serve` answers: go on, stop (the transport is
#: closed), or hand the sockets to a loop; SUPERSEDED: a standby thread took
#: them while this one ran inline work.
GO_ON, STOP, HAND_OVER, SUPERSEDED = 0, 1, 2, 3

_READY_ROUNDS = 4  # a socket still readable after this many drains waits for the loop's next turn


class DrivenTransport(Protocol):
    """What a driver calls on the transport it drives (``_transport.Transport``)."""

    address: str
    io_ident: int | None
    links: LinkWatch

    def bind_here(self) -> bool: ...

    def attach_links(self, poller: Any) -> None: ...

    def sockets_to_watch(self, watch: bool = False) -> list[Any]: ...

    def next_wait(self, now: float) -> float: ...

    def serve(self, events: list[Any]) -> int: ...

    def refuse_sends(self) -> None: ...

    def hand_over(self) -> None: ...

    def resume_thread(self) -> None: ...

    def finish(self) -> None: ...


class ThreadDriver:
    """The transport's own I/O thread: polls every socket and serves what it finds.

    Args:
        transport: the transport it drives.
        first: whether this thread binds the endpoint (the transport's first driver).
        standby: watches the work it runs inline (``Transport.defer``); None:
            that work runs with nobody to take the sockets over meanwhile.
    """

    def __init__(self, transport: DrivenTransport, first: bool, standby: Standby | None = None) -> None:
        self.transport = transport
        self._first = first
        self.standby = standby
        self.deferred: list[tuple[Callable[[], None], Elsewhere]] = []  # inline work of this round (see Transport.defer)
        self.thread = threading.Thread(target=self._run, name="corral-io", daemon=True)

    def start(self) -> None:
        """Start the thread."""
        self.thread.start()

    def _run(self) -> None:
        t = self.transport
        t.io_ident = threading.get_ident()
        if self._first and not t.bind_here():
            return
        outcome = STOP
        try:
            outcome = self._loop()
        except Exception:
            log.exception("I/O thread of %s crashed", t.address)
            t.refuse_sends()
        finally:
            if outcome == HAND_OVER:
                t.hand_over()
            elif outcome != SUPERSEDED:
                t.finish()

    def _loop(self) -> int:
        t = self.transport
        poller = zmq.Poller()
        for sock in t.sockets_to_watch(watch=True):  # the ROUTER's watch: a waiting thread may read it (_leader.py)
            poller.register(sock, zmq.POLLIN)
        t.attach_links(poller)
        try:
            spin_s, busy_until = t.io_spin_s, 0.0
            while True:
                now = time.monotonic()
                wait = 0.0 if self.deferred else t.next_wait(now)  # work left from the last round: just look
                if wait > 0 and now < busy_until:  # just busy: look without sleeping, up to the next heartbeat or tick
                    events = poll_spinning(lambda: poller.poll(0), min(busy_until, now + wait))
                else:
                    events = poller.poll(max(0, int(wait * 1000) + 1) if wait > 0 else 0)
                if events:
                    busy_until = time.monotonic() + spin_s
                outcome = t.serve(events)
                if self.deferred and not self._run_deferred(outcome):
                    return SUPERSEDED
                if outcome != GO_ON:
                    return outcome
        finally:
            if t.links.poller is poller:  # not a successor's
                t.attach_links(None)

    def _run_deferred(self, outcome: int) -> bool:
        """Run this round's inline work off the socket lock; False if a
        standby thread took the sockets meanwhile."""
        items, self.deferred = self.deferred, []
        t = self.transport
        if self.standby is None or outcome != GO_ON:  # closing or handing over: the work runs, nobody takes over
            for work, _ in items:
                run_quietly(work)
            return True
        t.io_ident = None  # user code may wait for answers: it is not the I/O thread now
        rest = self.standby.run(items)
        if rest is None:
            return False
        self.deferred[:0] = rest  # before what the next round defers: order holds
        t.io_ident = threading.get_ident()
        return True


class LoopDriver:
    """Serves a transport from an asyncio event loop's callbacks: the loop's
    thread owns the sockets while it is attached.

    Args:
        transport: the transport it drives.
        loop: the event loop (running, or about to run, on its own thread).
    """

    def __init__(self, transport: DrivenTransport, loop: asyncio.AbstractEventLoop) -> None:
        self.transport = transport
        self.loop = loop
        self._fds: dict[Any, int] = {}
        self._timer: asyncio.TimerHandle | None = None
        self.attached = False

    # ---- the poller face LinkWatch registers its monitors with ------------------------

    def register(self, sock: Any, flags: int = zmq.POLLIN) -> None:
        fd = sock if isinstance(sock, int) else sock.getsockopt(zmq.FD)
        self._fds[sock] = fd
        self.loop.add_reader(fd, self._ready, sock)
        if self.attached and not isinstance(sock, int):  # ZeroMQ signals edges: what it holds already woke nobody
            self.loop.call_soon(self._ready, sock)

    def unregister(self, sock: Any) -> None:
        fd = self._fds.pop(sock, None)
        if fd is not None:
            self.loop.remove_reader(fd)

    def handed(self) -> None:
        """The I/O thread let the sockets go: the loop takes them at its next turn
        (or, if that loop is already closed, a new I/O thread does)."""
        try:
            self.loop.call_soon_threadsafe(self.attach)
        except RuntimeError:
            log.error("the loop %s was handed to is closed; a new I/O thread takes its sockets", self.transport.address)
            self.transport.resume_thread()

    # ---- the loop's thread -----------------------------------------------------------

    def attach(self) -> None:
        """Take the sockets over (called on the loop once the thread handed them)."""
        t = self.transport
        t.io_ident = threading.get_ident()
        for sock in t.sockets_to_watch(watch=True):  # the ROUTER's watch: a waiting thread may read it (_leader.py)
            self.register(sock)
        t.attach_links(self)
        self.attached = True
        self._on_timer()
        for sock in list(self._fds):  # what arrived during the hand-over woke nobody
            self._ready(sock)

    def detach(self) -> None:
        """Give the sockets back to a new I/O thread (on the loop, before it stops).
        Does nothing when the transport was closed meanwhile."""
        if not self.attached:
            return
        self._let_go()
        self.transport.resume_thread()

    def _let_go(self) -> None:
        self.attached = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.transport.attach_links(None)
        for sock in list(self._fds):
            self.unregister(sock)

    def _ready(self, sock: Any) -> None:
        if not self.attached:
            return
        t = self.transport
        for _ in range(_READY_ROUNDS):
            if t.serve([(sock, zmq.POLLIN)]) == STOP:
                self.stop()
                return
            if isinstance(sock, int) or sock not in self._fds or not has_message(sock):
                return
        self.loop.call_soon(self._ready, sock)

    def _on_timer(self) -> None:
        if not self.attached:
            return
        t = self.transport
        now = time.monotonic()
        if t.serve([]) == STOP:
            self.stop()
            return
        self._timer = self.loop.call_later(max(0.001, t.next_wait(now)), self._on_timer)
        router = t.sockets_to_watch()[0]  # ZeroMQ signals edges: one missed costs at most a tick
        if has_message(router):
            self._ready(router)

    def stop(self) -> None:
        """Close the transport's sockets (on the loop: it was told to stop)."""
        if self.attached:
            self._let_go()
            self.transport.finish()
