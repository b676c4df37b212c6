"""What an actor system sends back to other processes: answers, stream items, stream
credit and error answers. Composed into ``ActorSystem`` (one per system); it holds
no state but the count of messages dropped unanswered."""

from __future__ import annotations

import logging
import time
from typing import Any

from protocol import Envelope, ErrorReply, StreamCredit, StreamItem, encode_envelope
from transport import LogLimiter, Transport

from ._callbacks import answer_frame
from ._window import StreamWindows

log = logging.getLogger("corral.actors")


class Replies:
    """Sends from ``address`` through ``transport``; ``windows`` are the streams produced here.

    Attributes:
        dropped: messages that could not be handled and wanted no answer (counted, logged at a bounded rate).
    """

    def __init__(self, address: str, transport: Transport, windows: StreamWindows) -> None:
        self.address = address
        self._transport = transport
        self._windows = windows
        self._log_limiter = LogLimiter(10.0)
        self.dropped = 0

    def credit(self, address: str, msg_id: int, taken: int) -> None:
        """Tell the producer of stream ``msg_id`` at ``address`` that ``taken`` more items were taken."""
        try:
            self._transport.send(address, Envelope("stream_credit", StreamCredit(msg_id, taken), 0, None, self.address, ""))
        except Exception as exc:  # the producer's process is gone: its stream ends without it
            log.debug("stream credit for %s to %s not sent: %s", msg_id, address, exc)

    def emit(self, sender: str, msg_id: int, value: Any, pickle: bool = False) -> None:
        """One item of the stream that answers ask ``msg_id`` of ``sender``.

        Raises:
            TypeError: the item cannot be encoded; TransportError: as ``Transport.send_frame``.
        """
        frame = encode_envelope(Envelope("stream_item", StreamItem(value), 0, msg_id, self.address, "", pickle=pickle))
        self._transport.send_frame(sender, frame)

    def respond(self, sender: str, msg_id: int, actor: str, value: Any, error: BaseException | None, tb: str, pickle: bool) -> None:
        """The answer of ``actor`` to ask ``msg_id`` of ``sender`` (logged, not raised, when it cannot be sent)."""
        self._windows.end(sender, msg_id)
        try:
            self._transport.send_frame(sender, answer_frame(self.address, msg_id, actor, value, error, tb, pickle))
        except Exception as exc:
            log.warning("answer to %s from %s not sent: %s", sender, actor, exc)

    def error_to(self, env: Envelope, code: str, exc_type: str, text: str) -> None:
        """Answer ``env`` with an error, or count it dropped when it wants no answer."""
        if not env.wants_reply:
            self.dropped += 1
            if self._log_limiter.allow(f"drop:{env.sender}", time.monotonic()):
                log.warning("dropped a %r message from %s: %s", env.kind, env.sender, text)
            return
        reply = ErrorReply(code, exc_type, text)
        try:
            self._transport.send(env.sender, Envelope("error", reply, 0, env.msg_id, self.address, ""))
        except Exception as exc:
            log.warning("error answer to %s not sent: %s", env.sender, exc)
