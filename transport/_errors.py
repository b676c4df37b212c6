"""Errors raised by the transport."""

from __future__ import annotations


class TransportError(Exception):
    """Base class of transport failures."""


class TransportClosed(TransportError):
    """The transport was closed; nothing more can be sent."""


class PeerUnavailable(TransportError):
    """A peer is dead, unreachable, or not draining its queue.

    Attributes:
        peer: the address of the peer.
    """

    def __init__(self, peer: str, detail: str) -> None:
        super().__init__(f"peer {peer}: {detail}")
        self.peer = peer


class SendQueueFull(TransportError):
    """The hand-off queue to the I/O thread is full; the send was refused."""


PEER_LEFT = "it shut down"
"""The reason given when a peer said goodbye: it shut down cleanly, after
answering what it had taken."""
