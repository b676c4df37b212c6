"""Small objects the actor system hands to actors, futures and the transport
to call back into it: answering an ask, emitting a stream item, failing a
send, and the statistics snapshot.

Each holds a bound method of the system and a message id, not the system
itself, so this module needs nothing from :mod:`actors._system`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from protocol import Data, Envelope, ErrorReply, encode_data_reply, encode_envelope
from transport import TransportStatistics

from ._request import Request
from ._errors import ActorNotFound, MessageNotHandled
from ._window import StreamWindow

_new_data = Data.__wire_new__  # type: ignore[attr-defined]  # one per ask of a plain value: no frozen __init__


@dataclass(frozen=True)
class SystemStatistics:
    """A snapshot of an actor system's counters.

    Attributes:
        actors: live local actors.
        pending_asks: asks waiting for an answer.
        timed_out_asks: asks failed by their deadline.
        late_replies: answers that arrived after their ask was settled.
        dropped_messages: messages for unknown or stopped actors that nobody waited on.
        expired_requests: requests skipped because their deadline had passed.
        transport: the transport's own statistics.
    """

    actors: int
    pending_asks: int
    timed_out_asks: int
    late_replies: int
    dropped_messages: int
    expired_requests: int
    transport: TransportStatistics


class LocalResponder:
    """Answers an ask made in this process: settles its future."""

    __slots__ = ("_settle", "_msg_id")

    def __init__(self, settle: Callable[..., None], msg_id: int) -> None:
        self._settle = settle
        self._msg_id = msg_id

    def __call__(self, value: Any, error: BaseException | None, tb: str) -> None:
        self._settle(self._msg_id, error, value)


class RemoteResponder:
    """Answers an ask from another process: sends the reply frame."""

    __slots__ = ("_respond", "_sender", "_msg_id", "_actor", "_pickle")

    def __init__(self, respond: Callable[..., None], sender: str, msg_id: int, actor: str, pickle: bool = False) -> None:
        self._pickle = pickle
        self._respond = respond
        self._sender = sender
        self._msg_id = msg_id
        self._actor = actor

    def __call__(self, value: Any, error: BaseException | None, tb: str) -> None:
        self._respond(self._sender, self._msg_id, self._actor, value, error, tb, self._pickle)


class LocalEmitter:
    """Pushes one item of a streaming ask made in this process. ``window`` is
    the stream's flow control, for a producer that waits while it is full."""

    __slots__ = ("_emit", "_msg_id", "window")

    def __init__(self, emit: Callable[[int, Any], object], msg_id: int, window: StreamWindow) -> None:
        self._emit = emit
        self._msg_id = msg_id
        self.window = window

    def __call__(self, value: Any) -> None:
        self._emit(self._msg_id, value)
        self.window.sent_one()


class RemoteEmitter:
    """Sends one item of a streaming ask from another process (``window`` as
    :class:`LocalEmitter`'s, credited by the asker's ``StreamCredit``)."""

    __slots__ = ("_emit", "_sender", "_msg_id", "_pickle", "window")

    def __init__(self, emit: Callable[..., None], sender: str, msg_id: int, window: StreamWindow, pickle: bool = False) -> None:
        self._pickle = pickle
        self._emit = emit
        self._sender = sender
        self._msg_id = msg_id
        self.window = window

    def __call__(self, value: Any) -> None:
        self._emit(self._sender, self._msg_id, value, self._pickle)
        self.window.sent_one()


class CreditSender:
    """Tells a remote stream's producer how many items its asker has taken."""

    __slots__ = ("_send", "_address", "_msg_id")

    def __init__(self, send: Callable[[str, int, int], None], address: str, msg_id: int) -> None:
        self._send = send
        self._address = address
        self._msg_id = msg_id

    def __call__(self, taken: int) -> None:
        self._send(self._address, self._msg_id, taken)


class Pending:
    """An ask waiting for its answer; called with an error when the transport could not
    deliver its frame (it is the send's failure callback: one object less per ask).
    ``future`` is a Future, a Stream (``stream``), or a sink given to ``ask_into``."""

    __slots__ = ("future", "address", "name", "stream", "msg_id", "settle")

    def __init__(self, future: Any, address: str, name: str, stream: bool = False,
                 msg_id: int = 0, settle: Callable[..., None] | None = None) -> None:
        self.future = future
        self.address = address
        self.name = name
        self.stream = stream
        self.msg_id = msg_id
        self.settle = settle

    def __call__(self, error: Exception) -> None:
        if self.settle is not None:
            self.settle(self.msg_id, error, answer=False)


def wrap(message: Any) -> tuple[str, Any]:
    kind = getattr(type(message), "__wire_kind__", None)
    if kind is None:
        return "data", _new_data(message)
    return kind, message


def unwrap(env: Envelope) -> Any:
    return env.body.value if env.kind == "data" else env.body


def type_name(error: BaseException) -> str:
    cls = type(error)
    if cls.__module__ in ("builtins", "corral.remote"):
        return cls.__name__
    return f"{cls.__module__}.{cls.__qualname__}"


def answer_frame(
    address: str, msg_id: int, actor: str, value: Any, error: BaseException | None, tb: str, pickle: bool = False
) -> Any:
    """The frame(s) that answer an ask from another process: the value, or the error
    (with its type's name and traceback; an answer that cannot be encoded is one)."""
    if error is None:
        if getattr(type(value), "__wire_kind__", None) is None:  # a plain value: the common answer, encoded at once
            frame = encode_data_reply(value, msg_id, address, pickle)
            if frame is not None:
                return frame
        kind, body = wrap(value)
        try:
            return encode_envelope(Envelope(kind, body, 0, msg_id, address, "", pickle=pickle))
        except TypeError as exc:
            error, tb = TypeError(f"the answer of actor {actor!r} cannot be encoded: {exc}"), ""
    if isinstance(error, MessageNotHandled):
        code = "not_handled"
    elif isinstance(error, ActorNotFound):
        code = "actor_not_found"
    else:
        code = "encode" if not tb and isinstance(error, TypeError) else "user"
    return encode_envelope(Envelope("error", ErrorReply(code, type_name(error), str(error), tb), 0, msg_id, address, ""))


def answer_leftovers(inbox: Any, actor: str) -> None:
    """Answer every ask left in a stopped actor's inbox: it was never handled
    (so the asker may send it elsewhere); keep the rest."""
    keep = []
    while not inbox.empty():
        envelope = inbox.get()
        message = envelope.message
        if type(message) is Request and message.respond is not None:
            message.respond(None, MessageNotHandled(f"actor {actor!r} stopped before handling the message"), "")
        else:
            keep.append(envelope)
    for envelope in keep:
        inbox.put(envelope)
