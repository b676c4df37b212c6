"""Real payloads through handles, across real worker and replica processes:
numpy arrays, buffers, dataclasses, pydantic models, pickle on request."""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import pytest

from actors import Config, ServeSettings, serve
from tests import serve_apps
from tests.conftest import FAST, fast_serve_config
from transport import TransportConfig


@pytest.fixture
def arrays_app(serve_cluster: Any) -> Any:
    return serve.run(serve_apps.Arrays.bind(np.arange(10.0)), name="arrays", route_prefix=None)


def test_a_numpy_array_round_trip_keeps_dtype_shape_order_and_values(arrays_app: Any) -> None:
    for array in (
        np.arange(24, dtype=np.int16).reshape(2, 3, 4),
        np.asfortranarray(np.random.default_rng(0).random((512, 300))),
        np.array([1 + 2j, 3 - 4j], dtype=np.complex64),
        np.zeros((0, 5), dtype=np.float32),
    ):
        got = arrays_app.echo.remote(array).result(timeout_s=30)
        assert got.dtype == array.dtype and got.shape == array.shape and np.array_equal(got, array)
        assert got.flags.f_contiguous == array.flags.f_contiguous and got.flags.c_contiguous == array.flags.c_contiguous
    assert not arrays_app.echo.remote(np.ones(100_000)).result(timeout_s=30).flags.writeable, "a view of the frame"


def test_arrays_work_in_bound_arguments_results_nested_values_and_streamed_chunks(arrays_app: Any) -> None:
    assert arrays_app.weights_sum.remote().result(timeout_s=10) == 45.0
    scaled = arrays_app.scaled.remote(np.ones((300, 300)), 2.5).result(timeout_s=30)
    assert scaled.shape == (300, 300) and float(scaled.sum()) == 2.5 * 300 * 300
    nested = {"images": [np.full(5000, 3, dtype=np.uint8), b"raw" * 5000], "meta": {"id": 7}}
    got = arrays_app.echo.remote(nested).result(timeout_s=30)
    assert np.array_equal(got["images"][0], nested["images"][0]) and got["images"][1] == nested["images"][1] and got["meta"] == {"id": 7}
    chunks = list(arrays_app.options(method_name="chunks", stream=True).remote(4, 10_000))
    assert [int(c[0]) for c in chunks] == [0, 1, 2, 3] and all(c.shape == (10_000,) for c in chunks)


def test_a_dataclass_and_a_pydantic_model_round_trip(arrays_app: Any) -> None:
    reading = serve_apps.Reading("t1", np.arange(3.0))
    got = arrays_app.echo.remote(reading).result(timeout_s=10)
    assert type(got) is serve_apps.Reading and got.sensor == "t1" and np.array_equal(got.values, reading.values)
    ticket = serve_apps.Ticket(title="show", seats=[1, 2])
    assert arrays_app.echo.remote(ticket).result(timeout_s=10) == ticket
    assert arrays_app.describe.remote(ticket).result(timeout_s=10) == "Ticket", "the replica gets the model, not a dict"


def test_a_value_with_no_codec_is_refused_before_anything_is_sent(arrays_app: Any) -> None:
    sent = arrays_app._router.statistics().sent if arrays_app._router else 0
    with pytest.raises(TypeError, match=r"argument 0\['x'\]\[1\]: cannot send tests.serve_apps.Unregistered; .*serializer='pickle'"):
        arrays_app.echo.remote({"x": [1, serve_apps.Unregistered(1)]})
    assert (arrays_app._router.statistics().sent if arrays_app._router else 0) == sent


def test_a_value_with_no_codec_is_refused_even_when_the_request_would_wait_at_the_handle(serve_cluster: Any) -> None:
    handle = serve.run(serve_apps.Echo.options(num_replicas=1, max_ongoing_requests=1).bind(), name="busy", route_prefix=None)
    busy = handle.slow.remote(1.0)  # holds the only slot: the next request would be queued
    with pytest.raises(TypeError, match=r"argument 0\['x'\]\[1\]: cannot send tests.serve_apps.Unregistered"):
        handle.remote({"x": [1, serve_apps.Unregistered(1)]})
    assert handle._router.statistics().queued == 0, "nothing of the refused request is left queued"
    assert busy.result(timeout_s=30) == "slept 1.0" and handle.remote("after").result(timeout_s=30) == "after"


def test_a_pickle_opted_deployment_takes_any_object_on_a_local_cluster(serve_cluster: Any) -> None:
    handle = serve.run(serve_apps.Arrays.options(serializer="pickle").bind(serve_apps.Unregistered(np.arange(4))), name="pickled", route_prefix=None)
    got = handle.echo.remote(serve_apps.Unregistered(np.arange(200_000))).result(timeout_s=30)
    assert type(got) is serve_apps.Unregistered and np.array_equal(got.payload, np.arange(200_000))


@pytest.fixture
def tcp_cluster() -> Iterator[Any]:
    """A cluster on plain TCP without CurveZMQ keys."""
    config = Config(
        transport=TransportConfig(host="127.0.0.1", **FAST),  # type: ignore[arg-type]
        ask_timeout_s=10.0,
        serve=ServeSettings(reconcile_interval_s=0.05, run_timeout_s=60.0, request_timeout_s=30.0),
    )
    serve.start(workers=1, config=config, http_options={"port": 0})
    try:
        yield serve
    finally:
        serve.shutdown()


def test_the_pickle_opt_in_is_refused_on_an_unauthenticated_tcp_cluster(tcp_cluster: Any) -> None:
    with pytest.raises(Exception, match=r"serializer='pickle' \(its own or ServeSettings.serializer\) is refused on this cluster: its transport is plain TCP without CurveZMQ"):
        serve.run(serve_apps.Arrays.options(serializer="pickle").bind(), name="pickled", route_prefix=None)
    assert "pickled" not in serve.status().applications
    assert serve.run(serve_apps.Arrays.bind(), name="plain", route_prefix=None).echo.remote(np.arange(3)).result(timeout_s=10).tolist() == [0, 1, 2]


@pytest.fixture
def small_frames() -> Iterator[Any]:
    base = fast_serve_config()
    serve.start(workers=1, config=Config(transport=TransportConfig(**FAST, max_frame_bytes=1 << 20), ask_timeout_s=10.0, serve=base.serve), http_options={"port": 0})  # type: ignore[arg-type]
    try:
        yield serve
    finally:
        serve.shutdown()


def test_a_message_over_the_transports_limit_is_refused_naming_the_limit(small_frames: Any) -> None:
    handle = serve.run(serve_apps.Arrays.bind(), name="small", route_prefix=None)
    with pytest.raises(Exception, match=r"exceeds the transport's limit of 1048576 bytes \(TransportConfig.max_frame_bytes"):
        handle.echo.remote(np.zeros(2 << 20, dtype=np.uint8)).result(timeout_s=10)
    assert handle.echo.remote(np.zeros(1000)).result(timeout_s=10).shape == (1000,)


@pytest.fixture
def pickling_cluster() -> Iterator[Any]:
    """A local (ipc) cluster whose every deployment may pickle."""
    base = fast_serve_config()
    serve.start(workers=1, config=Config(transport=base.transport, ask_timeout_s=10.0,
                                         serve=ServeSettings(reconcile_interval_s=0.05, serializer="pickle")), http_options={"port": 0})
    try:
        yield serve
    finally:
        serve.shutdown()


def test_the_cluster_wide_pickle_opt_in_covers_every_deployment(pickling_cluster: Any) -> None:
    handle = serve.run(serve_apps.Arrays.bind(serve_apps.Unregistered(1)), name="cluster-pickled", route_prefix=None)
    got = handle.echo.remote(serve_apps.Unregistered({"k": np.arange(3)})).result(timeout_s=30)
    assert type(got) is serve_apps.Unregistered and got.payload["k"].tolist() == [0, 1, 2]
