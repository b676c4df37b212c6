"""The process's single I/O thread, which owns every ZeroMQ socket.

Sockets: one ROUTER bound at the process's address receives everything; one
DEALER per peer, created on first send, sends everything to that peer (so
per-peer order is FIFO). Each DEALER's routing id is this process's address,
so a receiver knows who sent a frame before decoding it. Other threads hand
frames over through a lock-protected list and an eventfd that wakes the loop.
"""

from __future__ import annotations

import itertools
import logging
import os
import secrets
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

import zmq
from zmq.utils.monitor import parse_monitor_message

from protocol import (
    Bye,
    Envelope,
    ErrorReply,
    MalformedEnvelope,
    MalformedFrame,
    Ping,
    Pong,
    ProtocolError,
    decode_envelope,
    encode_envelope,
    peek_error_route,
)

from ._config import TransportConfig
from ._endpoint import ipc_path, new_ipc_endpoint, private_ipc_dir
from ._errors import PeerUnavailable, SendQueueFull, TransportClosed, TransportError
from ._liveness import LivenessTracker, LogLimiter
from ._waker import Waker

log = logging.getLogger("corral.transport")

OnEnvelope = Callable[[Envelope], None]
OnPeerDown = Callable[[str, str], None]
OnError = Callable[[Exception], None]
OnTick = Callable[[float], None]

#: The reason given for a peer whose address refuses connections: its process is
#: certainly gone (a frozen or cut-off one would not refuse).
NOTHING_LISTENS = "nothing listens at its address"

_SEND, _WATCH, _STOP = 0, 1, 2
# What a sending socket's monitor reports: its connection came up, went away, or a
# (re)connect attempt failed (nobody listens at the address: connection refused).
_LINK_EVENTS = zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED | zmq.EVENT_CLOSED
# What the receiving socket's monitor reports: a stranger's handshake failed
# (not ZMTP, or no CURVE where the cluster requires it).
_REFUSAL_EVENTS = zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
_TRANSPORT_KINDS = frozenset({"ping", "pong", "bye"})
_RECV_BATCH = 512


@dataclass(frozen=True)
class TransportStatistics:
    """A snapshot of a transport's counters.

    Attributes:
        address: the bound address.
        sent: frames handed to ZeroMQ.
        received: frames received (good or bad).
        send_failures: frames that could not be sent (peer dead or full).
        bad_frames: rejected frames by reason (``"malformed"``, ``"too_large"``...).
        peers_connected: peers with an open sending socket.
        peers_watched: peers under heartbeat watch.
        peers_lost: peers declared dead or gone so far.
        handoff_queued: frames waiting for the I/O thread.
        handoff_capacity: the hand-off queue's bound.
        auth_failures: connections refused for not holding the cluster's keys.
    """

    address: str
    sent: int
    received: int
    send_failures: int
    bad_frames: dict[str, int] = field(default_factory=dict)
    peers_connected: int = 0
    peers_watched: int = 0
    peers_lost: int = 0
    handoff_queued: int = 0
    handoff_capacity: int = 0
    auth_failures: int = 0


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

    def __init__(
        self,
        config: TransportConfig,
        on_envelope: OnEnvelope,
        on_peer_down: OnPeerDown,
        on_tick: OnTick | None = None,
    ) -> None:
        self._config = config
        self._on_envelope = on_envelope
        self._on_peer_down = on_peer_down
        self._on_tick = on_tick
        self._lock = threading.Lock()
        self._handoff: list[tuple[int, str, bytes, OnError | None]] = []
        self._closed = False
        self._dead_until: dict[str, float] = {}
        self._dead_reason: dict[str, str] = {}
        self._incarnations: dict[str, str] = {}
        self._dealers: dict[str, zmq.Socket] = {}
        self._monitors: dict[zmq.Socket, str] = {}
        self._link_up: dict[str, bool] = {}
        self._monitor_ids = itertools.count(1)
        self._poller: zmq.Poller | None = None
        self._router_monitor: zmq.Socket | None = None
        self._liveness = LivenessTracker(config.heartbeat_interval_s, config.heartbeat_liveness)
        self._log_limiter = LogLimiter(config.bad_frame_log_interval_s)
        self._sent = 0
        self._received = 0
        self._send_failures = 0
        self._peers_lost = 0
        self._bad_frames: Counter[str] = Counter()
        self._auth_failures = 0
        self._zap: zmq.Socket | None = None
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self._io_ident: int | None = None
        self._thread = threading.Thread(target=self._run, name="corral-io", daemon=True)
        self._ctx: zmq.Context | None = None
        self._router: zmq.Socket | None = None
        self._waker: Waker | None = None
        self._ipc_file: str | None = None
        self._frames: dict[str, bytes] = {}
        self.address = ""

    # ---- any thread -------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> str:
        """Start the I/O thread and bind the endpoint.

        Returns:
            The address peers use to reach this process.

        Raises:
            TransportError: if the endpoint cannot be bound (e.g. port in use).
        """
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TransportError(f"I/O thread did not start within {timeout}s")
        if self._start_error is not None:
            self._thread.join(timeout)
            raise TransportError(f"cannot bind: {self._start_error}") from self._start_error
        return self.address

    def send(self, peer: str, envelope: Envelope, on_error: OnError | None = None) -> None:
        """Encode ``envelope`` in the calling thread and queue it for ``peer``.

        Args:
            peer: the peer's address.
            envelope: what to send; its ``sender`` should be :attr:`address`.
            on_error: called on the I/O thread if the frame cannot be delivered
                to ZeroMQ later (peer unreachable or not draining). Without it,
                such a failure is counted and logged.

        Raises:
            TypeError: the body cannot be encoded.
            TransportClosed, SendQueueFull, PeerUnavailable: see :meth:`send_frame`.
        """
        self.send_frame(peer, encode_envelope(envelope), on_error)

    def send_frame(self, peer: str, frame: bytes, on_error: OnError | None = None) -> None:
        """Queue an already encoded frame for ``peer``.

        Raises:
            TransportClosed: the transport is closed.
            SendQueueFull: the I/O thread has ``handoff_capacity`` frames waiting.
            PeerUnavailable: the peer was found dead moments ago (quarantine).
        """
        until = self._dead_until.get(peer)
        if until is not None and time.monotonic() < until:
            why = self._dead_reason.get(peer, "")
            raise PeerUnavailable(peer, f"found dead recently ({why}); retry after its quarantine")
        self._enqueue((_SEND, peer, frame, on_error))

    def watch(self, peer: str) -> None:
        """Heartbeat ``peer`` from now on; :attr:`on_peer_down` fires if it goes silent."""
        self._enqueue((_WATCH, peer, b"", None))

    def is_io_thread(self) -> bool:
        """Whether the caller runs on this transport's I/O thread."""
        return threading.get_ident() == self._io_ident

    def close(self, timeout: float = 5.0) -> None:
        """Say goodbye to peers, flush for up to ``linger_s``, close every socket and
        remove the ipc file. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._handoff.append((_STOP, "", b"", None))
        if self._waker is not None and self._thread.is_alive():
            self._waker.wake()
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.error("I/O thread of %s did not stop within %.1fs", self.address, timeout)

    def statistics(self) -> TransportStatistics:
        """A snapshot of the counters."""
        return TransportStatistics(
            address=self.address,
            sent=self._sent,
            received=self._received,
            send_failures=self._send_failures,
            bad_frames=dict(self._bad_frames),
            peers_connected=len(self._dealers),
            peers_watched=len(self._liveness.watched),
            peers_lost=self._peers_lost,
            handoff_queued=len(self._handoff),
            handoff_capacity=self._config.handoff_capacity,
            auth_failures=self._auth_failures,
        )

    def _enqueue(self, item: tuple[int, str, bytes, OnError | None]) -> None:
        with self._lock:
            if self._closed:
                raise TransportClosed(f"transport {self.address} is closed")
            queue = self._handoff
            if len(queue) >= self._config.handoff_capacity:
                raise SendQueueFull(
                    f"{len(queue)} frames already wait for the I/O thread (handoff_capacity)"
                )
            queue.append(item)
            first = len(queue) == 1
        if first:
            self._waker.wake()  # type: ignore[union-attr]

    # ---- I/O thread -------------------------------------------------------------------

    def _bind(self) -> None:
        cfg = self._config
        self._ctx = zmq.Context()
        if cfg.curve is not None:
            # the ZAP handler answers libzmq's authentication requests; it is polled by this thread
            self._zap = self._ctx.socket(zmq.ROUTER)
            self._zap.setsockopt(zmq.LINGER, 0)
            self._zap.bind("inproc://zeromq.zap.01")
            self._allowed_client = cfg.curve.client_key_bytes()
        router = self._ctx.socket(zmq.ROUTER)
        router.setsockopt(zmq.LINGER, 0)
        router.setsockopt(zmq.RCVHWM, cfg.recv_hwm)
        router.setsockopt(zmq.ROUTER_HANDOVER, 1)
        router.setsockopt(zmq.MAXMSGSIZE, cfg.max_frame_bytes * 2 + 65536)
        if cfg.curve is not None:
            router.setsockopt(zmq.CURVE_SERVER, 1)
            router.setsockopt(zmq.CURVE_SECRETKEY, cfg.curve.server_secret.encode())
            router.setsockopt(zmq.ZAP_DOMAIN, b"corral")
        self._router = router
        self._router_monitor = router.get_monitor_socket(_REFUSAL_EVENTS)
        if cfg.host is None:
            address = new_ipc_endpoint(private_ipc_dir(cfg.ipc_dir))
            router.bind(address)
            self._ipc_file = ipc_path(address)
        else:
            if cfg.port == 0:
                port = router.bind_to_random_port(f"tcp://{cfg.host}")
            else:
                try:
                    router.bind(f"tcp://{cfg.host}:{cfg.port}")
                except zmq.ZMQError as exc:
                    raise TransportError(f"port {cfg.port} on {cfg.host} is not free: {exc}") from None
                port = cfg.port
            host = cfg.advertise_host or cfg.host
            if host in ("0.0.0.0", "*"):
                host = socket.gethostbyname(socket.gethostname())
            address = f"tcp://{host}:{port}"
        self.address = address
        self._waker = Waker()
        me = address
        self.incarnation = secrets.token_hex(8)
        self._frames = {
            kind: encode_envelope(Envelope(kind, body, sender=me))
            for kind, body in (("ping", Ping(self.incarnation)), ("pong", Pong(self.incarnation)), ("bye", Bye()))
        }

    def _run(self) -> None:
        self._io_ident = threading.get_ident()
        try:
            self._bind()
        except BaseException as exc:  # reported to start()'s caller
            self._start_error = exc
            with self._lock:
                self._closed = True
            self._teardown_sockets()
            self._ready.set()
            return
        self._ready.set()
        try:
            self._loop()
        except Exception:
            log.exception("I/O thread of %s crashed", self.address)
            with self._lock:
                self._closed = True
        finally:
            self._shutdown()

    def _loop(self) -> None:
        router, waker = self._router, self._waker
        assert router is not None and waker is not None
        poller = zmq.Poller()
        self._poller = poller
        poller.register(router, zmq.POLLIN)
        refusals = self._router_monitor
        if refusals is not None:
            poller.register(refusals, zmq.POLLIN)
        waker_fd = waker.fileno()
        poller.register(waker_fd, zmq.POLLIN)
        zap = self._zap
        if zap is not None:
            poller.register(zap, zmq.POLLIN)
        tick = self._config.tick_s
        next_tick = time.monotonic() + tick
        while True:
            wait = min(next_tick, self._liveness.next_deadline()) - time.monotonic()
            events = poller.poll(max(0, int(wait * 1000) + 1) if wait > 0 else 0)
            for sock, _ in events:
                if sock is router:
                    self._drain_router()
                elif sock is zap:
                    self._answer_zap()
                elif sock == waker_fd:
                    if self._drain_handoff():
                        return
                elif sock is refusals:
                    self._on_refusals()
                else:
                    self._on_link_events(sock)  # a sending socket's monitor (or one just closed: ignored)
            now = time.monotonic()
            if self._liveness.ping_due(now):
                self._heartbeat(now)
            if now >= next_tick:
                next_tick = now + tick
                if self._on_tick is not None:
                    self._call(self._on_tick, time.time())

    def _drain_handoff(self) -> bool:
        self._waker.drain()  # type: ignore[union-attr]
        with self._lock:
            items, self._handoff = self._handoff, []
        stop = False
        for op, peer, frame, on_error in items:
            if op == _SEND:
                self._send_now(peer, frame, on_error)
            elif op == _WATCH:
                if self._connect(peer) is not None:
                    self._liveness.watch(peer, time.monotonic())
            else:
                stop = True
        return stop

    def _connect(self, peer: str, on_error: OnError | None = None) -> zmq.Socket | None:
        sock = self._dealers.get(peer)
        if sock is not None:
            return sock
        path = ipc_path(peer)
        if path is not None and not os.path.exists(path):
            self._declare_down(peer, f"no process listens at {peer}")
            self._fail(peer, on_error, PeerUnavailable(peer, "no process listens there"))
            return None
        if not peer.startswith(("ipc://", "tcp://")):
            self._fail(peer, on_error, PeerUnavailable(peer, "not an ipc:// or tcp:// address"))
            return None
        assert self._ctx is not None
        sock = self._ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.ROUTING_ID, self.address.encode())
        sock.setsockopt(zmq.SNDHWM, self._config.send_hwm)
        sock.setsockopt(zmq.LINGER, 0)
        # ZMTP heartbeats drop a connection whose other end vanished without a FIN (a
        # host that died or was cut off) and dial again. The timeout is well inside the
        # liveness window: a peer restarted at the same address must get our answers
        # through a fresh connection before it would take our silence for death.
        interval_ms = max(1, int(self._config.heartbeat_interval_s * 1000))
        sock.setsockopt(zmq.HEARTBEAT_IVL, interval_ms)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, 2 * interval_ms)
        curve = self._config.curve
        if curve is not None:
            sock.setsockopt(zmq.CURVE_SERVERKEY, curve.server_public.encode())
            sock.setsockopt(zmq.CURVE_PUBLICKEY, curve.client_public.encode())
            sock.setsockopt(zmq.CURVE_SECRETKEY, curve.client_secret.encode())
        # a name of its own: pyzmq's default names it by file descriptor, which a new socket may reuse
        monitor = sock.get_monitor_socket(_LINK_EVENTS, addr=f"inproc://corral-link-{next(self._monitor_ids)}")
        self._monitors[monitor] = peer
        self._link_up[peer] = False
        if self._poller is not None:
            self._poller.register(monitor, zmq.POLLIN)
        sock.connect(peer)
        self._dealers[peer] = sock
        self._dead_until.pop(peer, None)
        self._liveness.watch(peer, time.monotonic())
        try:  # at once, not at the next heartbeat: its pong tells us which process is there
            sock.send(self._frames["ping"], zmq.NOBLOCK)
        except zmq.ZMQError:
            pass  # the heartbeat tries again
        return sock

    def _send_now(self, peer: str, frame: bytes, on_error: OnError | None) -> None:
        sock = self._dealers.get(peer) or self._connect(peer, on_error)
        if sock is None:
            return
        try:
            sock.send(frame, zmq.NOBLOCK, copy=len(frame) < 65536)
            self._sent += 1
        except zmq.Again:
            self._fail(peer, on_error, PeerUnavailable(
                peer, f"not reading: {self._config.send_hwm} frames already queued (send_hwm)"))
        except zmq.ZMQError as exc:
            self._fail(peer, on_error, PeerUnavailable(peer, f"send failed: {exc}"))

    def _fail(self, peer: str, on_error: OnError | None, exc: Exception) -> None:
        self._send_failures += 1
        if on_error is not None:
            self._call(on_error, exc)
        elif self._log_limiter.allow(f"send:{peer}", time.monotonic()):
            log.warning("dropped a frame for %s: %s", peer, exc)

    def _drain_router(self) -> None:
        router = self._router
        assert router is not None
        now = time.monotonic()
        limit = self._config.max_frame_bytes
        heard = self._liveness.heard
        dead_until = self._dead_until
        for _ in range(_RECV_BATCH):
            try:
                parts = router.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            self._received += 1
            peer = parts[0].decode("utf-8", "replace")
            heard(peer, now)
            if dead_until and peer in dead_until:
                del dead_until[peer]  # a frame from it: a live process is there again (e.g. a reused port)
            if len(parts) != 2:
                self._reject(MalformedFrame(f"expected one frame per message, got {len(parts) - 1}"), peer, b"")
                continue
            frame = parts[1]
            try:
                env = decode_envelope(frame, limit)
            except ProtocolError as err:
                self._reject(err, peer, frame)
                continue
            kind = env.kind
            if kind in _TRANSPORT_KINDS and (env.wants_reply or env.target):
                # transport messages take no answer and name no actor: someone is confused
                self._reject(MalformedEnvelope(f"a {kind!r} message takes no answer and has no target actor"), peer, frame)
            elif kind == "ping":
                self._send_now(peer, self._frames["pong"], None)
                self._note_incarnation(peer, env.body.incarnation)
            elif kind == "pong":
                self._note_incarnation(peer, env.body.incarnation)
            elif kind == "bye":
                self._declare_down(peer, "it shut down")
            else:
                self._call(self._on_envelope, env)

    def _on_link_events(self, monitor: zmq.Socket) -> None:
        """A sending socket's connection changed. Its peer's process is known gone
        at once when the connection closed and a new attempt is refused (or, for
        ipc, nothing accepts on the socket file): no liveness window to wait for.
        A peer that is merely frozen or cut off still accepts or times out, and is
        left to the heartbeats."""
        peer = self._monitors.get(monitor)
        while peer is not None:
            try:
                event = parse_monitor_message(monitor.recv_multipart(zmq.NOBLOCK))["event"]
            except zmq.Again:
                return
            if self._dealers.get(peer) is None:
                return
            if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self._link_up[peer] = True
            elif event == zmq.EVENT_DISCONNECTED:
                self._link_up[peer] = False
                if _ipc_refused(peer):
                    self._declare_down(peer, f"its connection closed and {NOTHING_LISTENS}")
                    return
            elif event == zmq.EVENT_CLOSED and not self._link_up.get(peer, False):
                self._declare_down(peer, f"{NOTHING_LISTENS} (connection refused)")
                return

    def _on_refusals(self) -> None:
        monitor = self._router_monitor
        assert monitor is not None
        while True:
            try:
                message = parse_monitor_message(monitor.recv_multipart(zmq.NOBLOCK))
            except zmq.Again:
                return
            if self._config.curve is not None:
                self._auth_failures += 1
            else:
                self._bad_frames["handshake"] += 1
            if self._log_limiter.allow("handshake", time.monotonic()):
                endpoint = message.get("endpoint", b"")
                where = endpoint.decode("utf-8", "replace") if isinstance(endpoint, bytes) else str(endpoint)
                log.warning("refused a connection on %s: its handshake failed (errno %s); a process without the "
                            "cluster's keys, or not a corral peer", where, message.get("value"))

    def _answer_zap(self) -> None:
        zap = self._zap
        assert zap is not None
        while True:
            try:
                parts = zap.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            # [routing id, b"", version, request id, domain, address, identity, mechanism, credentials...]
            if len(parts) < 8:
                continue
            ident, _, version, request_id, _domain, address, _identity, mechanism = parts[:8]
            credentials = parts[8:]
            ok = mechanism == b"CURVE" and credentials[:1] == [self._allowed_client]
            if not ok:
                self._auth_failures += 1
                where = address.decode("utf-8", "replace")
                if self._log_limiter.allow(f"zap:{where}", time.monotonic()):
                    log.warning("refused a connection from %s: it does not hold the cluster's keys", where)
            code, text = (b"200", b"OK") if ok else (b"400", b"not a member of this cluster")
            zap.send_multipart([ident, b"", version, request_id, code, text, b"corral" if ok else b"", b""])

    def _reject(self, err: ProtocolError, peer: str, frame: bytes) -> None:
        self._bad_frames[err.reason] += 1
        if self._log_limiter.allow(f"bad:{peer}", time.monotonic()):
            log.warning("rejected a frame from %s: %s: %s", peer, type(err).__name__, err)
        msg_id, corr_id, _, kind = peek_error_route(frame) if frame else (None, None, None, None)
        if msg_id is None or corr_id is not None or kind == "error":
            return
        if not peer.startswith(("ipc://", "tcp://")):
            return  # an anonymous socket: there is nowhere to answer
        reply = ErrorReply("protocol", type(err).__name__, str(err))
        try:
            frame_out = encode_envelope(Envelope("error", reply, corr_id=msg_id, sender=self.address))
        except TypeError:
            return
        self._send_now(peer, frame_out, None)

    def _heartbeat(self, now: float) -> None:
        for peer, silence in self._liveness.expired(now):
            self._declare_down(peer, f"no heartbeat for {silence:.2f}s")
        ping = self._frames["ping"]
        for peer in self._liveness.watched:
            self._send_now(peer, ping, None)

    def _note_incarnation(self, peer: str, incarnation: str) -> None:
        """A process restarted at the same address (quicker than the liveness window
        can tell) is a new peer: whoever watched or asked the old one hears it died."""
        if not incarnation:
            return
        known = self._incarnations.get(peer)
        self._incarnations[peer] = incarnation
        if known is not None and known != incarnation:
            self._peers_lost += 1
            self._call(self._on_peer_down, peer, "it restarted (a new process at its address)")
        elif known is None and len(self._incarnations) > 4096:
            self._incarnations = {p: i for p, i in self._incarnations.items() if p in self._dealers or p == peer}

    def _close_dealer(self, peer: str, linger_ms: int = 0) -> None:
        sock = self._dealers.pop(peer, None)
        self._link_up.pop(peer, None)
        if sock is None:
            return
        self._stop_monitor(sock, peer)
        sock.close(linger=linger_ms)

    def _stop_monitor(self, sock: zmq.Socket, peer: str) -> None:
        # libzmq sends monitor events blocking: the monitored socket must stop
        # reporting before its reader is closed, or libzmq's own threads hang
        sock.disable_monitor()
        for monitor, owner in list(self._monitors.items()):
            if owner == peer:
                del self._monitors[monitor]
                if self._poller is not None:
                    self._poller.unregister(monitor)
                monitor.close(linger=0)

    def _declare_down(self, peer: str, reason: str) -> None:
        self._incarnations.pop(peer, None)  # whoever answers there next is simply new
        self._close_dealer(peer)
        self._liveness.forget(peer)
        self._dead_until[peer] = time.monotonic() + self._config.quarantine_s
        self._dead_reason[peer] = reason
        if len(self._dead_until) > 4096:
            now = time.monotonic()
            self._dead_until = {p: t for p, t in self._dead_until.items() if t > now}
            self._dead_reason = {p: r for p, r in self._dead_reason.items() if p in self._dead_until}
        self._peers_lost += 1
        self._call(self._on_peer_down, peer, reason)

    def _call(self, fn: Callable[..., Any], *args: Any) -> None:
        try:
            fn(*args)
        except Exception:
            log.exception("callback %r failed on the I/O thread of %s", fn, self.address)

    def _shutdown(self) -> None:
        bye = self._frames.get("bye")
        linger_ms = int(self._config.linger_s * 1000)
        for peer, sock in list(self._dealers.items()):
            if bye is not None:
                try:
                    sock.send(bye, zmq.NOBLOCK)
                except zmq.ZMQError:
                    pass
            self._close_dealer(peer, linger_ms)
        self._teardown_sockets()

    def _teardown_sockets(self) -> None:
        for peer in list(self._dealers):
            self._close_dealer(peer)
        if self._router_monitor is not None:
            if self._router is not None:
                self._router.disable_monitor()
            self._router_monitor.close(linger=0)
            self._router_monitor = None
        if self._zap is not None:
            self._zap.close(linger=0)
            self._zap = None
        if self._router is not None:
            self._router.close(linger=0)
            self._router = None
        if self._ipc_file is not None:
            try:
                os.unlink(self._ipc_file)
            except FileNotFoundError:
                pass
            self._ipc_file = None
        if self._ctx is not None:
            self._ctx.term()
            self._ctx = None
        if self._waker is not None:
            self._waker.close()


def _ipc_refused(peer: str) -> bool:
    """Whether an ipc peer's socket file refuses connections (its process is gone).
    A frozen process still accepts (the kernel queues the connection)."""
    path = ipc_path(peer)
    if path is None:
        return False
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.setblocking(False)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        return True
    except OSError:
        return False  # busy (backlog full) or not ours to judge: the heartbeats decide
    finally:
        probe.close()
    return False
