"""Frames queued for one peer go out together: a batch is one multipart ZeroMQ
message of three parts, :data:`BATCH_MARK`, the msgpack array of its envelope
frames' lengths, and those frames end to end (one ZeroMQ part each would cost
a send and a receive per frame, about 1.5 us on each side). It is decoded
whole and refused whole (one bad part refuses every part, each answered by
its id when that can be read).

Only the I/O thread groups frames: what waited in the hand-off queue when it
drained it, in the order queued per peer. A frame with out-of-band buffers
goes alone, after the batch queued before it.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

import msgpack

from protocol import Envelope, FrameTooLarge, MalformedFrame, ProtocolError

from ._frames import BATCH_MARK, open_message

MAX_PARTS = 256
MAX_BYTES = 256 * 1024
_INT = {int}

OnError = Callable[[Exception], None]


class EachError:
    """The failure callback of a batch: tells every part's sender that had one."""

    __slots__ = ("callbacks",)

    def __init__(self, callbacks: list[OnError]) -> None:
        self.callbacks = callbacks

    def __call__(self, exc: Exception) -> None:
        first: Exception | None = None
        for callback in self.callbacks:
            try:
                callback(exc)
            except Exception as failed:  # the others are still told
                first = first or failed
        if first is not None:
            raise first


class SendGroups:
    """Single-frame sends taken off the hand-off queue, grouped by peer in order."""

    __slots__ = ("peers", "max_bytes")

    def __init__(self, max_bytes: int = MAX_BYTES) -> None:
        self.peers: dict[str, list[tuple[bytes, OnError | None]]] = {}
        self.max_bytes = min(max_bytes, MAX_BYTES)  # a receiver refuses a batch over its max_frame_bytes

    def add(self, peer: str, frame: bytes, on_error: OnError | None) -> None:
        """Queue ``frame`` for ``peer`` after what is queued for it already."""
        group = self.peers.get(peer)
        if group is None:
            self.peers[peer] = [(frame, on_error)]
        else:
            group.append((frame, on_error))

    def take(self) -> Iterator[tuple[str, Any, OnError | None, int]]:
        """Empty the groups: ``(peer, frame or batch frames, on_error, parts)``, each
        batch at most :data:`MAX_PARTS` parts and ``max_bytes`` in all."""
        peers, self.peers = self.peers, {}
        for peer, group in peers.items():
            frames = [f for f, _ in group]
            start = 0
            while start < len(group):
                end = self._chunk_end(frames, start)
                if end - start == 1:
                    yield peer, group[start][0], group[start][1], 1
                else:
                    errors = [e for _, e in group[start:end] if e is not None]
                    yield peer, join_batch(frames[start:end]), EachError(errors) if errors else None, end - start
                start = end

    def _chunk_end(self, frames: list[bytes], start: int) -> int:
        """Where the batch that begins at ``start`` ends: at most :data:`MAX_PARTS` frames
        and ``max_bytes`` (a frame alone may be larger)."""
        end = min(len(frames), start + MAX_PARTS)
        if sum(map(len, frames[start:end])) <= self.max_bytes:  # the common case, counted in C
            return end
        end, size = start, 0
        while end < len(frames) and end - start < MAX_PARTS and (end == start or size + len(frames[end]) <= self.max_bytes):
            size += len(frames[end])
            end += 1
        return end


def join_batch(frames: list[bytes]) -> list[bytes]:
    """The ZeroMQ parts of a batch of envelope frames (see the module docstring)."""
    return [BATCH_MARK, msgpack.packb([len(f) for f in frames]), b"".join(frames)]


def split_batch(parts: list[bytes]) -> list[bytes]:
    """The envelope frames of a batch, from the parts that followed its mark.

    Raises:
        MalformedFrame: not two parts, or lengths that are not positive ints adding up to the frames.
    """
    if len(parts) != 2:
        raise MalformedFrame(f"a batch of {len(parts)} parts after its mark (expected 2: lengths, frames)")
    try:
        lengths = msgpack.unpackb(parts[0])
    except Exception as exc:  # msgpack raises several unrelated types for bad input
        raise MalformedFrame(f"a batch whose lengths are not msgpack ({type(exc).__name__})") from None
    joined = parts[1]
    if (type(lengths) is not list or not lengths or set(map(type, lengths)) != _INT or min(lengths) <= 0
            or sum(lengths) != len(joined)):
        raise MalformedFrame(f"a batch whose lengths do not add up to its {len(joined)} bytes of frames")
    frames, at = [], 0
    for n in lengths:
        frames.append(joined[at:at + n])
        at += n
    return frames


def open_received(frame: bytes | None, buffers: list[Any], limit: int, allow_pickle: bool) -> list[tuple[Envelope, bytes]]:
    """Decode and validate what one ROUTER message held: an envelope (with its
    out-of-band buffers), or a batch of them.

    Returns:
        Each envelope with the frame it came in.

    Raises:
        ProtocolError: naming what was wrong; a batch with one bad part (or
            empty, or over ``limit`` in all) is refused whole.
    """
    if frame != BATCH_MARK:
        return [(open_message(frame, buffers, limit, allow_pickle), frame)]  # type: ignore[list-item]
    if not buffers:
        raise MalformedFrame("a batch with no parts")
    if sum(map(len, buffers)) > limit:  # a batch's parts are bytes (see ``receive``)
        raise FrameTooLarge(f"a batch of {len(buffers)} frames exceeds the limit of {limit} bytes")
    opened = []
    for i, part in enumerate(buffers):
        try:
            opened.append((open_message(part, [], limit, allow_pickle), part))
        except ProtocolError as err:
            raise type(err)(f"a batch of {len(buffers)} frames refused whole: its frame {i}: {err.detail}") from err
    return opened
