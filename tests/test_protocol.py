"""The wire protocol: round trips of every message type, and every way a frame can be bad."""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import protocol
from protocol import (
    Payload,
    Data,
    Envelope,
    FrameTooLarge,
    InvalidField,
    MalformedEnvelope,
    MalformedFrame,
    ProtocolError,
    UnknownKind,
    UnsupportedVersion,
    decode_envelope,
    encode_envelope,
    message,
    peek_error_route,
    registered_kinds,
)

LIMIT = 1 << 20

msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def strategy_for(annotation: Any) -> st.SearchStrategy[Any]:
    """A hypothesis strategy producing valid values of a field annotation."""
    if annotation is Any or annotation is Payload:
        return msgpack_values
    simple = {
        int: st.integers(min_value=-(2**63), max_value=2**63 - 1),
        float: st.floats(allow_nan=False),
        str: st.text(max_size=30),
        bytes: st.binary(max_size=30),
        bool: st.booleans(),
    }
    if annotation in simple:
        return simple[annotation]
    if isinstance(annotation, type) and hasattr(annotation, "__wire_kind__"):
        return instances_of(annotation)
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return st.one_of(*[st.none() if a is type(None) else strategy_for(a) for a in args])
    if origin is list:
        return st.lists(strategy_for(args[0]), max_size=4)
    if origin is dict:
        return st.dictionaries(st.text(max_size=8), strategy_for(args[1]), max_size=4)
    raise AssertionError(f"no strategy for {annotation!r}")


def instances_of(cls: type) -> st.SearchStrategy[Any]:
    hints = typing.get_type_hints(cls)
    fields = {f.name: strategy_for(hints[f.name]) for f in dataclasses.fields(cls)}
    return st.builds(cls, **fields)


envelopes = st.sampled_from(sorted(registered_kinds().items())).flatmap(
    lambda item: st.builds(
        Envelope,
        kind=st.just(item[0]),
        body=instances_of(item[1]),
        msg_id=st.integers(min_value=0, max_value=2**63 - 1),
        corr_id=st.none() | st.integers(min_value=0, max_value=2**63 - 1),
        sender=st.text(max_size=40),
        target=st.text(max_size=20),
        deadline=st.none() | st.floats(min_value=0, max_value=2e9),
        wants_reply=st.booleans(),
    )
)


@message("test_nested_inner")
@dataclasses.dataclass(frozen=True, slots=True)
class Inner:
    name: str
    weight: float = 1.0


@message("test_nested_outer")
@dataclasses.dataclass(frozen=True, slots=True)
class Outer:
    items: list[Inner]
    by_name: dict[str, Inner]
    best: Inner | None
    tags: list[str]
    count: int = 0


@settings(max_examples=300, deadline=None)
@given(envelopes)
def test_every_registered_message_type_survives_a_round_trip(env: Envelope) -> None:
    assert decode_envelope(encode_envelope(env), LIMIT) == env


def test_every_message_type_is_exercised_by_the_round_trip_property() -> None:
    kinds = registered_kinds()
    for expected in ("data", "error", "ping", "pong", "bye", "watch", "unwatch", "actor_died"):
        assert expected in kinds


def test_nested_messages_are_encoded_as_arrays_and_decoded_back_to_their_types() -> None:
    outer = Outer([Inner("a")], {"b": Inner("b", 2.0)}, None, ["x"], 3)
    env = Envelope("test_nested_outer", outer, msg_id=1)
    raw = msgpack.unpackb(encode_envelope(env))
    assert raw[8][0] == [["a", 1.0]]
    back = decode_envelope(encode_envelope(env), LIMIT).body
    assert back == outer and type(back.items[0]) is Inner


@message("test_every_field_type")
@dataclasses.dataclass(frozen=True, slots=True)
class EveryField:
    n: int
    s: str
    b: bytes
    flag: bool
    x: float
    maybe: str | None
    maybe_n: int | None
    anything: Any
    payload: Payload
    numbers: list[int]
    counts: dict[str, int]
    inner: Inner
    last: str = "default"


every_field_bodies = st.tuples(
    st.integers(min_value=-(2**63), max_value=2**63 - 1), st.text(max_size=8), st.binary(max_size=8), st.booleans(),
    st.floats(allow_nan=False) | st.integers(min_value=-(2**53), max_value=2**53), st.none() | st.text(max_size=4),
    st.none() | st.integers(min_value=0, max_value=9), msgpack_values, msgpack_values,
    st.lists(st.integers(min_value=0, max_value=9), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(min_value=0, max_value=9), max_size=3),
    st.tuples(st.text(max_size=3), st.floats(allow_nan=False)).map(list), st.text(max_size=4),
).map(list)


@settings(max_examples=200, deadline=None)
@given(every_field_bodies)
def test_a_kind_decodes_a_body_to_the_same_message_as_field_by_field_validation(body: list[Any]) -> None:
    fast = protocol.decoder_for("test_every_field_type")(body)
    assert fast == protocol.decode_fields(EveryField, body, "test_every_field_type")
    assert type(fast) is EveryField and type(fast.x) is float and type(fast.inner) is Inner
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.n = 1  # type: ignore[misc]


GOOD_EVERY = [1, "s", b"b", True, 1.5, None, 3, {"k": [1]}, [1, 2], [1], {"a": 1}, ["in", 2.0]]


@pytest.mark.parametrize(
    ("index", "bad", "field"),
    [(0, "1", "n"), (0, True, "n"), (1, 1, "s"), (2, "b", "b"), (3, 1, "flag"), (4, "1.5", "x"),
     (5, 5, "maybe"), (6, 1.0, "maybe_n"), (9, ["1"], "numbers[0]"), (10, {"a": "1"}, "counts.a"), (11, ["in", "x"], "inner.weight")],
)
def test_a_field_of_the_wrong_type_is_named_by_the_decoder(index: int, bad: Any, field: str) -> None:
    body = list(GOOD_EVERY)
    body[index] = bad
    with pytest.raises(InvalidField, match=rf"test_every_field_type\.{re.escape(field)}"):
        protocol.decoder_for("test_every_field_type")(body)


def test_a_body_without_its_defaulted_fields_gets_their_defaults() -> None:
    assert protocol.decoder_for("test_every_field_type")(GOOD_EVERY).last == "default"


def test_a_message_with_a_post_init_is_built_through_its_init() -> None:
    @message("test_post_init")
    @dataclasses.dataclass(frozen=True, slots=True)
    class Checked:
        n: int

        def __post_init__(self) -> None:
            if self.n < 0:
                raise ValueError("n must not be negative")

    assert protocol.decoder_for("test_post_init")([3]) == Checked(3)
    with pytest.raises(ValueError, match="negative"):
        protocol.decoder_for("test_post_init")([-1])


def test_an_int_is_accepted_where_a_float_is_declared() -> None:
    frame = msgpack.packb([1, "test_nested_inner", 1, None, "s", "t", None, 0, ["a", 3]])
    assert decode_envelope(frame, LIMIT).body == Inner("a", 3.0)


def test_encoding_a_value_msgpack_cannot_carry_raises_a_type_error_naming_the_kind() -> None:
    with pytest.raises(TypeError, match="'data'.*object"):
        encode_envelope(Envelope("data", Data(object())))


def test_registering_a_kind_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="already registered"):

        @message("data")
        @dataclasses.dataclass(frozen=True)
        class Again:
            x: int


def test_a_field_type_the_wire_cannot_carry_is_refused_at_declaration() -> None:
    with pytest.raises(TypeError, match="unsupported field type"):

        @message("test_bad_field")
        @dataclasses.dataclass(frozen=True)
        class Bad:
            x: set[int]


def frame_of(*header: Any) -> bytes:
    return msgpack.packb(list(header))


GOOD = [1, "watch", 7, None, "ipc://me", "", None, 1, ["actor"]]


@pytest.mark.parametrize(
    ("frame", "error", "text"),
    [
        (b"\xff\x00garbage", MalformedFrame, "not a valid msgpack frame"),
        (frame_of(*GOOD)[:-3], MalformedFrame, "not a valid msgpack frame"),
        (frame_of(*GOOD) + b"\x01", MalformedFrame, "not a valid msgpack frame"),
        (b"\xc6\xff\xff\xff\xff", MalformedFrame, "not a valid msgpack frame"),
        (msgpack.packb({"kind": "watch"}), MalformedEnvelope, "envelope array of 9"),
        (frame_of(*GOOD[:5]), MalformedEnvelope, "array of 5"),
        (frame_of(2, *GOOD[1:]), UnsupportedVersion, "version 2"),
        (frame_of("1", *GOOD[1:]), MalformedEnvelope, "version"),
        (frame_of(1, 5, *GOOD[2:]), MalformedEnvelope, "kind"),
        (frame_of(*GOOD[:2], "7", *GOOD[3:]), MalformedEnvelope, "msg_id"),
        (frame_of(*GOOD[:4], 5, *GOOD[5:]), MalformedEnvelope, "sender"),
        (frame_of(*GOOD[:6], "soon", *GOOD[7:]), MalformedEnvelope, "deadline"),
        (frame_of(1, "no_such_kind", *GOOD[2:]), UnknownKind, "no_such_kind"),
        (frame_of(*GOOD[:8], [5]), InvalidField, r"watch\.actor: expected str, got int"),
        (frame_of(*GOOD[:8], []), InvalidField, "expected 1..1 fields, got 0"),
        (frame_of(*GOOD[:8], "actor"), InvalidField, "expected an array of fields"),
        (frame_of(1, "test_nested_outer", 1, None, "s", "", None, 0, [[["a", "x"]], {}, None, []]),
         InvalidField, r"items\[0\]\.weight: expected float, got str"),
    ],
)
def test_a_bad_frame_is_rejected_with_an_error_naming_what_was_wrong(frame: bytes, error: type, text: str) -> None:
    with pytest.raises(error, match=text) as info:
        decode_envelope(frame, LIMIT)
    assert isinstance(info.value, ProtocolError)
    assert info.value.reason


def test_a_frame_over_the_limit_is_rejected_before_parsing() -> None:
    with pytest.raises(FrameTooLarge, match="exceeds the limit of 100 bytes") as info:
        decode_envelope(b"\x00" * 101, 100)
    assert info.value.reason == "too_large"


def test_header_fields_read_before_a_body_error_are_kept_for_the_error_answer() -> None:
    with pytest.raises(InvalidField) as info:
        decode_envelope(frame_of(*GOOD[:8], [5]), LIMIT)
    assert (info.value.msg_id, info.value.sender, info.value.kind) == (7, "ipc://me", "watch")


def test_the_error_route_can_be_read_from_the_prefix_of_a_truncated_or_huge_frame() -> None:
    frame = frame_of(1, "data", 42, None, "ipc://x", "t", None, 1, [b"\x00" * 100_000])
    assert peek_error_route(frame[:50]) == (42, None, "ipc://x", "data")
    assert peek_error_route(frame) == (42, None, "ipc://x", "data")
    assert peek_error_route(b"\xff\xfe") == (None, None, None, None)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_either_decode_or_raise_a_protocol_error(data: bytes) -> None:
    try:
        decode_envelope(data, LIMIT)
    except ProtocolError:
        pass
    peek_error_route(data)


@settings(max_examples=300, deadline=None)
@given(envelopes, st.data())
def test_mutated_frames_either_decode_or_raise_a_protocol_error(env: Envelope, data: st.DataObject) -> None:
    frame = bytearray(encode_envelope(env))
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(frame) - 1))
        frame[pos] = data.draw(st.integers(0, 255))
    try:
        decoded = decode_envelope(bytes(frame), LIMIT)
    except ProtocolError:
        return
    assert decoded.kind in registered_kinds()


def test_the_package_reexports_everything_it_documents() -> None:
    for name in protocol.__all__:
        assert hasattr(protocol, name)


@pytest.mark.parametrize("stream, pickle", [(False, False), (True, False), (False, True)])
def test_a_request_encoded_on_the_hot_path_is_the_frame_of_its_envelope(stream: bool, pickle: bool) -> None:
    for body in (protocol.HandleRequest("__call__", [[1, "x", None]], {"k": 2.5}, ""), protocol.Data(b"y" * 20_000)):
        env = Envelope(body.__wire_kind__, body, 7, None, "ipc://me", "actor", 123.5, True, stream=stream, pickle=pickle)
        frame = protocol.encode_request(body.__wire_kind__, body, 7, "ipc://me", "actor", 123.5, stream, pickle)
        assert frame == encode_envelope(env)
    with pytest.raises(TypeError, match="cannot encode message 'data'"):
        protocol.encode_request("data", protocol.Data(object()), 8, "ipc://me", "actor", None)


@given(value=msgpack_values, pickle=st.booleans())
@settings(max_examples=200, deadline=None)
def test_a_plain_answer_encoded_on_the_hot_path_is_the_frame_of_its_envelope_or_left_to_it(value: Any, pickle: bool) -> None:
    frame = protocol.encode_data_reply(value, 7, "ipc://me", pickle)
    if frame is None:  # needs the full encoder: a value it takes as it is, no buffer of its own
        return
    assert frame == encode_envelope(Envelope("data", protocol.Data(value), 0, 7, "ipc://me", "", pickle=pickle))
    assert decode_envelope(frame, 1 << 20).body == protocol.Data(value)


def test_a_frame_the_plain_packer_refused_midway_leaves_nothing_behind_in_it_for_the_next_frame() -> None:
    header = [protocol.PROTOCOL_VERSION, "data", 0, 7, "ipc://me", "", None, 0]
    for refused in ([1, "x" * 300, (2, 3)], [{"k": [1, 2]}, object()]):  # refused after part of it was packed
        assert protocol.encode_data_reply(refused, 7, "ipc://me") is None
        assert protocol.encode_data_reply([1, "two"], 7, "ipc://me") == msgpack.packb([*header, [[1, "two"]]], use_bin_type=True)


def test_an_answer_the_hot_path_cannot_encode_as_it_is_is_left_to_the_full_encoder() -> None:
    for value in ((1, 2), b"y" * 20_000, object()):
        assert protocol.encode_data_reply(value, 7, "ipc://me") is None
    assert protocol.encode_data_reply([1, "two", None, {"k": b"v"}], 7, "ipc://me") is not None
