"""Message types of the actor runtime itself (liveness, replies, death watch)."""

from __future__ import annotations

from dataclasses import dataclass

from ._schema import Payload, message


@message("data")
@dataclass(frozen=True, slots=True)
class Data:
    """An untyped payload: a user message or a result (see :class:`Payload`)."""

    value: Payload


@message("stream_item")
@dataclass(frozen=True, slots=True)
class StreamItem:
    """One of many answers to a streaming request (``corr_id`` names the request)."""

    value: Payload


@message("error")
@dataclass(frozen=True, slots=True)
class ErrorReply:
    """The answer to a request that failed.

    Attributes:
        code: who failed: ``"user"`` (the handler raised), ``"actor_not_found"``,
            ``"actor_stopped"``, ``"protocol"`` (the request was malformed) or
            ``"encode"`` (the result could not be encoded).
        type_name: the exception's qualified type name, e.g. ``"ValueError"``.
        message: ``str()`` of the exception.
        traceback: the remote traceback text ("" when there is none).
    """

    code: str
    type_name: str
    message: str
    traceback: str = ""


@message("ping")
@dataclass(frozen=True, slots=True)
class Ping:
    """Heartbeat: asks the receiver to answer with :class:`Pong`.

    Attributes:
        incarnation: random per process start, so a peer can tell a process
            restarted at the same address from the one it knew.
    """

    incarnation: str = ""


@message("pong")
@dataclass(frozen=True, slots=True)
class Pong:
    """Heartbeat answer; ``incarnation`` as in :class:`Ping`."""

    incarnation: str = ""


@message("bye")
@dataclass(frozen=True, slots=True)
class Bye:
    """The sender is shutting down cleanly; forget it now instead of waiting."""


@message("watch")
@dataclass(frozen=True, slots=True)
class Watch:
    """Ask to be sent :class:`ActorDied` when the named actor stops."""

    actor: str


@message("cancel")
@dataclass(frozen=True, slots=True)
class CancelRequest:
    """The sender no longer wants the answer to its ask ``msg_id`` (sent to
    the actor it asked): work still running for it may be stopped."""

    msg_id: int


@message("stream_credit")
@dataclass(frozen=True, slots=True)
class StreamCredit:
    """The consumer of stream ``msg_id`` (the asker's id) has taken ``taken``
    items in all: its producer may send that many more beyond its window."""

    msg_id: int
    taken: int


@message("unwatch")
@dataclass(frozen=True, slots=True)
class Unwatch:
    """Cancel an earlier :class:`Watch`."""

    actor: str


@message("actor_died")
@dataclass(frozen=True, slots=True)
class ActorDied:
    """The named actor of the sending process has stopped (or never existed)."""

    actor: str
    reason: str
