"""A snapshot of a transport's counters."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class TransportStatistics:
    """A snapshot of a transport's counters.

    Attributes:
        address: the bound address.
        sent: frames handed to ZeroMQ.
        received: frames received (good or bad).
        send_failures: frames that could not be sent (peer dead or full).
        bad_frames: rejected frames by reason (``"malformed"``, ``"too_large"``...).
        peers_connected: peers with an open sending socket.
        peers_watched: peers under heartbeat watch.
        peers_lost: peers declared dead or gone so far.
        handoff_queued: frames waiting for the I/O thread.
        handoff_capacity: the hand-off queue's bound.
        auth_failures: connections refused for not holding the cluster's keys.
        heartbeat_stalled_s: time this process's own heartbeats went out late
            (its I/O thread did not run), not held against silent peers.
        inline_takeovers: times a standby thread took the sockets because work
            run on the I/O thread (a sync method) ran past its budget or waited.
        caller_leads: times a thread, or an event loop, waiting for an answer began to read the ROUTER itself.
        batches_sent: sends that carried several frames for one peer at once (counted in ``sent`` one per frame).
    """

    address: str
    sent: int
    received: int
    send_failures: int
    bad_frames: dict[str, int] = field(default_factory=dict)
    peers_connected: int = 0
    peers_watched: int = 0
    peers_lost: int = 0
    handoff_queued: int = 0
    handoff_capacity: int = 0
    auth_failures: int = 0
    heartbeat_stalled_s: float = 0.0
    inline_takeovers: int = 0
    caller_leads: int = 0
    batches_sent: int = 0
