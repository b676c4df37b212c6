"""The sending side: one DEALER per peer, each with its link monitor."""

from __future__ import annotations

import os
from typing import Any

import zmq

from ._config import TransportConfig
from ._endpoint import ipc_path
from ._errors import PeerUnavailable
from ._links import LinkWatch
from ._sockets import open_dealer

_NOBLOCK = int(zmq.NOBLOCK)  # plain ints: flags combined per part as enums cost more than the send
_NOBLOCK_MORE = int(zmq.NOBLOCK | zmq.SNDMORE)


class Dealers:
    """The DEALER socket of every peer this process sends to. Used by whoever
    holds the transport's socket lock.

    Args:
        links: the monitors that tell when a peer's connection is gone.
    """

    def __init__(self, links: LinkWatch) -> None:
        self.links = links
        self._socks: dict[str, zmq.Socket] = {}

    def get(self, peer: str) -> zmq.Socket | None:
        """The peer's socket, or None when none is open."""
        return self._socks.get(peer)

    def __contains__(self, peer: object) -> bool:
        return peer in self._socks

    def __len__(self) -> int:
        return len(self._socks)

    def open(self, ctx: zmq.Context, config: TransportConfig, own_address: str, peer: str) -> zmq.Socket:
        """Open, watch and connect a DEALER to ``peer`` (its routing id is our address)."""
        sock = open_dealer(ctx, config, own_address)
        self.links.add(sock, peer)
        sock.connect(peer)
        self._socks[peer] = sock
        return sock

    @staticmethod
    def cannot_dial(peer: str) -> tuple[str, bool] | None:
        """Why ``peer`` cannot be dialled, and whether that says its process is
        gone (its ipc file is missing); None when it can be."""
        path = ipc_path(peer)
        if path is not None and not os.path.exists(path):
            return "no process listens there", True
        if not peer.startswith(("ipc://", "tcp://")):
            return "not an ipc:// or tcp:// address", False
        return None

    @staticmethod
    def send(sock: zmq.Socket, peer: str, frame: Any, parts: int, send_hwm: int) -> PeerUnavailable | None:
        """Send, without waiting, a frame, a list of frames (an envelope and its
        buffers) or a batch of ``parts`` envelopes on ``peer``'s socket.

        Returns:
            None when ZeroMQ took it, else why it did not.
        """
        try:
            if type(frame) is not list:
                sock.send(frame, _NOBLOCK, copy=len(frame) < 65536)
            elif parts > 1:  # a batch: small parts, copied (once the first is taken, ZeroMQ takes them all)
                send = sock.send
                for part in frame[:-1]:
                    send(part, _NOBLOCK_MORE)
                send(frame[-1], _NOBLOCK)
            else:  # an envelope and its buffers, sent without copying them
                sock.send_multipart(frame, _NOBLOCK, copy=False)
            return None
        except zmq.Again:
            return PeerUnavailable(peer, f"not reading: {send_hwm} frames already queued (send_hwm)")
        except zmq.ZMQError as exc:
            return PeerUnavailable(peer, f"send failed: {exc}")

    def close(self, peer: str, linger_ms: int = 0) -> None:
        """Close the peer's socket (if any), flushing for up to ``linger_ms``."""
        sock = self._socks.pop(peer, None)
        if sock is not None:
            self.links.remove(sock, peer)
            sock.close(linger=linger_ms)

    def close_all(self, farewell: bytes | None, linger_ms: int) -> None:
        """Say ``farewell`` to every peer (best effort) and close every socket."""
        for peer, sock in list(self._socks.items()):
            if farewell is not None:
                try:
                    sock.send(farewell, zmq.NOBLOCK)
                except zmq.ZMQError:
                    pass
            self.close(peer, linger_ms)
