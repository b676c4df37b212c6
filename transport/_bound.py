"""What binding the process's endpoint makes: the ZeroMQ context, the
receiving ROUTER and its monitor, the ZAP socket (with CURVE), the waker and
the canned heartbeat frames. Used and closed by whoever drives the transport."""

from __future__ import annotations

import contextlib
import os
import secrets

import zmq

from protocol import Bye, Envelope, Ping, Pong, encode_envelope

from ._config import TransportConfig
from ._guard import REFUSAL_EVENTS
from ._sockets import bind_router, open_zap
from ._waker import Waker


class Bound:
    """The bound endpoint of one process.

    Args:
        config: the transport settings.

    Raises:
        TransportError: a fixed TCP port is taken.
        ValueError, OSError: the ipc folder cannot be used.
    """

    def __init__(self, config: TransportConfig) -> None:
        self.ctx = zmq.Context()
        self.zap: zmq.Socket | None = None
        self.router: zmq.Socket | None = None
        self.monitor: zmq.Socket | None = None  # refused handshakes on the ROUTER
        self.ipc_file: str | None = None
        self.waker = Waker()
        try:
            if config.curve is not None:
                self.zap = open_zap(self.ctx)
            self.router, self.address, self.ipc_file = bind_router(self.ctx, config)
            self.monitor = self.router.get_monitor_socket(REFUSAL_EVENTS)
        except BaseException:
            self.close()
            raise
        # a pickle runs code: accepted only from peers that hold the cluster's keys or share this machine's files
        self.accepts_pickle = config.curve is not None or self.address.startswith("ipc://")
        self.incarnation = secrets.token_hex(8)
        self.frames = {
            kind: encode_envelope(Envelope(kind, body, sender=self.address))
            for kind, body in (("ping", Ping(self.incarnation)), ("pong", Pong(self.incarnation)), ("bye", Bye()))
        }

    def close(self) -> None:
        """Close every socket and the context, and remove the ipc file. Idempotent."""
        if self.router is not None and self.monitor is not None:
            self.router.disable_monitor()  # before its reader closes (libzmq reports blocking)
        for sock in (self.monitor, self.zap, self.router):
            if sock is not None:
                sock.close(linger=0)
        self.monitor = self.zap = self.router = None
        if self.ipc_file is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.ipc_file)
            self.ipc_file = None
        if self.ctx is not None:
            self.ctx.term()
            self.ctx = None  # type: ignore[assignment]
        self.waker.close()
