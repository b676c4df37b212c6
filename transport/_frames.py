"""Messages of one or more frames: their size, and reading one off a ROUTER."""

from __future__ import annotations

from typing import Any

import zmq

from protocol import Envelope, FrameTooLarge, MalformedFrame, decode_envelope

_NOBLOCK = int(zmq.NOBLOCK)
#: plain ints: ``getsockopt(zmq.EVENTS) & zmq.POLLIN`` with pyzmq's enums builds two more enums
EVENTS, POLLIN = int(zmq.EVENTS), int(zmq.POLLIN)

#: The first frame of a batch (see ``_batches.py``). 0xc1 never starts a msgpack value: no envelope frame reads like it.
BATCH_MARK = b"\xc1corral-batch"


def message_size(frame: Any) -> int:
    """Bytes in a frame, or in a list of frames (an envelope and its buffers)."""
    if type(frame) is list:
        return sum(part.nbytes if type(part) is memoryview else len(part) for part in frame)
    return len(frame)


def check_size(frame: Any, limit: int) -> None:
    """Refuse to send a message over the limit.

    Raises:
        FrameTooLarge: naming the size, the limit and how to raise it.
    """
    size = message_size(frame)
    if size > limit:
        raise FrameTooLarge(
            f"a message of {size} bytes exceeds the transport's limit of {limit} bytes "
            "(TransportConfig.max_frame_bytes: raise it in the Config of every process of the cluster)"
        )


def has_message(sock: zmq.Socket) -> bool:
    """Whether a message waits on ``sock`` (ZeroMQ's edge-triggered descriptor may not say so)."""
    return bool(sock.getsockopt(EVENTS) & POLLIN)


def receive(router: zmq.Socket) -> tuple[bytes, bytes | None, list[memoryview]]:
    """One message off a ROUTER: the sender's identity, the envelope's frame
    (None if there is none) and the out-of-band buffers, left where ZeroMQ
    received them (not copied) and read-only, as Ray's zero-copy arrays are.

    Raises:
        zmq.Again: nothing waits.
    """
    # whole frames, not recv() and getsockopt(RCVMORE): pyzmq's getsockopt builds an enum per
    # call, which costs more than the frame object (whose ``more`` is read in C)
    part = router.recv(_NOBLOCK, copy=False)
    identity = part.bytes
    if not part.more:
        return identity, None, []
    part = router.recv(_NOBLOCK, copy=False)
    frame = part.bytes
    buffers: list[Any] = []
    if frame == BATCH_MARK:  # a batch's parts: small envelope frames, cheaper copied than kept
        while part.more:
            part = router.recv(_NOBLOCK, copy=False)
            buffers.append(part.bytes)
        return identity, frame, buffers
    while part.more:
        part = router.recv(_NOBLOCK, copy=False)
        buffers.append(part.buffer.toreadonly())
    return identity, frame, buffers


def open_message(frame: bytes | None, buffers: list[memoryview], limit: int, allow_pickle: bool) -> Envelope:
    """Decode and validate a received message (its envelope frame and buffers).

    Raises:
        ProtocolError: a subclass naming what was wrong (no frame, too large, ...).
    """
    if frame is None:
        raise MalformedFrame("a message with no frame")
    if buffers and message_size([frame, *buffers]) > limit:
        raise FrameTooLarge(f"a message of {len(buffers) + 1} frames exceeds the limit of {limit} bytes")
    return decode_envelope(frame, limit, buffers, allow_pickle)
