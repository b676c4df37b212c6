"""The receiving half of the transport: read what waits on the ROUTER,
decode and check it, answer heartbeats, hand envelopes on.

Runs only where the socket lock is held: on the driver's thread, or on a
thread that leads the read while it waits for an answer (``_leader.py``).
Sending, the sockets' life cycle and peers' deaths stay in ``_transport.py``,
which this module reaches only through the callbacks it is given. Imports
``protocol`` and its sibling modules only.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import zmq

from protocol import Envelope, MalformedEnvelope, ProtocolError

from ._batches import BATCH_MARK, open_received, split_batch
from ._frames import EVENTS, POLLIN, receive
from ._guard import Guard
from ._liveness import LivenessTracker, Quarantine
from ._standby import run_quietly

RECV_BATCH = 512  # messages read in one round at most: the driver's other sockets get a turn
_TRANSPORT_KINDS = frozenset({"ping", "pong", "bye"})

SendNow = Callable[[str, Any, Any], None]


class Receiver:
    """Reads the ROUTER in bounded rounds and dispatches what it holds.

    Args:
        limit: the largest message accepted, in bytes (``max_frame_bytes``).
        liveness: told of every peer heard from.
        quarantine: a peer heard from again leaves it.
        guard: counts bad frames and builds their error answers.
        on_envelope: called with every valid envelope that is not a heartbeat.
        send_now: ``(peer, frame, on_error)``: sends at once (the lock is held).
        on_bye: ``(peer)``: a peer said goodbye.
        on_incarnation: ``(peer, incarnation)``: a heartbeat named the process at a peer's address.

    Attributes:
        received: messages received (each part of a batch counted).
        backlog: the last round stopped at its bound, or a leader left a
            message unread: the ROUTER holds more than its descriptor says.
    """

    def __init__(self, limit: int, liveness: LivenessTracker, quarantine: Quarantine, guard: Guard,
                 on_envelope: Callable[[Envelope], None], send_now: SendNow, on_bye: Callable[[str], None],
                 on_incarnation: Callable[[str, str], None]) -> None:
        self._limit = limit
        self._liveness = liveness
        self._quarantine = quarantine
        self._guard = guard
        self._on_envelope = on_envelope
        self._send_now = send_now
        self._on_bye = on_bye
        self._on_incarnation = on_incarnation
        self._router: zmq.Socket | None = None
        self._pong = b""
        self._address = ""
        self._allow_pickle = False
        self.received = 0
        self.backlog = False

    def bind(self, router: zmq.Socket, pong: bytes, address: str, allow_pickle: bool) -> None:
        """Read ``router`` from now on; ``pong`` answers pings; ``allow_pickle``: pickled payloads are accepted."""
        self._router, self._pong, self._address, self._allow_pickle = router, pong, address, allow_pickle

    def drain(self) -> bool:
        """One round: read until the ROUTER is empty or ``RECV_BATCH`` messages were read.

        Returns:
            True when it stopped at the bound with more to read (:attr:`backlog`).
        """
        router = self._router
        assert router is not None
        now = time.monotonic()
        limit = self._limit
        heard = self._liveness.heard
        quarantine = self._quarantine
        allow_pickle = self._allow_pickle
        self.backlog = True  # unless it empties the ROUTER below
        events = router.getsockopt
        for i in range(RECV_BATCH):
            # after one read, asked rather than found by an empty read (its zmq.Again costs twice as much):
            # a lone message (a request at a time) is the common case; asking after every read costs more
            if i == 1 and not events(EVENTS) & POLLIN:
                self.backlog = False
                return False
            try:
                identity, frame, buffers = receive(router)
            except zmq.Again:
                self.backlog = False
                return False
            peer = identity.decode("utf-8", "replace")
            heard(peer, now)
            if quarantine.until and peer in quarantine.until:
                quarantine.release(peer)  # a frame from it: a live process is there again (e.g. a reused port)
            batch = frame == BATCH_MARK
            if batch:
                try:
                    buffers = split_batch(buffers)
                except ProtocolError as err:  # its frames cannot be told apart: no id to answer
                    self.received += 1
                    self._reject(err, peer, [])
                    continue
            self.received += len(buffers) if batch else 1
            try:
                opened = open_received(frame, buffers, limit, allow_pickle)
            except ProtocolError as err:  # a batch is refused whole, each part answered by its id
                self._reject(err, peer, buffers if batch else [frame or b""])
                continue
            for env, part in opened:
                self._dispatch(peer, env, part)
        return True

    def _dispatch(self, peer: str, env: Envelope, frame: bytes) -> None:
        kind = env.kind
        if kind in _TRANSPORT_KINDS and (env.wants_reply or env.target):  # they take no answer, name no actor
            self._reject(MalformedEnvelope(f"a {kind!r} message takes no answer and has no target actor"), peer, [frame])
        elif kind == "ping":
            self._send_now(peer, self._pong, None)
            self._on_incarnation(peer, env.body.incarnation)
        elif kind == "pong":
            self._on_incarnation(peer, env.body.incarnation)
        elif kind == "bye":
            self._on_bye(peer)
        else:
            run_quietly(self._on_envelope, env)

    def _reject(self, err: ProtocolError, peer: str, frames: list[bytes]) -> None:
        for reply in filter(None, self._guard.reject(err, peer, frames, self._address)):  # None: no id to answer
            self._send_now(peer, reply, None)
