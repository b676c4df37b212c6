"""Settings of one process's transport."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ._curve import CurveKeys


def _require(ok: bool, field: str, expected: str, value: object) -> None:
    if not ok:
        raise ValueError(f"TransportConfig.{field}: expected {expected}, got {value!r}")


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class TransportConfig:
    """How a process binds, talks to peers and decides that a peer is dead.

    Attributes:
        host: None binds an ``ipc://`` endpoint (one host); an interface
            address (e.g. ``"127.0.0.1"``, ``"0.0.0.0"``) binds ``tcp://``.
        port: TCP port; 0 picks a free one.
        advertise_host: the host peers should dial when ``host`` is a wildcard.
        ipc_dir: directory for ipc endpoints (created with mode 0700);
            None uses ``<tempdir>/corral-<uid>``.
        heartbeat_interval_s: how often watched peers are pinged.
        heartbeat_liveness: missed intervals after which a peer is dead.
        max_frame_bytes: frames larger than this are rejected.
        send_hwm: messages queued towards one peer before sends to it fail.
        recv_hwm: messages queued on the receiving socket.
        handoff_capacity: messages waiting for the I/O thread before sends fail.
        linger_s: how long a clean shutdown waits to flush queued messages.
        bad_frame_log_interval_s: at most one log line per peer per interval.
        tick_s: period of the owner's tick callback (deadline sweeps).
        dead_peer_quarantine_s: how long sends to a peer found dead fail at
            once before a reconnect is tried; None means one liveness window.
        curve: the cluster's CurveZMQ keys: every connection is encrypted and
            only holders of the keys get in. None: no encryption (one host, or tests).
        direct_send: a sending thread writes to an open peer socket itself when
            nothing waits for the I/O thread (lower latency; under heavy load
            handing every frame to the I/O thread costs less CPU).
        inline_budget_s: work the I/O thread runs itself after a round of
            receiving (``Transport.defer``: a replica's sync method) may hold
            it this long: a round past it goes back to the sockets between two
            pieces, and a piece past it lets a standby thread take the sockets
            over (the rest of that round's work goes elsewhere). Wall time, so
            waiting for the GIL counts: the default is two of CPython's switch
            intervals (5 ms), or short work would look slow under load.
        answer_spin_s: a thread that waits for an answer and reads the socket itself
            polls it without sleeping for this long (per wait, yielding the CPU between
            polls) before it sleeps: an answer back within it costs no wake-up (about
            50 us here). It spends up to this much CPU per wait; 0 turns it off.
        io_spin_s: after a round with something to do, the I/O thread looks at its
            sockets again without sleeping for this long (yielding the CPU between
            looks) before it sleeps: what comes within it costs no wake-up. Under
            steady traffic it keeps a core busy; 0 turns it off.
    """

    host: str | None = None
    port: int = 0
    advertise_host: str | None = None
    ipc_dir: str | None = None
    heartbeat_interval_s: float = 1.0
    heartbeat_liveness: int = 5
    max_frame_bytes: int = 256 * 1024 * 1024
    send_hwm: int = 10_000
    recv_hwm: int = 10_000
    handoff_capacity: int = 65_536
    linger_s: float = 1.0
    bad_frame_log_interval_s: float = 10.0
    tick_s: float = 0.05
    dead_peer_quarantine_s: float | None = None
    curve: CurveKeys | None = None
    direct_send: bool = True
    inline_budget_s: float = 0.01
    answer_spin_s: float = 0.0002
    io_spin_s: float = 0.0002

    def __post_init__(self) -> None:
        curve: Any = self.curve
        if isinstance(curve, dict):
            object.__setattr__(self, "curve", CurveKeys(**curve))
        _require(self.curve is None or isinstance(self.curve, CurveKeys), "curve", "None or CurveKeys", curve)
        _require(self.host is None or isinstance(self.host, str), "host", "None or a host string", self.host)
        _require(isinstance(self.direct_send, bool), "direct_send", "a bool", self.direct_send)
        _require(type(self.port) is int and 0 <= self.port <= 65535, "port", "an int in 0..65535", self.port)
        for name in ("heartbeat_interval_s", "linger_s", "bad_frame_log_interval_s", "tick_s", "inline_budget_s"):
            value = getattr(self, name)
            _require(_is_number(value) and value > 0, name, "a number > 0", value)
        for name in ("heartbeat_liveness", "max_frame_bytes", "send_hwm", "recv_hwm", "handoff_capacity"):
            value = getattr(self, name)
            _require(type(value) is int and value > 0, name, "an int > 0", value)
        for name in ("answer_spin_s", "io_spin_s"):
            spin = getattr(self, name)
            _require(_is_number(spin) and 0 <= spin <= 0.01, name, "a number in 0..0.01", spin)
        quarantine = self.dead_peer_quarantine_s
        _require(
            quarantine is None or (_is_number(quarantine) and quarantine >= 0),
            "dead_peer_quarantine_s",
            "None or a number >= 0",
            quarantine,
        )

    @property
    def liveness_window_s(self) -> float:
        """Silence after which a watched peer is declared dead."""
        return self.heartbeat_interval_s * self.heartbeat_liveness

    @property
    def quarantine_s(self) -> float:
        """How long a dead peer's sends fail fast."""
        if self.dead_peer_quarantine_s is None:
            return self.liveness_window_s
        return self.dead_peer_quarantine_s
