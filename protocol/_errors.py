"""Errors raised while decoding or validating frames.

Every error carries a short machine-readable ``reason`` (used as the key in
statistics) and, when the frame's header could be read before the problem was
found, the ``msg_id``, ``sender`` and ``kind`` needed to answer with an error.
"""

from __future__ import annotations


class ProtocolError(Exception):
    """A frame or message that does not follow the wire protocol.

    Attributes:
        reason: short name of the failure, e.g. ``"too_large"``.
        msg_id: message id from the frame header, when it could be read.
        sender: sender address from the frame header, when it could be read.
        kind: message kind from the frame header, when it could be read.
    """

    reason = "protocol"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail
        self.msg_id: int | None = None
        self.sender: str | None = None
        self.kind: str | None = None


class FrameTooLarge(ProtocolError):
    """The frame is longer than the configured maximum."""

    reason = "too_large"


class MalformedFrame(ProtocolError):
    """The frame is not a complete msgpack value (random bytes, truncated)."""

    reason = "malformed"


class MalformedEnvelope(ProtocolError):
    """The frame is msgpack but not an envelope (wrong shape or header types)."""

    reason = "bad_envelope"


class UnsupportedVersion(ProtocolError):
    """The envelope names a protocol version this process does not speak."""

    reason = "version"


class UnknownKind(ProtocolError):
    """The envelope names a message kind that is not registered."""

    reason = "unknown_kind"


class InvalidField(ProtocolError):
    """A message field is missing or has the wrong type."""

    reason = "invalid_field"


class BadPayload(ProtocolError):
    """A payload extension is malformed, refers to out-of-band frames that are
    missing or of another size, or is a pickle this process does not accept."""

    reason = "bad_payload"
