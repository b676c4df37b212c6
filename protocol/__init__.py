"""corral's wire protocol: typed messages, the envelope and its msgpack codec.

Pure: no I/O. Imports nothing else of corral.
"""

from ._envelope import (
    FLAG_WANTS_REPLY,
    PROTOCOL_VERSION,
    Envelope,
    decode_envelope,
    encode_envelope,
    peek_error_route,
)
from ._errors import (
    FrameTooLarge,
    InvalidField,
    MalformedEnvelope,
    MalformedFrame,
    ProtocolError,
    UnknownKind,
    UnsupportedVersion,
)
from ._messages import ActorDied, Bye, Data, ErrorReply, Ping, Pong, Unwatch, Watch
from ._schema import decode_fields, encode_fields, message, registered_kinds

__all__ = [
    "FLAG_WANTS_REPLY",
    "PROTOCOL_VERSION",
    "ActorDied",
    "Bye",
    "Data",
    "Envelope",
    "ErrorReply",
    "FrameTooLarge",
    "InvalidField",
    "MalformedEnvelope",
    "MalformedFrame",
    "Ping",
    "Pong",
    "ProtocolError",
    "UnknownKind",
    "UnsupportedVersion",
    "Unwatch",
    "Watch",
    "decode_envelope",
    "decode_fields",
    "encode_envelope",
    "encode_fields",
    "message",
    "registered_kinds",
]
