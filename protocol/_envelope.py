"""The envelope every frame carries, and the codec that turns it into bytes.

Wire layout: one msgpack array
``[version, kind, msg_id, corr_id, sender, target, deadline, flags, body]``
where ``body`` is the message's field values in declaration order. A reply is
any envelope whose ``corr_id`` is the ``msg_id`` of the request it answers.
Large buffers of the body's payload fields follow as their own frames (see
``_payload``); the envelope's frame refers to each exactly once.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Sequence

import msgpack

from ._errors import (
    BadPayload,
    FrameTooLarge,
    MalformedEnvelope,
    MalformedFrame,
    ProtocolError,
    UnknownKind,
    UnsupportedVersion,
)
from ._payload import OUT_OF_BAND_MIN, PayloadDecoder, PayloadEncoder
from ._schema import RAW, decoder_for, encode_fields

PROTOCOL_VERSION = 1
FLAG_WANTS_REPLY = 1
FLAG_STREAM = 2
FLAG_PICKLE = 4
_HEADER_LEN = 9

_packb = msgpack.packb
_unpackb = msgpack.unpackb


_PACKER_KEEPS = 1 << 20  # a packer whose buffer grew past this (a large frame) is not kept


def _plain_packer() -> msgpack.Packer:
    return msgpack.Packer(use_bin_type=True, strict_types=True, buf_size=4096)


class _Packers(threading.local):
    """Each thread's packer of plain frames: ``packb`` makes (and frees) a packer and its
    buffer per call, about twice the cost of packing a small frame with one kept."""

    def __init__(self) -> None:
        self.plain = _plain_packer()


_packers = _Packers()
_NO_BUFFERS = (PayloadDecoder(), PayloadDecoder(allow_pickle=True))  # shared: a frame without buffers leaves them unchanged


@dataclass(slots=True)
class Envelope:
    """One message on the wire, with its routing header.

    Attributes:
        kind: registered kind of ``body``.
        body: the message instance.
        msg_id: sender-unique id (0 for messages nobody answers).
        corr_id: for a reply, the ``msg_id`` of the request; otherwise None.
        sender: address of the sending process.
        target: name of the actor the message is for ("" for the process itself).
        deadline: absolute UNIX time after which the message is worthless, or None.
        wants_reply: whether the sender waits for an answer.
        stream: the sender takes many ``stream_item`` answers before the final one.
        version: protocol version of the frame.
        pickle: payload values with no codec may be pickled (the sender's
            deployment opted in); answers to it may be pickled too.
    """

    kind: str
    body: Any
    msg_id: int = 0
    corr_id: int | None = None
    sender: str = ""
    target: str = ""
    deadline: float | None = None
    wants_reply: bool = False
    version: int = PROTOCOL_VERSION
    stream: bool = False
    pickle: bool = False


def encode_envelope(env: Envelope) -> Any:
    """Encode an envelope into one frame, or a list of frames when its payload
    has out-of-band buffers (the envelope's frame first).

    Raises:
        TypeError: if a value in the body cannot be encoded; the message names
            the message kind, the offending type and where it is.
    """
    flags = (FLAG_WANTS_REPLY if env.wants_reply else 0) | (FLAG_STREAM if env.stream else 0) | (FLAG_PICKLE if env.pickle else 0)
    return _encode([env.version, env.kind, env.msg_id, env.corr_id, env.sender, env.target, env.deadline, flags, None],
                   env.body, env.pickle)


def encode_request(kind: str, body: Any, msg_id: int, sender: str, target: str, deadline: float | None,
                   stream: bool = False, pickle: bool = False) -> Any:
    """Encode a request that wants a reply, as :func:`encode_envelope` would encode its
    :class:`Envelope` (the hot path of an ask: no Envelope is built).

    Raises:
        TypeError: as for :func:`encode_envelope`.
    """
    flags = FLAG_WANTS_REPLY | (FLAG_STREAM if stream else 0) | (FLAG_PICKLE if pickle else 0)
    return _encode([PROTOCOL_VERSION, kind, msg_id, None, sender, target, deadline, flags, None], body, pickle)


def encode_data_reply(value: Any, corr_id: int, sender: str, pickle: bool = False) -> bytes | None:
    """Encode the answer to ask ``corr_id`` carrying a plain value (kind ``data``), as
    :func:`encode_envelope` would encode it (the hot path of an answer: no Envelope
    and no Data message are built).

    Returns:
        The frame, or None when the value needs the full encoder (a type msgpack does
        not take as it is, or a buffer long enough to travel on its own).
    """
    return _pack_plain([PROTOCOL_VERSION, "data", 0, corr_id, sender, "", None, FLAG_PICKLE if pickle else 0, [value]])


def _pack_plain(header: list[Any]) -> bytes | None:
    """The common case at C speed: a frame of plain msgpack values (exact types: no tuple,
    memoryview...) short enough that no buffer in it travels on its own; None otherwise."""
    try:
        head: bytes = _packers.plain.pack(header)
    except (TypeError, ValueError, OverflowError):
        _packers.plain = _plain_packer()  # (it resets itself, but its buffer may have grown before the refusal)
        return None
    if len(head) < OUT_OF_BAND_MIN:
        return head
    if len(head) > _PACKER_KEEPS:
        _packers.plain = _plain_packer()
    return None


def _encode(header: list[Any], body: Any, pickle: bool) -> Any:
    cls = type(body)
    if cls.__wire_payload__:  # payload values as they are: plain msgpack, or the general path below
        raw = cls.__wire_raw__
        header[8] = raw(body) if raw is not None else encode_fields(body, RAW)
        head = _pack_plain(header)
        if head is not None:
            return head
    payload = PayloadEncoder(pickle)
    try:
        header[8] = encode_fields(body, payload)
        head = _packb(header, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise TypeError(f"cannot encode message {header[1]!r}: {exc}") from None
    return [head, *payload.buffers] if payload.buffers else head


def decode_envelope(frame: bytes, max_bytes: int, buffers: Sequence[Any] = (), allow_pickle: bool = False) -> Envelope:
    """Decode and fully validate one frame.

    Args:
        frame: the bytes received.
        max_bytes: frames longer than this are rejected before parsing.
        buffers: the out-of-band frames that came with it.
        allow_pickle: accept pickled payload values (an authenticated or local transport).

    Returns:
        The envelope with its body decoded into the registered message type.

    Raises:
        ProtocolError: a subclass naming exactly what was wrong; header fields
            that could be read are set on the error to allow an error answer.
    """
    if len(frame) > max_bytes:
        raise FrameTooLarge(f"frame of {len(frame)} bytes exceeds the limit of {max_bytes} bytes")
    payload = PayloadDecoder(buffers, allow_pickle) if buffers else _NO_BUFFERS[allow_pickle]
    bad_payload: BadPayload | None = None
    try:
        raw = _unpackb(frame, raw=False, strict_map_key=False, use_list=True, ext_hook=payload)
        if buffers:
            payload.finish()
    except BadPayload as exc:
        # judge the frame's shape first: garbage that merely looks like an extension is malformed,
        # a well-formed envelope with a bad payload gets its header read for the error answer
        bad_payload = exc
        raw = _structure(frame)
    except Exception as exc:  # msgpack raises several unrelated types for bad input
        raise MalformedFrame(f"not a valid msgpack frame ({type(exc).__name__}: {exc})") from None
    if type(raw) is not list or len(raw) != _HEADER_LEN:
        shape = f"array of {len(raw)}" if type(raw) is list else type(raw).__name__
        raise MalformedEnvelope(f"expected an envelope array of {_HEADER_LEN} items, got {shape}")
    version, kind, msg_id, corr_id, sender, target, deadline, flags, body = raw
    try:
        if not (version == PROTOCOL_VERSION and type(version) is int and type(kind) is str and type(msg_id) is int
                and (corr_id is None or type(corr_id) is int) and type(sender) is str and type(target) is str
                and (deadline is None or type(deadline) is float) and type(flags) is int):
            _check_header(version, kind, msg_id, corr_id, sender, target, deadline, flags)  # says what is wrong, or passes
        decode = decoder_for(kind)
        if decode is None:
            raise UnknownKind(f"unknown message kind {kind!r}")
        if bad_payload is not None:
            raise bad_payload
        message = decode(body)
    except ProtocolError as err:
        err.msg_id = msg_id if type(msg_id) is int else None
        err.sender = sender if type(sender) is str else None
        err.kind = kind if type(kind) is str else None
        raise
    return Envelope(
        kind,
        message,
        msg_id,
        corr_id,
        sender,
        target,
        deadline,
        bool(flags & FLAG_WANTS_REPLY),
        version,
        bool(flags & FLAG_STREAM),
        bool(flags & FLAG_PICKLE),
    )


def _structure(frame: bytes) -> Any:
    """The frame decoded with its extensions left undecoded (only after a payload failed).

    Raises:
        MalformedFrame: it is not msgpack at all.
    """
    try:
        return _unpackb(frame, raw=False, strict_map_key=False, use_list=True)
    except Exception as exc:
        raise MalformedFrame(f"not a valid msgpack frame ({type(exc).__name__}: {exc})") from None


def _check_header(
    version: Any,
    kind: Any,
    msg_id: Any,
    corr_id: Any,
    sender: Any,
    target: Any,
    deadline: Any,
    flags: Any,
) -> None:
    if type(version) is not int:
        raise MalformedEnvelope(f"envelope version: expected int, got {type(version).__name__}")
    if version != PROTOCOL_VERSION:
        raise UnsupportedVersion(f"protocol version {version} is not supported (this process speaks {PROTOCOL_VERSION})")
    if type(kind) is not str:
        raise MalformedEnvelope(f"envelope kind: expected str, got {type(kind).__name__}")
    if type(msg_id) is not int:
        raise MalformedEnvelope(f"envelope msg_id: expected int, got {type(msg_id).__name__}")
    if corr_id is not None and type(corr_id) is not int:
        raise MalformedEnvelope(f"envelope corr_id: expected int or nil, got {type(corr_id).__name__}")
    if type(sender) is not str or type(target) is not str:
        bad = "sender" if type(sender) is not str else "target"
        raise MalformedEnvelope(f"envelope {bad}: expected str, got {type(locals()[bad]).__name__}")
    if deadline is not None and type(deadline) is not float and type(deadline) is not int:
        raise MalformedEnvelope(f"envelope deadline: expected float or nil, got {type(deadline).__name__}")
    if type(flags) is not int:
        raise MalformedEnvelope(f"envelope flags: expected int, got {type(flags).__name__}")


def peek_error_route(frame: bytes) -> tuple[int | None, int | None, str | None, str | None]:
    """Best effort: read ``(msg_id, corr_id, sender, kind)`` from a frame that failed to decode.

    Reads only the first bytes, so it is cheap for huge frames and works on
    truncated ones. Never raises; unreadable items come back as None.
    """
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False, max_buffer_size=4096)
    unpacker.feed(frame[:4096])
    items: list[Any] = []
    try:
        if unpacker.read_array_header() != _HEADER_LEN:
            return None, None, None, None
        for _ in range(5):
            items.append(unpacker.unpack())
    except Exception:
        pass
    items += [None] * (5 - len(items))
    _, kind, msg_id, corr_id, sender = items

    def typed(value: Any, kind_of: type) -> Any:
        return value if type(value) is kind_of else None

    return typed(msg_id, int), typed(corr_id, int), typed(sender, str), typed(kind, str)
