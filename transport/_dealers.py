"""The sending side: one DEALER per peer, each with its link monitor."""

from __future__ import annotations

import zmq

from ._config import TransportConfig
from ._links import LinkWatch
from ._sockets import open_dealer


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
