"""The process's transport: whoever drives it (its own I/O thread, or an
asyncio loop it was handed to; see ``_drivers.py``) owns every ZeroMQ socket.

Sockets: one ROUTER bound at the process's address receives everything; one
DEALER per peer, created on first send, sends everything to that peer (so
per-peer order is FIFO). Each DEALER's routing id is this process's address,
so a receiver knows who sent a frame before decoding it. Other threads hand
frames over through a lock-protected list and an eventfd that wakes the loop;
what waited there for one peer goes out as one batch (``_batches.py``). When
nothing waits and the I/O thread polls, a sending thread takes the socket lock
(held by the driver whenever it touches a socket) and writes to an open DEALER
itself, a thread hop less. Work deferred to the I/O thread runs after its
round (``_standby.py``), and what that work sends waits for the round's end.
What arrives is read and dispatched by ``_receiving.py``; a thread waiting
for an answer may do that reading itself (``_leader.py``), and what a loop
leading that way sends in one turn goes out in one batch per peer
(``_cork.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from typing import Any, Callable

import zmq

from protocol import Envelope, encode_envelope

from ._config import TransportConfig
from ._errors import PEER_LEFT, PeerUnavailable, TransportError
from ._frames import check_size
from ._bound import Bound
from ._guard import Guard
from ._handoff import Handoff
from ._dealers import Dealers
from ._drivers import GO_ON, HAND_OVER, STOP, LoopDriver, ThreadDriver
from ._standby import Elsewhere, Standby, more_inline_work, run_quietly
from ._leader import RouterWatch, router_watch
from ._batches import SendGroups
from ._cork import Cork
from ._links import NOTHING_LISTENS, LinkWatch
from ._sockets import ipc_refused
from ._statistics import TransportStatistics
from ._liveness import Incarnations, LivenessTracker, LogLimiter, Quarantine
from ._receiving import Receiver

log = logging.getLogger("corral.transport")

OnEnvelope = Callable[[Envelope], None]
OnPeerDown = Callable[[str, str], None]
OnError = Callable[[Exception], None]
OnTick = Callable[[float], None]

_SEND, _WATCH, _STOP, _ADOPT = 0, 1, 2, 3
_running_loop = asyncio.events._get_running_loop  # None off any loop, without raising


class Transport:
    """Binds this process's endpoint and moves frames to and from peers.

    Callbacks run on the I/O thread and must be quick and never block.

    Args:
        config: the transport settings.
        on_envelope: called with every valid envelope that is not a heartbeat.
        on_peer_down: called with ``(peer, reason)`` when a peer dies, leaves,
            or cannot be reached.
        on_tick: called about every ``config.tick_s`` with ``time.time()``.
    """

    def __init__(self, config: TransportConfig, on_envelope: OnEnvelope, on_peer_down: OnPeerDown, on_tick: OnTick | None = None) -> None:
        self._config = config
        self.io_spin_s = config.io_spin_s  # the I/O thread's look without sleeping after a busy round
        self._on_peer_down = on_peer_down
        self._on_tick = on_tick
        self._handoff = Handoff(config.handoff_capacity)
        self._quarantine = Quarantine(config.quarantine_s)
        self._incarnations = Incarnations()
        self.links = LinkWatch(lambda: threading.get_ident() == self.io_ident)
        self._dealers = Dealers(self.links)
        self._liveness = LivenessTracker(config.heartbeat_interval_s, config.heartbeat_liveness)
        self._log_limiter = LogLimiter(config.bad_frame_log_interval_s)
        self._guard = Guard(self._log_limiter, config.curve is not None)
        self._sent = self._send_failures = self._peers_lost = self._batches = 0
        self._receiver = Receiver(config.max_frame_bytes, self._liveness, self._quarantine, self._guard, on_envelope,
                                  self._send_now, lambda peer: self._declare_down(peer, PEER_LEFT), self._note_incarnation)
        self._ready = threading.Event()
        self._done = threading.Event()  # the sockets are closed
        self._start_error: BaseException | None = None
        self.io_ident: int | None = None  # the thread that owns the sockets now (set by the driver)
        self._standby = Standby(config.inline_budget_s, self._supersede)
        self._driver: ThreadDriver | LoopDriver = ThreadDriver(self, True, self._standby)
        self._next_tick = 0.0
        self._ep: Bound | None = None  # the bound endpoint (None before start and after a failed one)
        self.reader: RouterWatch | None = None  # the ROUTER as the I/O thread waits on it; a waiting thread may read it (_leader.py)
        self._sockets = threading.RLock()  # whoever touches a socket holds it
        self.address = ""
        self.accepts_pickle = False  # whether pickled payloads are accepted (CURVE or ipc; set once bound)

    # ---- any thread -------------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> str:
        """Start the I/O thread and bind the endpoint; returns the address peers use to reach this process.

        Raises:
            TransportError: if the endpoint cannot be bound (e.g. port in use).
        """
        self._driver.start()  # type: ignore[union-attr]
        if not self._ready.wait(timeout):
            raise TransportError(f"I/O thread did not start within {timeout}s")
        if self._start_error is not None:
            self._done.wait(timeout)
            raise TransportError(f"cannot bind: {self._start_error}") from self._start_error
        return self.address

    def send(self, peer: str, envelope: Envelope, on_error: OnError | None = None) -> None:
        """Encode ``envelope`` (its ``sender`` should be :attr:`address`) in the calling
        thread and queue it for ``peer``, as :meth:`send_frame` does.

        Raises:
            TypeError: the body cannot be encoded.
            TransportClosed, SendQueueFull, PeerUnavailable: see :meth:`send_frame`.
        """
        self.send_frame(peer, encode_envelope(envelope), on_error)

    def send_frame(self, peer: str, frame: Any, on_error: OnError | None = None, queue: bool = False) -> None:
        """Queue an already encoded frame (or list of frames: an envelope and its
        out-of-band buffers, sent without copying them) for ``peer``. ``on_error`` is called on the I/O thread if
        the frame cannot reach ZeroMQ later (peer unreachable or not draining); else the failure is counted and logged.
        ``queue``: the caller has others in flight, so the frame goes to the I/O thread, which sends what
        queued for a peer as one batch, even when the caller could write it itself at once.

        Raises:
            FrameTooLarge: the frames add up to more than ``max_frame_bytes``.
            TransportClosed: the transport is closed.
            SendQueueFull: the I/O thread has ``handoff_capacity`` frames waiting.
            PeerUnavailable: the peer was found dead moments ago (quarantine).
        """
        if type(frame) is list or len(frame) > self._config.max_frame_bytes:
            check_size(frame, self._config.max_frame_bytes)
        if self._quarantine.until:
            why = self._quarantine.reason(peer, time.monotonic())
            if why is not None:
                raise PeerUnavailable(peer, f"found dead recently ({why}); retry after its quarantine")
        reader = self.reader
        if reader is not None and (lead := reader.loop_lead) is not None and lead.loop is _running_loop() and not lead.over:
            if type(frame) is bytes:  # the loop that leads: out at the end of its turn, with the turn's others
                if lead.cork.add(peer, frame, on_error):
                    lead.loop.call_soon(self._uncork_turn, lead.cork)
                return
            with self._sockets:  # buffers go alone, after what the loop sent before them
                self._uncork(lead.cork)
        if self._config.direct_send and not queue and not more_inline_work() and self._sockets.acquire(blocking=False):  # the I/O thread polls
            try:
                if self._handoff.idle() and peer in self._dealers:
                    self._send_now(peer, frame, on_error)
                    return
            finally:
                self._sockets.release()
        self._enqueue((_SEND, peer, frame, on_error))

    def watch(self, peer: str) -> None:
        """Heartbeat ``peer`` from now on; :attr:`on_peer_down` fires if it goes silent."""
        self._enqueue((_WATCH, peer, b"", None))

    def defer(self, work: Callable[[], None], elsewhere: Elsewhere) -> bool:
        """From a callback on the I/O thread: run ``work`` on it after this round, off the socket
        lock. If earlier work holds the thread past ``inline_budget_s`` or blocks, a standby
        thread takes the sockets and ``elsewhere(work)`` runs instead. False: not taken (not
        on the I/O thread, or a loop drives the sockets)."""
        driver = self._driver
        if threading.get_ident() != self.io_ident or not isinstance(driver, ThreadDriver):
            return False
        driver.deferred.append((work, elsewhere))
        return True

    def is_io_thread(self) -> bool:
        """Whether the caller owns the sockets now (the I/O thread, the loop, or a thread reading the ROUTER
        while it waits): it must never block."""
        ident = threading.get_ident()
        return ident == self.io_ident or (self.reader is not None and ident == self.reader.leader)

    def adopt(self, loop: asyncio.AbstractEventLoop) -> LoopDriver:
        """Hand the sockets to ``loop`` (returns its driver): from its next turn the loop's thread
        receives and sends (callbacks run there) and the I/O thread ends, so code on that loop is
        answered with no thread hop. The loop must run until the driver's ``detach()`` is called on
        it or the transport closes; nothing may wait for the loop holding a lock its callbacks take.

        Raises:
            RuntimeError: the transport is already handed to a loop, or not started.
            TransportClosed: the transport is closed.
        """
        with self._sockets:  # two callers at once: the second is refused
            if not isinstance(self._driver, ThreadDriver) or not self._ready.is_set():
                raise RuntimeError(f"transport {self.address} cannot be handed to a loop: already handed, or not started")
            driver = self._driver = LoopDriver(self, loop)  # the I/O thread gives it the sockets at its next turn
            self._enqueue((_ADOPT, "", b"", None))
        return driver

    def close(self, timeout: float = 5.0) -> None:
        """Say goodbye to peers, flush for up to ``linger_s``, close every socket, remove the ipc file. Idempotent."""
        if not self._handoff.close((_STOP, "", b"", None)) or (ep := self._ep) is None:
            return
        driver = self._driver
        if self.is_io_thread() and isinstance(driver, LoopDriver):  # closed from the loop that owns the sockets: now
            self.serve([(ep.waker.fileno(), zmq.POLLIN)])  # sends what waits
            driver.stop()
            return
        ep.waker.wake()
        if not self.is_io_thread() and not self._done.wait(timeout):  # (the I/O thread closes after this callback)
            log.error("I/O of %s did not stop within %.1fs", self.address, timeout)

    def statistics(self) -> TransportStatistics:
        """A snapshot of the counters."""
        return TransportStatistics(self.address, self._sent, self._receiver.received, self._send_failures, dict(self._guard.bad_frames),
                                   len(self._dealers), len(self._liveness.watched), self._peers_lost, len(self._handoff),
                                   self._config.handoff_capacity, self._guard.auth_failures, self._liveness.stalled_s, self._standby.takeovers,
                                   self.reader.leads if self.reader is not None else 0, self._batches)

    def _uncork_turn(self, cork: Cork) -> None:
        """On the loop, at the end of the turn that corked a frame."""
        cork.scheduled = False
        if cork:
            with self._sockets:
                self._uncork(cork)

    def _uncork(self, cork: Cork) -> None:
        """Under the socket lock: send what ``cork`` holds, one batch per peer (see ``Cork.sort_out``)."""
        groups, later = cork.sort_out(self._handoff.idle(), self._dealers.__contains__, self._config.max_frame_bytes)
        for peer, frame, on_error in later:
            try:
                self._enqueue((_SEND, peer, frame, on_error))
            except TransportError as exc:  # closed, or its queue full: the sender hears of it as of any failed send
                self._fail(peer, on_error, exc)
        for to, group, on_error, parts in groups.take():
            self._send_now(to, group, on_error, parts)

    def _enqueue(self, item: tuple[int, str, bytes, OnError | None]) -> None:
        if self._handoff.put(item, self.address):
            self._ep.waker.wake()  # type: ignore[union-attr]

    # ---- the driver (the thread that owns the sockets) ----------------------------------

    def bind_here(self) -> bool:
        """Bind the endpoint (the first driver, on its thread); False when it
        cannot (the error goes to :meth:`start`'s caller)."""
        try:
            self._ep = Bound(self._config)
        except BaseException as exc:  # reported to start()'s caller
            self._start_error = exc
            self._handoff.close()
            self._ready.set()
            self._done.set()
            return False
        if self._config.curve is not None:
            self._guard.allowed_client = self._config.curve.client_key_bytes()
        self.address, self.accepts_pickle = self._ep.address, self._ep.accepts_pickle
        may_lead = lambda: not self.is_io_thread()  # noqa: E731
        self._receiver.bind(self._ep.router, self._ep.frames["pong"], self.address, self.accepts_pickle)
        self.reader = router_watch(self._ep.router, self._sockets, self._receiver.drain, self._unread, may_lead, self._uncork,
                                   self._config.answer_spin_s)
        now = time.monotonic()
        self._next_tick = now + self._config.tick_s
        self._liveness.ping_due(now)  # the heartbeat clock starts now, with no peer yet: no ping can race the first sends
        self._ready.set()
        return True

    def attach_links(self, poller: Any) -> None:
        """The link monitors go to ``poller`` (a driver's), or to none; under the socket
        lock, since a thread reading or sending may open or close a DEALER meanwhile."""
        with self._sockets:
            self.links.attach(poller)

    def _unread(self) -> None:
        """Under the socket lock: the ROUTER holds messages that its descriptor will not signal."""
        self._receiver.backlog = True
        self._ep.waker.wake()  # type: ignore[union-attr]

    def sockets_to_watch(self, watch: bool = False) -> list[Any]:
        """What a driver waits on: the ROUTER (with ``watch``, its watch if any), the waker, the monitors."""
        ep = self._ep
        assert ep is not None
        router = self.reader.fileno() if watch and self.reader is not None else ep.router
        return [s for s in (router, ep.waker.fileno(), ep.monitor, ep.zap) if s is not None]

    def next_wait(self, now: float) -> float:
        """Seconds until the next heartbeat or tick is due (0: the ROUTER has more to read)."""
        return 0.0 if self._receiver.backlog else min(self._next_tick, self._liveness.next_deadline()) - now

    def serve(self, events: list[Any]) -> int:
        """Act on the sockets the driver found readable, then on the heartbeats and the tick when due.

        Returns:
            ``GO_ON``; ``STOP`` when the transport must close; ``HAND_OVER``
            when the sockets go to a loop (:meth:`adopt`).
        """
        with self._sockets:
            outcome = GO_ON
            ep = self._ep
            assert ep is not None
            self.links.settle()  # monitors other threads opened or gave up since the last round
            router, waker_fd, receiver = ep.router, ep.waker.fileno(), self._receiver
            watch_fd = self.reader.fileno() if self.reader is not None else None
            for sock, _ in events:
                if sock is router or sock == watch_fd:
                    receiver.drain()
                elif sock == waker_fd:
                    outcome = self._drain_handoff()
                    if outcome == STOP:
                        return STOP
                elif sock is ep.zap:
                    self._guard.answer_zap(ep.zap)
                elif sock is ep.monitor:
                    self._guard.handshake_failures(ep.monitor)
                else:
                    self._on_link_events(sock)  # a sending socket's monitor (or one just closed: ignored)
            if receiver.backlog:
                receiver.drain()
            now = time.monotonic()
            if self.reader is not None and self.reader.loop_lead is not None:
                self.reader.check_loop(now)  # a loop that leads and stopped reading gives the ROUTER back
            if self._liveness.ping_due(now):
                self._heartbeat(now)
            if now >= self._next_tick:
                self._next_tick = now + self._config.tick_s
                if self._on_tick is not None:
                    run_quietly(self._on_tick, time.time())
            return outcome

    def refuse_sends(self) -> None:
        """The driver crashed: sending threads get ``TransportClosed`` from now on."""
        self._handoff.close()

    def hand_over(self) -> None:
        """The I/O thread ends: the adopting loop takes the sockets (see ``LoopDriver.handed``)."""
        self._driver.handed()  # type: ignore[union-attr]

    def resume_thread(self) -> None:
        """A new I/O thread takes the sockets (from a loop that lets them go)."""
        self._driver = ThreadDriver(self, False, self._standby)
        self._driver.start()

    def _supersede(self) -> None:
        with self._sockets:  # never while a loop is being handed the sockets
            if not self._done.is_set() and isinstance(self._driver, ThreadDriver):
                self.resume_thread()

    def finish(self) -> None:
        """Close every socket (the driver, when told to stop or when it crashed)."""
        try:
            with self._sockets:
                if self.reader is not None:
                    self.reader.close()
                if self._ep is not None:
                    self._dealers.close_all(self._ep.frames["bye"], int(self._config.linger_s * 1000))
                    self.links.settle()  # every monitor is closed before the context ends
                    self._ep.close()
        finally:
            self._done.set()
            self._standby.close()

    def _drain_handoff(self) -> int:
        self._ep.waker.drain()  # type: ignore[union-attr]
        items = self._handoff.take()
        outcome = GO_ON
        groups = SendGroups(self._config.max_frame_bytes)  # single frames for one peer go out as one batch
        for op, peer, frame, extra in items:
            if op == _SEND and type(frame) is bytes:
                groups.add(peer, frame, extra)
                continue
            for to, group, on_error, parts in groups.take():  # what was queued before, first
                self._send_now(to, group, on_error, parts)
            if op == _SEND:
                self._send_now(peer, frame, extra)
            elif op == _WATCH:
                if self._connect(peer) is not None:
                    self._liveness.watch(peer, time.monotonic())
            elif op == _ADOPT:
                outcome = HAND_OVER
            else:
                return STOP
        for to, group, on_error, parts in groups.take():
            self._send_now(to, group, on_error, parts)
        return outcome

    def _connect(self, peer: str, on_error: OnError | None = None, parts: int = 1) -> zmq.Socket | None:
        sock = self._dealers.get(peer)
        if sock is not None:
            return sock
        refused = Dealers.cannot_dial(peer)
        if refused is not None:
            if refused[1]:
                self._declare_down(peer, f"no process listens at {peer}")
            self._fail(peer, on_error, PeerUnavailable(peer, refused[0]), parts)
            return None
        assert self._ep is not None
        sock = self._dealers.open(self._ep.ctx, self._config, self.address, peer)
        self._quarantine.release(peer)
        self._liveness.watch(peer, time.monotonic())
        with contextlib.suppress(zmq.ZMQError):  # now, not at the next heartbeat (which tries again): its pong says who is there
            sock.send(self._ep.frames["ping"], zmq.NOBLOCK)
        return sock

    def _send_now(self, peer: str, frame: Any, on_error: OnError | None, parts: int = 1) -> None:
        sock = self._dealers.get(peer) or self._connect(peer, on_error, parts)
        if sock is None:
            return
        failed = self._dealers.send(sock, peer, frame, parts, self._config.send_hwm)
        if failed is None:
            self._sent += parts
            self._batches += parts > 1
        else:
            self._fail(peer, on_error, failed, parts)

    def _fail(self, peer: str, on_error: OnError | None, exc: Exception, parts: int = 1) -> None:
        self._send_failures += parts
        if on_error is not None:
            run_quietly(on_error, exc)
        elif self._log_limiter.allow(f"send:{peer}", time.monotonic()):
            log.warning("dropped a frame for %s: %s", peer, exc)

    def _on_link_events(self, monitor: zmq.Socket) -> None:
        gone = self.links.gone(monitor)
        if gone is not None and gone[0] in self._dealers:
            self._receiver.drain()  # a peer that left said goodbye first: read it before calling it dead
            if gone[0] in self._dealers:  # a short quarantine: a process started anew there is reachable soon
                self._declare_down(*gone, quarantine_s=min(self._config.quarantine_s, 2 * self._config.heartbeat_interval_s))

    def _heartbeat(self, now: float) -> None:
        for peer, silence in self._liveness.expired(now):  # (and a killed process whose link event went unseen says so)
            self._declare_down(peer, f"no heartbeat for {silence:.2f}s" + (f" and {NOTHING_LISTENS}" if ipc_refused(peer) else ""))
        for peer in self._liveness.watched:
            self._send_now(peer, self._ep.frames["ping"], None)  # type: ignore[union-attr]

    def _note_incarnation(self, peer: str, incarnation: str) -> None:
        """A new process at a peer's address (restarted within the liveness window): the old one died."""
        if incarnation and self._incarnations.restarted(peer, incarnation, self._dealers.__contains__):
            self._peers_lost += 1
            run_quietly(self._on_peer_down, peer, "it restarted (a new process at its address)")

    def _declare_down(self, peer: str, reason: str, quarantine_s: float | None = None) -> None:
        self._incarnations.forget(peer)
        self._dealers.close(peer)
        self._liveness.forget(peer)
        self._quarantine.add(peer, reason, time.monotonic(), quarantine_s)
        self._peers_lost += 1
        run_quietly(self._on_peer_down, peer, reason)
