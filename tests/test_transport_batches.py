"""Frames queued for one peer go out as one batch, decoded whole and refused
whole. The grouping is pure (no sockets); the wire is real ZeroMQ between a
transport and bare sockets."""

from __future__ import annotations

import functools
import threading
from typing import Any, Iterator

import msgpack
import pytest

from actors import ActorSystem
from protocol import OUT_OF_BAND_MIN, Data, Envelope, MalformedFrame, decode_envelope, encode_envelope
from tests.conftest import fast_config
from tests.helpers import Echo, RawSockets, wait_for
from transport import Transport, TransportConfig
from transport._batches import BATCH_MARK, MAX_BYTES, MAX_PARTS, EachError, SendGroups, join_batch, split_batch

FAST = {"heartbeat_interval_s": 0.05, "heartbeat_liveness": 4, "tick_s": 0.02}


# ---- grouping (pure) ------------------------------------------------------------------

def test_sends_for_one_peer_are_grouped_in_order_and_a_lone_frame_goes_as_it_is() -> None:
    groups = SendGroups()
    for peer, frame in [("a", b"1"), ("b", b"x"), ("a", b"2"), ("a", b"3")]:
        groups.add(peer, frame, None)
    taken = {peer: (frames, parts) for peer, frames, _, parts in groups.take()}
    assert taken == {"a": (join_batch([b"1", b"2", b"3"]), 3), "b": (b"x", 1)}
    assert list(groups.take()) == [], "taking empties the groups"


def test_a_long_group_is_split_by_parts_and_by_bytes() -> None:
    groups = SendGroups()
    for i in range(MAX_PARTS + 1):
        groups.add("a", b"%d" % i, None)
    assert [parts for *_, parts in groups.take()] == [MAX_PARTS, 1]
    big = b"x" * (MAX_BYTES // 2 + 1)
    for _ in range(3):
        groups.add("a", big, None)
    assert [parts for *_, parts in groups.take()] == [1, 1, 1], "two would exceed MAX_BYTES"


def test_no_batch_is_larger_than_the_frame_limit_a_receiver_holds_it_to() -> None:
    groups = SendGroups(max_bytes=100)
    for _ in range(5):
        groups.add("a", b"x" * 40, None)
    assert [parts for *_, parts in groups.take()] == [2, 2, 1]


def test_a_failed_batch_tells_every_sender_that_asked_to_know() -> None:
    told: list[tuple[str, str]] = []
    groups = SendGroups()
    groups.add("a", b"1", lambda exc: told.append(("first", str(exc))))
    groups.add("a", b"2", None)
    groups.add("a", b"3", lambda exc: told.append(("third", str(exc))))
    ((_, _, on_error, _),) = groups.take()
    assert isinstance(on_error, EachError)
    on_error(RuntimeError("gone"))
    assert told == [("first", "gone"), ("third", "gone")]


def test_a_failing_callback_does_not_keep_the_others_from_being_told() -> None:
    told: list[str] = []

    def bad(exc: Exception) -> None:
        raise ValueError("callback bug")

    with pytest.raises(ValueError, match="callback bug"):
        EachError([bad, lambda exc: told.append(str(exc))])(RuntimeError("gone"))
    assert told == ["gone"]


# ---- on the wire ----------------------------------------------------------------------

class RawPeer(RawSockets):
    """Bare sockets a transport sends to (and that may send to a target)."""

    def messages(self, timeout_ms: int, quiet_ms: int = 100) -> list[list[bytes]]:
        """What arrived (each message without its routing id), heartbeats left out."""
        return [frames for frames in super().messages(timeout_ms, quiet_ms)
                if frames[0] == BATCH_MARK or decode_envelope(frames[0], 1 << 30, frames[1:]).kind not in ("ping", "pong")]


@pytest.fixture
def target() -> Iterator[ActorSystem]:
    sys_ = ActorSystem(fast_config(max_frame_bytes=1 << 20, bad_frame_log_interval_s=60.0))
    sys_.spawn(Echo, name="echo")
    yield sys_
    sys_.shutdown()


@pytest.fixture
def raw(tmp_path: Any, target: ActorSystem) -> Iterator[RawPeer]:
    peer = RawPeer(str(tmp_path), target.address)
    yield peer
    peer.close()


def request(raw: RawPeer, msg_id: int, value: Any) -> bytes:
    return msgpack.packb([1, "data", msg_id, None, raw.address, "echo", None, 1, [value]])


def answers(raw: RawPeer) -> dict[int, Envelope]:
    found = {}
    for message in raw.messages(3000):
        for frame in split_batch(message[1:]) if message[0] == BATCH_MARK else message[:1]:
            env = decode_envelope(frame, 1 << 20)
            found[env.corr_id] = env
    return found


def test_a_batch_of_requests_is_served_each_answered(target: ActorSystem, raw: RawPeer) -> None:
    raw.out.send_multipart(join_batch([request(raw, i, f"v{i}") for i in range(1, 6)]))
    got = answers(raw)
    assert {i: env.body.value for i, env in got.items()} == {i: f"v{i}" for i in range(1, 6)}
    stats = target.statistics().transport
    assert stats.bad_frames == {} and stats.received >= 5


def test_a_batch_with_one_bad_part_is_refused_whole_counted_once_and_each_readable_id_answered(
    target: ActorSystem, raw: RawPeer
) -> None:
    bad = msgpack.packb([1, "launch_missiles", 3, None, raw.address, "echo", None, 1, [None]])
    raw.out.send_multipart(join_batch([request(raw, 1, "a"), request(raw, 2, "b"), bad, request(raw, 4, "d"), b"\xff\x00"]))
    got = answers(raw)
    assert sorted(got) == [1, 2, 3, 4], "the unreadable part has no id to answer"
    for env in got.values():
        assert env.kind == "error" and env.body.type_name == "UnknownKind"
        assert "refused whole: its frame 2" in env.body.message
    assert target.statistics().transport.bad_frames == {"unknown_kind": 1}
    raw.out.send(request(raw, 9, "after"))
    assert answers(raw)[9].body.value == "after", "the endpoint keeps serving"


def test_a_batch_whose_lengths_do_not_match_its_frames_is_refused_as_malformed(target: ActorSystem, raw: RawPeer) -> None:
    parts = join_batch([request(raw, 1, "a"), request(raw, 2, "b")])
    raw.out.send_multipart([BATCH_MARK, msgpack.packb([3, 4]), parts[2]])  # they add up to less than the frames
    raw.out.send_multipart([BATCH_MARK, b"\xc1", parts[2]])  # lengths that are not msgpack
    raw.out.send(request(raw, 3, "after"))
    assert {i: env.body.value for i, env in answers(raw).items()} == {3: "after"}, "nothing of them ran"
    assert target.statistics().transport.bad_frames == {"malformed": 2}


def test_a_batch_splits_back_into_its_frames_and_refuses_bad_lengths() -> None:
    frames = [b"\x91\x01", b"\x92\x01\x02", b"\xc0"]
    assert split_batch(join_batch(frames)[1:]) == frames
    for parts in ([], [msgpack.packb([2])], [msgpack.packb([2, 0]), b"ab"], [msgpack.packb(["2"]), b"ab"], [msgpack.packb({}), b""]):
        with pytest.raises(MalformedFrame):
            split_batch(parts)


def test_an_empty_batch_is_refused_as_malformed_and_the_endpoint_keeps_serving(target: ActorSystem, raw: RawPeer) -> None:
    raw.out.send(BATCH_MARK)
    raw.out.send(request(raw, 1, "after"))
    assert answers(raw)[1].body.value == "after"
    assert target.statistics().transport.bad_frames == {"malformed": 1}


class Sender:
    """A transport that, told "go" by another, sends frames from work deferred to its
    I/O thread (as a replica's answers are sent)."""

    def __init__(self) -> None:
        self.frames: list[Any] = []
        self.to = ""
        self.done = threading.Event()
        quiet = {**FAST, "heartbeat_interval_s": 5.0}  # a bare socket never answers a heartbeat
        self.transport = Transport(TransportConfig(**quiet), self._on_envelope, lambda peer, why: None)
        self.address = self.transport.start()
        self.carrier = Transport(TransportConfig(**FAST), lambda env: None, lambda peer, why: None)
        self.carrier.start()

    def _on_envelope(self, env: Envelope) -> None:
        for frame in self.frames:  # one piece of work per answer, as for requests received together
            self.transport.defer(functools.partial(self.transport.send_frame, self.to, frame), lambda work: None)
        self.transport.defer(self.done.set, lambda work: None)

    def data(self, msg_id: int, value: Any) -> Any:
        return encode_envelope(Envelope("data", Data(value), msg_id, None, self.address, "x"))

    def send_inline(self, frames: list[Any], to: str) -> None:
        self.frames, self.to = frames, to
        self.done.clear()
        self.carrier.send(self.address, Envelope("data", Data("go"), 0, None, self.carrier.address, "x"))
        wait_for(self.done.is_set, 5, "the inline work to run")

    def close(self) -> None:
        self.carrier.close()
        self.transport.close()


@pytest.fixture
def sender() -> Iterator[Sender]:
    made = Sender()
    yield made
    made.close()


def test_answers_sent_by_inline_work_go_out_as_one_batch_after_the_round(sender: Sender, tmp_path: Any) -> None:
    peer = RawPeer(str(tmp_path))
    try:
        sender.send_inline([sender.data(0, "first")], peer.address)
        assert len(peer.messages(3000)) == 1, "connected (the first send to a peer queues)"
        sender.send_inline([sender.data(i, i) for i in range(1, 11)], peer.address)
        messages = peer.messages(3000)
        assert len(messages) == 1 and messages[0][0] == BATCH_MARK
        assert [decode_envelope(f, 1 << 20).msg_id for f in split_batch(messages[0][1:])] == list(range(1, 11))
        assert sender.transport.statistics().sent >= 11
    finally:
        peer.close()


def test_a_frame_with_buffers_goes_alone_between_the_batches_around_it_in_order(sender: Sender, tmp_path: Any) -> None:
    peer = RawPeer(str(tmp_path))
    try:
        big = sender.data(3, b"x" * (OUT_OF_BAND_MIN * 2))
        assert type(big) is list, "an envelope with an out-of-band buffer"
        sender.send_inline([sender.data(1, 1), sender.data(2, 2), big, sender.data(4, 4)], peer.address)
        messages = peer.messages(3000)
        ids = []
        for message in messages:
            if message[0] == BATCH_MARK:
                ids.append([decode_envelope(f, 1 << 30).msg_id for f in split_batch(message[1:])])
            else:
                ids.append([decode_envelope(message[0], 1 << 30, message[1:]).msg_id])
        assert ids == [[1, 2], [3], [4]]
    finally:
        peer.close()


def test_asks_one_thread_has_in_flight_together_go_out_in_batches(system: ActorSystem, peer: Any) -> None:
    ref = system.ref(peer().address, "echo")
    assert ref.ask("warm", timeout=5).get(5) == "warm"  # a lone ask: straight out from the asking thread
    before = system.statistics().transport.batches_sent
    answers = [ref.ask(n, timeout=10) for n in range(300)]  # each after the first waits in the I/O thread's list
    assert [a.get(10) for a in answers] == list(range(300))
    assert system.statistics().transport.batches_sent > before, "the I/O thread sent what queued for the peer together"
