"""What a leading event loop sends in one turn goes out together at the turn's end.

A loop that leads the ROUTER (``_leader.py``) resumes many coroutines per turn
(one read completes many answers), and each sends its next request at once.
Sent one by one, every frame is a ZeroMQ send that wakes ZeroMQ's own I/O
thread, and a read on the receiving side. Corked, the frames of a turn leave
as one batch per peer (``_batches.py``): one send and one read for them all.

The transport sends what a cork holds (never this module):

- at the end of the turn that filled it (``loop.call_soon``);
- before a frame that cannot be corked (one with out-of-band buffers), so a
  peer gets the loop's frames in the order they were sent;
- before the loop blocks waiting for an answer (``RouterWatch.lead``);
- when the loop's lead ends, by whoever ends it: the loop giving it back, the
  I/O thread taking it from a loop that stopped turning (a frame corked for
  ``_LOOP_STALE_S`` counts as that: the loop is blocked by user code), the
  transport closing.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any, Callable

from ._batches import SendGroups

OnError = Callable[[Exception], None]


class Cork:
    """Frames a leading loop sent and the transport has not, oldest first.

    Only the loop's thread adds; any thread holding the transport's socket lock
    takes (``deque`` appends and pops are atomic, so nothing is taken twice or lost).

    Attributes:
        frames: ``(peer, frame, on_error)`` in the order sent.
        since: when the oldest frame waiting was added (``time.monotonic()``).
        scheduled: a send at the end of the turn is scheduled (the loop's thread only).
    """

    __slots__ = ("frames", "since", "scheduled")

    def __init__(self) -> None:
        self.frames: deque[tuple[str, bytes, OnError | None]] = deque()
        self.since = 0.0
        self.scheduled = False

    def add(self, peer: str, frame: bytes, on_error: OnError | None) -> bool:
        """Queue ``frame`` for ``peer``; True when the caller must schedule the send
        (none is scheduled yet)."""
        if not self.frames:
            self.since = time.monotonic()
        self.frames.append((peer, frame, on_error))
        if self.scheduled:
            return False
        self.scheduled = True
        return True

    def stale(self, now: float, after_s: float) -> bool:
        """Whether a frame has waited ``after_s`` or longer."""
        return bool(self.frames) and now - self.since >= after_s

    def take(self) -> list[tuple[str, bytes, OnError | None]]:
        """Every frame waiting, oldest first (the caller holds the socket lock)."""
        taken = []
        frames = self.frames
        while frames:
            try:
                taken.append(frames.popleft())
            except IndexError:  # pragma: no cover - only the lock holder pops
                break
        return taken

    def sort_out(self, direct: bool, connected: Callable[[str], bool], max_bytes: int) -> tuple[SendGroups, list[Any]]:
        """Take every frame: those that may go out now (``direct``: nothing waits in the
        hand-off queue, sent before them; and their peer has a socket) grouped by peer,
        and the rest, in order, for the hand-off queue (the caller holds the socket lock)."""
        groups, later = SendGroups(max_bytes), []
        for peer, frame, on_error in self.take():
            if direct and connected(peer):
                groups.add(peer, frame, on_error)
            else:
                later.append((peer, frame, on_error))
        return groups, later

    def __len__(self) -> int:
        return len(self.frames)

