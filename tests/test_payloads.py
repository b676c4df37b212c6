"""Payload codecs, pure: what travels and how (no sockets)."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
import msgpack
from pydantic import BaseModel

from protocol import (
    OUT_OF_BAND_MIN,
    BadPayload,
    Data,
    Envelope,
    HandleRequest,
    decode_envelope,
    encode_envelope,
    seal,
    unseal,
)

LIMIT = 1 << 30


@dataclasses.dataclass
class Point:
    x: float
    label: str
    weights: Any = None
    hidden: int = dataclasses.field(default=0, init=False)


class Inner(BaseModel):
    name: str


class Order(BaseModel):
    item: Inner
    count: int
    tags: list[str] = []


def round_trip(value: Any, pickle: bool = False, accept_pickle: bool = False) -> tuple[Any, int]:
    """Send ``value`` as a reply's payload; returns what arrives and how many frames carried it."""
    frames = encode_envelope(Envelope("data", Data(value), 0, 1, "ipc://a", "", pickle=pickle))
    if isinstance(frames, bytes):
        frames = [frames]
    received = [memoryview(bytes(f)) for f in frames[1:]]  # as ZeroMQ hands them over
    return decode_envelope(frames[0], LIMIT, received, accept_pickle).body.value, len(frames)


def test_plain_msgpack_values_travel_in_one_frame() -> None:
    value = {"a": [1, 2.5, "x", None, True], "b": b"short"}
    assert round_trip(value) == (value, 1)


@pytest.mark.parametrize("dtype", ["int8", "uint64", "float16", "float64", "complex128", "bool", "datetime64[ms]", "U5"])
@pytest.mark.parametrize("shape", [(), (0,), (7,), (3, 4, 5)])
def test_numpy_arrays_keep_dtype_shape_and_values(dtype: str, shape: tuple[int, ...]) -> None:
    array = np.arange(int(np.prod(shape)) or 0).astype(dtype).reshape(shape)
    got, _ = round_trip(array)
    assert got.dtype == array.dtype and got.shape == array.shape and np.array_equal(got, array)


def test_fortran_order_is_kept_and_a_strided_view_arrives_contiguous() -> None:
    fortran = np.asfortranarray(np.random.default_rng(1).random((300, 200)))
    got, frames = round_trip(fortran)
    assert frames == 2 and got.flags.f_contiguous and not got.flags.c_contiguous and np.array_equal(got, fortran)
    strided = np.arange(10000).reshape(100, 100)[::3, ::2]
    got, _ = round_trip(strided)
    assert got.flags.c_contiguous and np.array_equal(got, strided)


def test_a_received_large_array_is_a_read_only_view_of_its_frame() -> None:
    array = np.ones(100_000)
    frames = encode_envelope(Envelope("data", Data(array), 0, 1, "ipc://a", ""))
    assert isinstance(frames, list) and len(frames) == 2
    assert frames[1].obj is not None and np.shares_memory(np.frombuffer(frames[1], dtype=np.float64), array), "not copied on the way out"
    frame = memoryview(bytearray(frames[1]))
    got = decode_envelope(frames[0], LIMIT, [frame.toreadonly()]).body.value
    assert not got.flags.writeable and np.shares_memory(got, np.frombuffer(frame, dtype=np.float64))


def test_structured_dtypes_and_numpy_scalars_round_trip() -> None:
    rows = np.array([(1, 2.5, [1, 2]), (3, 4.5, [3, 4])], dtype=[("a", "<i4"), ("b", "<f8"), ("c", "<i2", (2,))])
    got, _ = round_trip(rows)
    assert got.dtype == rows.dtype and got.tobytes() == rows.tobytes()
    scalar, _ = round_trip(np.float32(3.5))
    assert type(scalar) is np.float32 and scalar == 3.5


def test_buffers_keep_their_type_inside_lists_and_dicts() -> None:
    big = b"b" * OUT_OF_BAND_MIN
    value = {"small": b"s", "big": big, "ba": bytearray(b"xy" * 5000), "mv": memoryview(b"m" * 10), "list": [np.zeros(3), big]}
    got, frames = round_trip(value)
    assert frames == 4, "the three large buffers left the frame"
    assert got["small"] == b"s" and got["big"] == big and type(got["big"]) is bytes
    assert type(got["ba"]) is bytearray and got["ba"] == value["ba"]
    assert type(got["mv"]) is memoryview and bytes(got["mv"]) == b"m" * 10
    assert np.array_equal(got["list"][0], np.zeros(3)) and got["list"][1] == big


def test_dataclasses_and_pydantic_models_round_trip_with_nested_arrays() -> None:
    point = Point(1.5, "p", np.arange(20000.0))
    point.hidden = 7
    got, frames = round_trip(point)
    assert frames == 2 and type(got) is Point and got.hidden == 7 and np.array_equal(got.weights, point.weights)
    order = Order(item=Inner(name="tea"), count=2, tags=["hot"])
    assert round_trip(order)[0] == order


@pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")
def test_a_value_with_no_codec_names_its_type_and_path_and_how_to_opt_in() -> None:
    with pytest.raises(TypeError, match=r"value\[0\]\['images'\]\[1\]: cannot send numpy.matrix; .*serializer='pickle'"):
        encode_envelope(Envelope("handle_request", HandleRequest("m", [{"images": [np.zeros(2), np.matrix([[1]])]}], {}), 1, None, "a", "r"))
    with pytest.raises(TypeError, match=r"\.weights: cannot send a numpy array of dtype object"):
        encode_envelope(Envelope("data", Data(Point(1.0, "x", np.array([object()]))), 0, 1, "a", ""))


class Opaque:
    def __init__(self, data: np.ndarray) -> None:
        self.data = data


def test_pickle_travels_only_where_allowed_and_keeps_large_buffers_out_of_band() -> None:
    value = Opaque(np.arange(100_000))
    got, frames = round_trip(value, pickle=True, accept_pickle=True)
    assert frames == 2 and np.array_equal(got.data, value.data)
    with pytest.raises(BadPayload, match="accepts pickles only on a CURVE-authenticated or ipc transport"):
        round_trip(value, pickle=True, accept_pickle=False)


def test_sealed_bound_arguments_stay_sealed_on_the_way_and_open_at_the_end() -> None:
    args = [1, {"w": np.arange(5)}, Point(2.0, "q")]
    sealed = seal(args)
    assert sealed[0] == 1 and not isinstance(sealed[1]["w"], np.ndarray)
    passed_on, _ = round_trip(sealed)  # the controller's view: still sealed
    opened = unseal(passed_on)
    assert np.array_equal(opened[1]["w"], np.arange(5)) and opened[2] == Point(2.0, "q")


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(hnp.scalar_dtypes(), hnp.array_shapes(min_dims=0, max_dims=3, max_side=40)), st.sampled_from("CF"))
def test_any_scalar_dtype_any_shape_either_order_round_trips(array: np.ndarray, order: str) -> None:
    array = np.asarray(array, order=order)
    got, _ = round_trip([array])
    assert got[0].dtype == array.dtype and got[0].shape == array.shape
    assert got[0].tobytes(order="A") == array.tobytes(order="A"), "the same bits"
    assert got[0].flags.f_contiguous == array.flags.f_contiguous


def test_garbage_that_looks_like_a_payload_extension_is_judged_by_its_shape_first() -> None:
    from protocol import MalformedEnvelope, MalformedFrame

    with pytest.raises(MalformedEnvelope):
        decode_envelope(msgpack.packb(msgpack.ExtType(4, b"junk")), LIMIT)
    with pytest.raises(MalformedFrame):
        decode_envelope(msgpack.packb(msgpack.ExtType(4, b"junk")) + b"\xc1trailing", LIMIT)
    good_header = [1, "data", 7, None, "ipc://a", "echo", None, 1, [msgpack.ExtType(4, b"junk")]]
    with pytest.raises(BadPayload) as caught:
        decode_envelope(msgpack.packb(good_header), LIMIT)
    assert caught.value.msg_id == 7, "a bad payload in a good envelope is answered by its id"
