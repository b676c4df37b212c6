"""Pure pieces of the transport and runtime: liveness, log limiting, settings."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from actors import ActorStopped, ActorSystem, Config
from transport import LivenessTracker, LogLimiter, TransportConfig, check_endpoint


def test_a_watched_peer_heard_within_the_window_stays_alive() -> None:
    tracker = LivenessTracker(interval_s=1.0, liveness=3)
    tracker.watch("p", now=0.0)
    tracker.heard("p", now=2.5)
    assert tracker.expired(now=5.0) == []
    assert tracker.is_watched("p")


def test_a_silent_peer_expires_after_interval_times_liveness_and_is_no_longer_watched() -> None:
    tracker = LivenessTracker(interval_s=1.0, liveness=3)
    tracker.watch("p", now=0.0)
    assert tracker.expired(now=2.9) == []
    assert tracker.expired(now=3.5) == [("p", 3.5)]
    assert not tracker.is_watched("p")
    assert tracker.expired(now=10.0) == []


def test_frames_from_unwatched_peers_do_not_start_watching_them() -> None:
    tracker = LivenessTracker(interval_s=1.0, liveness=3)
    tracker.heard("stranger", now=1.0)
    assert tracker.watched == []


def test_watching_twice_does_not_reset_the_silence_clock() -> None:
    tracker = LivenessTracker(interval_s=1.0, liveness=2)
    tracker.watch("p", now=0.0)
    tracker.watch("p", now=1.9)
    assert [peer for peer, _ in tracker.expired(now=2.1)] == ["p"]


def test_pings_are_due_once_per_interval() -> None:
    tracker = LivenessTracker(interval_s=1.0, liveness=3)
    assert tracker.ping_due(now=0.0)
    assert not tracker.ping_due(now=0.5)
    assert tracker.next_deadline() == 1.0
    assert tracker.ping_due(now=1.0)


def test_a_watcher_stalled_past_the_window_does_not_blame_its_silent_peers() -> None:
    tracker = LivenessTracker(interval_s=0.1, liveness=5)
    assert tracker.ping_due(now=10.0)
    tracker.watch("p", now=10.0)
    # the owner's thread did not run for 2 s: no pings went out, so no pongs came back
    assert tracker.ping_due(now=12.0)
    assert tracker.expired(now=12.0) == []
    assert tracker.stalled_s == pytest.approx(1.9)
    assert tracker.ping_due(now=12.1)
    tracker.heard("p", now=12.1)
    assert tracker.expired(now=12.5) == []


def test_a_peer_silent_after_a_stall_still_expires_once_pings_go_unanswered() -> None:
    tracker = LivenessTracker(interval_s=0.1, liveness=5)
    assert tracker.ping_due(now=10.0)
    tracker.watch("p", now=10.0)
    assert tracker.ping_due(now=12.0)
    now = 12.0
    while not tracker.expired(now):
        now = round(now + 0.1, 3)
        assert tracker.ping_due(now)
        assert now < 13.0, "never expired"
    assert now == pytest.approx(12.5)


def test_the_log_limiter_allows_one_line_per_key_per_interval() -> None:
    limiter = LogLimiter(interval_s=10.0)
    assert limiter.allow("a", now=0.0)
    assert not limiter.allow("a", now=5.0)
    assert limiter.allow("b", now=5.0)
    assert limiter.allow("a", now=10.0)


def test_the_log_limiter_memory_is_bounded() -> None:
    limiter = LogLimiter(interval_s=10.0, max_keys=4)
    for i in range(4):
        assert limiter.allow(str(i), now=0.0)
    assert not limiter.allow("new", now=1.0)
    assert limiter.allow("new", now=11.0)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("port", -1),
        ("port", 70000),
        ("heartbeat_interval_s", 0),
        ("heartbeat_liveness", 0),
        ("heartbeat_liveness", 1.5),
        ("max_frame_bytes", "big"),
        ("send_hwm", True),
        ("dead_peer_quarantine_s", -1),
        ("answer_spin_s", -0.001),
        ("answer_spin_s", 1.0),
        ("io_spin_s", -1),
        ("io_spin_s", "fast"),
    ],
)
def test_a_bad_transport_setting_names_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"TransportConfig.{field}: expected"):
        TransportConfig(**{field: value})


def test_a_bad_runtime_setting_names_the_field() -> None:
    with pytest.raises(ValueError, match="Config.ask_timeout_s: expected a number > 0"):
        Config(ask_timeout_s=0)
    with pytest.raises(ValueError, match="Config.transport"):
        Config(transport={"port": 1})  # type: ignore[arg-type]


def test_the_quarantine_defaults_to_one_liveness_window() -> None:
    cfg = TransportConfig(heartbeat_interval_s=0.5, heartbeat_liveness=4)
    assert cfg.liveness_window_s == cfg.quarantine_s == 2.0


@pytest.mark.parametrize("address", ["tcp://10.0.0.1:80", "ipc:///tmp/x.sock", "tcp://[::1]:5555"])
def test_well_formed_addresses_are_accepted(address: str) -> None:
    assert check_endpoint(address) == address


@pytest.mark.parametrize("address", ["", "tcp://host", "tcp://host:0", "http://x:1", "ipc://", 5])
def test_malformed_addresses_are_refused_with_the_expected_forms(address: object) -> None:
    with pytest.raises(ValueError, match="tcp://host:port"):
        check_endpoint(address)  # type: ignore[arg-type]


def test_ipc_socket_files_of_processes_that_are_gone_are_swept_and_live_ones_kept(tmp_path: Path) -> None:
    import subprocess
    import sys

    from transport._endpoint import sweep_stale_ipc

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    dead = tmp_path / f"{int(gone.stdout)}-0123abcd.sock"
    alive = tmp_path / f"{os.getpid()}-89abcdef.sock"
    other = tmp_path / "notes.txt"
    for path in (dead, alive, other):
        path.write_text("")
    assert sweep_stale_ipc(str(tmp_path)) == 1
    assert not dead.exists() and alive.exists() and other.exists()


def test_a_silent_peer_whose_address_refuses_by_then_is_reported_as_gone_not_just_silent(system: ActorSystem, tmp_path: Path) -> None:
    path = str(tmp_path / "mute.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(path)
        listener.listen()
        listener.settimeout(5)
        answer = system.ref(f"ipc://{path}", "node").ask("anyone?", timeout=5)
        link, _ = listener.accept()  # the link is up, but nothing on it ever speaks
    with link:  # the listener is closed: nothing listens any more, and the link stays open
        with pytest.raises(ActorStopped, match="no heartbeat for .* and nothing listens at its address"):
            answer.get(5)
