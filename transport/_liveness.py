"""Pure heartbeat bookkeeping: who is watched, when to ping, who is dead."""

from __future__ import annotations

from typing import Callable


class LivenessTracker:
    """Tracks when each watched peer was last heard from.

    The owner calls :meth:`heard` for every frame a peer sends, asks
    :meth:`ping_due` whether to ping every watched peer now, and collects
    :meth:`expired` peers (which stop being watched).

    Silence is counted on a clock that stops while the owner itself was
    stalled: a ping that goes out more than one interval late (the owner's
    thread did not run) adds its lateness to a debt, and time in debt is not
    held against any peer, which sent no pong only because it got no ping.

    Args:
        interval_s: heartbeat interval.
        liveness: missed intervals after which a peer is dead.
    """

    def __init__(self, interval_s: float, liveness: int) -> None:
        self._interval = interval_s
        self._window = interval_s * liveness
        self._last_heard: dict[str, float] = {}  # on the clock that excludes stalls
        self._next_ping = 0.0
        self._stalled = 0.0

    @property
    def stalled_s(self) -> float:
        """Total time the owner's pings went out late, which no peer is blamed for."""
        return self._stalled

    def watch(self, peer: str, now: float) -> None:
        """Start watching a peer; silence is counted from ``now``."""
        self._last_heard.setdefault(peer, now - self._stalled)

    def heard(self, peer: str, now: float) -> None:
        """Record that a frame arrived from ``peer`` (ignored if not watched)."""
        if peer in self._last_heard:
            self._last_heard[peer] = now - self._stalled

    def forget(self, peer: str) -> None:
        """Stop watching a peer."""
        self._last_heard.pop(peer, None)

    def is_watched(self, peer: str) -> bool:
        """Whether ``peer`` is watched."""
        return peer in self._last_heard

    @property
    def watched(self) -> list[str]:
        """The watched peers."""
        return list(self._last_heard)

    def ping_due(self, now: float) -> bool:
        """Whether the watched peers should be pinged now; if so, schedules the next ping."""
        if now < self._next_ping:
            return False
        late = now - self._next_ping
        if self._next_ping and late > self._interval:
            self._stalled += late
        self._next_ping = now + self._interval
        return True

    def next_deadline(self) -> float:
        """The next time :meth:`ping_due` can return True."""
        return self._next_ping

    def expired(self, now: float) -> list[tuple[str, float]]:
        """Remove and return ``(peer, silence_s)`` for every peer silent past the window."""
        now -= self._stalled
        limit = now - self._window
        dead = [(peer, now - last) for peer, last in self._last_heard.items() if last < limit]
        for peer, _ in dead:
            del self._last_heard[peer]
        return dead


class LogLimiter:
    """Allows one log line per key per interval, with a bounded memory.

    Args:
        interval_s: minimum time between two lines for the same key.
        max_keys: keys remembered before old ones are purged.
    """

    def __init__(self, interval_s: float, max_keys: int = 1024) -> None:
        self._interval = interval_s
        self._max_keys = max_keys
        self._last: dict[str, float] = {}

    def allow(self, key: str, now: float) -> bool:
        """Whether a line for ``key`` may be logged at ``now``; records it if so."""
        last = self._last.get(key)
        if last is not None and now - last < self._interval:
            return False
        if len(self._last) >= self._max_keys:
            cutoff = now - self._interval
            self._last = {k: t for k, t in self._last.items() if t >= cutoff}
            if len(self._last) >= self._max_keys:
                return False
        self._last[key] = now
        return True


class Quarantine:
    """Peers found dead moments ago, to which sends fail at once (pure).

    Args:
        seconds: how long a peer stays in quarantine unless heard from.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.until: dict[str, float] = {}  # read on the hot path: empty most of the time
        self._reasons: dict[str, str] = {}

    def add(self, peer: str, reason: str, now: float, seconds: float | None = None) -> None:
        """``peer`` was found dead for ``reason``; quarantined ``seconds`` (default: :attr:`seconds`)."""
        self.until[peer] = now + (self.seconds if seconds is None else seconds)
        self._reasons[peer] = reason
        if len(self.until) > 4096:
            self.until = {p: t for p, t in self.until.items() if t > now}
            self._reasons = {p: r for p, r in self._reasons.items() if p in self.until}

    def reason(self, peer: str, now: float) -> str | None:
        """Why ``peer`` is in quarantine now, or None if it is not."""
        until = self.until.get(peer)
        if until is None or now >= until:
            return None
        return self._reasons.get(peer, "")

    def release(self, peer: str) -> None:
        """A live process is at ``peer`` again (it sent a frame, or we dial it anew)."""
        self.until.pop(peer, None)


class Incarnations:
    """Which process (by its random incarnation) answers at each peer address,
    so a process restarted at the same address is told apart from the old one.
    Bounded: past ``limit`` addresses, those without a socket are forgotten."""

    def __init__(self, limit: int = 4096) -> None:
        self._known: dict[str, str] = {}
        self._limit = limit

    def restarted(self, peer: str, incarnation: str, connected: Callable[[str], bool]) -> bool:
        """Note the incarnation a peer announced; True if another one answered there before."""
        known = self._known.get(peer)
        self._known[peer] = incarnation
        if known is None and len(self._known) > self._limit:
            self._known = {p: i for p, i in self._known.items() if connected(p) or p == peer}
        return known is not None and known != incarnation

    def forget(self, peer: str) -> None:
        """Whoever answers at ``peer`` next is simply new."""
        self._known.pop(peer, None)
