"""What the transport refuses, counts and logs: strangers' handshakes, peers
without the cluster's keys, and bad frames (used by the I/O thread only)."""

from __future__ import annotations

import logging
import time
from collections import Counter

import zmq
from zmq.utils.monitor import parse_monitor_message

from protocol import Envelope, ErrorReply, ProtocolError, encode_envelope, peek_error_route

from ._liveness import LogLimiter
from ._sockets import answer_zap

log = logging.getLogger("corral.transport")

#: What the receiving socket's monitor reports: a stranger's handshake failed
#: (not ZMTP, or no CURVE where the cluster requires it).
REFUSAL_EVENTS = zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL


class Guard:
    """The counters of what was refused, and the log lines (at most one per
    peer per interval).

    Args:
        limiter: the transport's log limiter.
        keyed: the cluster uses CurveZMQ: a failed handshake is a refusal.
    """

    def __init__(self, limiter: LogLimiter, keyed: bool) -> None:
        self.bad_frames: Counter[str] = Counter()
        self.auth_failures = 0
        self.allowed_client = b""
        self._limiter = limiter
        self._keyed = keyed

    def handshake_failures(self, monitor: zmq.Socket) -> None:
        """Count and log the failed handshakes the receiving socket's monitor reports."""
        while True:
            try:
                message = parse_monitor_message(monitor.recv_multipart(zmq.NOBLOCK))
            except zmq.Again:
                return
            if self._keyed:
                self.auth_failures += 1
            else:
                self.bad_frames["handshake"] += 1
            if self._limiter.allow("handshake", time.monotonic()):
                endpoint = message.get("endpoint", b"")
                where = endpoint.decode("utf-8", "replace") if isinstance(endpoint, bytes) else str(endpoint)
                log.warning("refused a connection on %s: its handshake failed (errno %s); a process without the "
                            "cluster's keys, or not a corral peer", where, message.get("value"))

    def answer_zap(self, zap: zmq.Socket) -> None:
        """Answer libzmq's authentication requests: only the cluster's client key gets in."""
        for where in answer_zap(zap, self.allowed_client):
            self.auth_failures += 1
            if self._limiter.allow(f"zap:{where}", time.monotonic()):
                log.warning("refused a connection from %s: it does not hold the cluster's keys", where)

    def reject(self, err: ProtocolError, peer: str, parts: list[bytes], own_address: str) -> list[bytes | None]:
        """Count and log a bad message once (a frame, or a batch refused whole for
        one bad part); the error answer for each part, when it can be addressed."""
        self.bad_frames[err.reason] += 1
        if self._limiter.allow(f"bad:{peer}", time.monotonic()):
            what = "a frame" if len(parts) == 1 else f"a batch of {len(parts)} frames" if parts else "a batch"
            log.warning("rejected %s from %s: %s: %s", what, peer, type(err).__name__, err)
        return [self._answer(err, peer, part, own_address) for part in parts]

    def _answer(self, err: ProtocolError, peer: str, frame: bytes, own_address: str) -> bytes | None:
        msg_id, corr_id, _, kind = peek_error_route(frame) if frame else (None, None, None, None)
        if msg_id is None or corr_id is not None or kind == "error":
            return None
        if not peer.startswith(("ipc://", "tcp://")):
            return None  # an anonymous socket: there is nowhere to answer
        reply = ErrorReply("protocol", type(err).__name__, str(err))
        try:
            return encode_envelope(Envelope("error", reply, corr_id=msg_id, sender=own_address))
        except TypeError:
            return None
