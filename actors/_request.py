"""What the runtime hands an actor for each message, and how an ask is answered."""

from __future__ import annotations

from typing import Any, Callable

# (value, error, traceback text) -> None
Respond = Callable[[Any, "BaseException | None", str], None]



class Request:
    """A message delivered to an actor by the runtime.

    Attributes:
        payload: the message itself.
        respond: how to answer; None for a ``tell``.
        deadline: UNIX time after which nobody waits for the answer, or None.
        emit: sends one item of a streaming ask; None otherwise.
        sender: the asking process's address (this process's for a local ask).
        msg_id: the ask's id in its sender (0 for a tell): with ``sender``, what
            a later :class:`protocol.CancelRequest` names.
    """

    __slots__ = ("payload", "respond", "deadline", "emit", "sender", "msg_id")

    def __init__(
        self, payload: Any, respond: Respond | None, deadline: float | None, emit: Callable[[Any], None] | None = None,
        sender: str = "", msg_id: int = 0,
    ) -> None:
        self.payload = payload
        self.respond = respond
        self.deadline = deadline
        self.emit = emit
        self.sender = sender
        self.msg_id = msg_id
