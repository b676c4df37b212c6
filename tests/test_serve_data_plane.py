"""The data plane end to end: handles, routing, backpressure, composition, streaming."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import time
from typing import Any

import pytest

from actors import serve
from actors.serve import BackPressureError, DeploymentHandle, DeploymentNotFoundError, DeploymentOptionError, ReplicaDiedError
from actors.serve._api import current_session
from tests import serve_apps
from tests.helpers import Traffic, wait_for


def test_a_bound_deployment_reaches_the_ingress_constructor_as_a_handle(serve_cluster: Any) -> None:
    app = serve_apps.Ingress.bind(serve_apps.Model.bind(3.0), 1.0)
    handle = serve.run(app, name="composed", route_prefix=None)
    assert handle.remote(2.0).result(timeout_s=10) == 7.0
    status = serve.status().applications["composed"]
    assert status.ingress == "Ingress" and set(status.deployments) == {"Ingress", "Model"}


def test_a_response_passed_to_another_call_is_resolved_first(serve_cluster: Any) -> None:
    handle = serve.run(serve_apps.Ingress.bind(serve_apps.Model.bind(2.0), 0.0), name="chain", route_prefix=None)
    assert handle.chained.remote(5.0).result(timeout_s=10) == 20.0
    model = serve.get_deployment_handle("Model", "chain")
    first = model.remote(1.5)
    assert model.remote(first).result(timeout_s=10) == 6.0


def test_a_response_that_failed_fails_the_call_it_was_passed_to(serve_cluster: Any) -> None:
    handle = serve.run(serve_apps.Echo.bind(), name="failchain", route_prefix=None)
    broken = handle.fail.remote("upstream broke")
    with pytest.raises(ValueError, match="upstream broke"):
        handle.remote(broken).result(timeout_s=10)


def test_app_and_deployment_handles_are_found_by_name(serve_cluster: Any) -> None:
    serve.run(serve_apps.Ingress.bind(serve_apps.Model.bind(1.0), 0.5), name="named", route_prefix=None)
    assert serve.get_app_handle("named").remote(1.0).result(timeout_s=10) == 1.5
    assert serve.get_deployment_handle("Model", "named").remote(4.0).result(timeout_s=10) == 4.0
    with pytest.raises(DeploymentNotFoundError, match="no application named 'nope'"):
        serve.get_app_handle("nope")
    with pytest.raises(DeploymentNotFoundError, match="no deployment 'Nope' in application 'named'"):
        serve.get_deployment_handle("Nope", "named")


def test_a_generator_method_streams_its_results_with_for(serve_cluster: Any) -> None:
    handle = serve.run(serve_apps.Model.bind(1.0), name="stream", route_prefix=None)
    assert list(handle.options(stream=True).tokens.remote(200)) == [f"tok{i}" for i in range(200)]


def test_an_async_generator_streams_with_async_for(serve_cluster: Any) -> None:
    handle = serve.run(serve_apps.Model.bind(1.0), name="astream", route_prefix=None)

    async def main() -> list[Any]:
        return [item async for item in handle.options(stream=True, method_name="atokens").remote(50)]

    assert asyncio.run(main()) == [{"i": i} for i in range(50)]


def test_a_replica_can_relay_a_stream_from_another_deployment(serve_cluster: Any) -> None:
    handle = serve.run(serve_apps.Ingress.bind(serve_apps.Model.bind(1.0), 0.0), name="relay", route_prefix=None)
    assert handle.relay.remote(5).result(timeout_s=10) == [f"tok{i}" for i in range(5)]


def test_a_stream_that_raises_delivers_what_came_before_then_the_error(serve_cluster: Any) -> None:
    handle = serve.run(serve_apps.Model.bind(1.0), name="brokenstream", route_prefix=None)
    stream = handle.options(stream=True).broken_stream.remote()
    assert next(stream) == "first"
    with pytest.raises(KeyError, match="second is missing"):
        next(stream)


def test_stream_true_must_match_the_kind_of_method(serve_cluster: Any) -> None:
    handle = serve.run(serve_apps.Model.bind(1.0), name="mismatch", route_prefix=None)
    with pytest.raises(TypeError, match="is a generator; call it with handle.options"):
        handle.tokens.remote(3).result(timeout_s=10)
    with pytest.raises(TypeError, match="returned float, not a generator; call it without stream=True"):
        list(handle.options(stream=True).remote(3.0))


def test_responses_can_be_awaited_concurrently_from_asyncio(serve_cluster: Any) -> None:
    handle = serve.run(serve_apps.Echo.bind("a:"), name="awaits", route_prefix=None)

    async def main() -> list[Any]:
        return list(await asyncio.gather(*(handle.remote(i) for i in range(100))))

    assert asyncio.run(main()) == [f"a:{i}" for i in range(100)]


def test_answered_requests_leave_no_reference_cycle_for_the_garbage_collector(serve_cluster: Any) -> None:
    # a cycle per request (the call and its attempt held each other) made the collector run every
    # few dozen requests under load: a seventh of the client's CPU
    handle = serve.run(serve_apps.Echo.bind("c:"), name="no-cycles", route_prefix=None)
    handle.remote(0).result(timeout_s=10)

    async def awaited() -> None:
        await asyncio.gather(*(handle.remote(i) for i in range(100)))

    request_types = {"Call", "Attempt", "HandleRequest", "DeploymentResponse", "Future", "Pending"}
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        for i in range(100):
            assert handle.remote(i).result(timeout_s=10) == f"c:{i}"
        asyncio.run(awaited())
        gc.collect()
        left = [type(o).__name__ for o in gc.garbage if type(o).__name__ in request_types]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    assert left == []


def test_sync_methods_run_concurrently_up_to_max_ongoing_requests(serve_cluster: Any) -> None:
    handle = serve.run(serve_apps.Concurrent.bind(), name="sync-conc", route_prefix=None)
    assert [r.result(timeout_s=15) for r in [handle.gather.remote(4) for _ in range(4)]] == [4] * 4


def test_async_methods_run_concurrently_on_the_replica_event_loop(serve_cluster: Any) -> None:
    handle = serve.run(serve_apps.Concurrent.bind(), name="async-conc", route_prefix=None)
    assert [r.result(timeout_s=15) for r in [handle.agather.remote(4) for _ in range(4)]] == [4] * 4


def test_a_replica_is_never_sent_more_than_max_ongoing_requests_and_the_rest_wait_at_the_handle(serve_cluster: Any) -> None:
    handle = serve.run(serve_apps.Concurrent.options(max_ongoing_requests=2).bind(), name="limit", route_prefix=None)
    responses = [handle.hold.remote(0.3) for _ in range(6)]
    router = current_session().router("limit", "Concurrent")
    stats = router.statistics()
    assert sum(stats.in_flight.values()) == 2 and stats.queued == 4
    assert max(r.result(timeout_s=15) for r in responses) == 2
    assert handle.peak_seen.remote().result(timeout_s=10) == 2


def test_beyond_max_queued_requests_remote_fails_fast_with_backpressure(serve_cluster: Any) -> None:
    handle = serve.run(
        serve_apps.Concurrent.options(max_ongoing_requests=1, max_queued_requests=2).bind(), name="bp", route_prefix=None
    )
    accepted = [handle.hold.remote(0.5) for _ in range(3)]
    with pytest.raises(BackPressureError, match="max_queued_requests=2"):
        handle.hold.remote(0.5)
    assert [r.result(timeout_s=15) for r in accepted] == [1, 1, 1]
    assert current_session().router("bp", "Concurrent").statistics().rejected == 1


def test_requests_in_flight_on_a_replica_that_dies_fail_naming_the_replica(serve_cluster: Any, tmp_path: Any) -> None:
    handle = serve.run(serve_apps.Echo.options(num_replicas=2).bind(), name="dies", route_prefix=None)
    marker = tmp_path / "pid"
    slow = handle.slow_marked.remote(str(marker), 30.0)
    router = current_session().router("dies", "Echo")
    wait_for(lambda: marker.exists() and marker.read_text(), 10, "the request to be running")
    (replica_id,) = router.statistics().in_flight
    os.kill(int(marker.read_text()), signal.SIGKILL)
    with pytest.raises(ReplicaDiedError, match=f"replica {replica_id} of deployment 'Echo' died"):
        slow.result(timeout_s=10)
    assert handle.remote("after").result(timeout_s=20) == "after"


def test_scaling_down_and_up_under_traffic_fails_no_request(serve_cluster: Any) -> None:
    handle = serve.run(serve_apps.Echo.options(num_replicas=4).bind("s:"), name="churn", route_prefix=None)
    with Traffic(lambda: handle.remote(1).result(timeout_s=10), threads=4) as traffic:
        for n in (1, 4, 2, 4):
            serve.run(serve_apps.Echo.options(num_replicas=n).bind("s:"), name="churn", route_prefix=None)
    assert traffic.failures == [] and traffic.answers
    assert set(traffic.answers) == {"s:1"}


def test_a_thousand_handles_in_one_process_cost_the_controller_one_subscription(serve_cluster: Any) -> None:
    before = serve.controller_stats()["subscriptions"]
    serve.run(serve_apps.Echo.bind("h:"), name="handles", route_prefix=None)  # its handle subscribes this process
    handles = [DeploymentHandle("handles", "Echo") for _ in range(1000)]
    responses = [h.remote(i) for i, h in enumerate(handles)]
    assert [r.result(timeout_s=30) for r in responses] == [f"h:{i}" for i in range(1000)]
    assert serve.controller_stats()["subscriptions"] == before + 1


def test_an_argument_that_cannot_be_encoded_is_named(serve_cluster: Any) -> None:
    handle = serve.run(serve_apps.Echo.bind(), name="badarg", route_prefix=None)
    with pytest.raises(TypeError, match=r"Echo.__call__.remote\(\): argument 'x': cannot send object"):
        handle.remote(x=object())
    with pytest.raises(TypeError, match=r"Echo.__call__.remote\(\): argument 1: cannot send set"):
        handle.remote(1, {2})


def test_a_handle_made_before_its_app_exists_says_so_without_hanging(serve_cluster: Any) -> None:
    with pytest.raises(DeploymentNotFoundError, match="no deployment 'Echo' in application 'later'"):
        DeploymentHandle("later", "Echo").remote(1)


def test_a_method_that_returns_a_generator_object_streams(serve_cluster: Any) -> None:
    handle = serve.run(serve_apps.GeneratorObjects.bind(), name="genobj", route_prefix=None)
    assert list(handle.options(stream=True).words.remote(3)) == ["w0", "w1", "w2"]
    assert list(handle.options(stream=True).awords.remote(2)) == ["a0", "a1"]
    with pytest.raises(TypeError, match="returned a generator; call it with handle.options"):
        handle.words.remote(3).result(timeout_s=10)


def test_an_async_constructor_runs_on_the_replicas_loop(serve_cluster: Any) -> None:
    handle = serve.run(serve_apps.AsyncInit.bind("ready"), name="asyncinit", route_prefix=None)
    assert handle.remote().result(timeout_s=10) == "ready"


def test_calling_a_missing_method_lists_the_ones_there_are(serve_cluster: Any) -> None:
    handle = serve.run(serve_apps.GeneratorObjects.bind(), name="genobj", route_prefix=None)
    with pytest.raises(Exception, match=r"has no method 'nope'; its methods: awords, plain, words"):
        handle.nope.remote().result(timeout_s=10)


def test_num_replicas_zero_without_autoscaling_is_refused_by_name() -> None:
    with pytest.raises(serve.DeploymentOptionError, match="'num_replicas': expected an int >= 1, got 0"):
        serve_apps.Echo.options(num_replicas=0)


def test_a_cancelled_request_stops_in_the_replica_and_frees_its_slot(serve_cluster: Any, tmp_path: Any) -> None:
    from actors.serve import RequestCancelledError

    handle = serve.run(serve_apps.Cancellable.bind(str(tmp_path)), name="cancel", route_prefix=None)
    long = handle.wait.remote("long", 30.0)
    wait_for(lambda: (tmp_path / "started-long").exists(), 10, "the request to start")
    long.cancel()
    with pytest.raises(RequestCancelledError):
        long.result(timeout_s=5)
    wait_for(lambda: (tmp_path / "cancelled-long").exists(), 10, "the replica's method to be cancelled")
    # max_ongoing_requests=1: the slot is free again, so this runs at once
    assert handle.wait.remote("next", 0.0).result(timeout_s=10) == "next"
    long.cancel()  # a second cancel does nothing


def test_a_request_cancelled_while_queued_at_the_handle_is_never_sent(serve_cluster: Any, tmp_path: Any) -> None:
    from actors.serve import RequestCancelledError

    handle = serve.run(serve_apps.Cancellable.bind(str(tmp_path)), name="cancel", route_prefix=None)
    busy = handle.wait.remote("busy", 1.0)
    wait_for(lambda: (tmp_path / "started-busy").exists(), 10, "the first request to start")
    queued = handle.wait.remote("queued", 0.0)  # max_ongoing_requests=1: it waits at the handle
    queued.cancel()
    with pytest.raises(RequestCancelledError):
        queued.result(timeout_s=5)
    assert busy.result(timeout_s=10) == "busy"
    assert not (tmp_path / "started-queued").exists(), "the cancelled request never reached the replica"


def test_a_request_cancelled_while_its_argument_is_still_coming_is_never_sent(serve_cluster: Any, tmp_path: Any) -> None:
    from actors.serve import RequestCancelledError

    handle = serve.run(serve_apps.Cancellable.bind(str(tmp_path)), name="cancel", route_prefix=None)
    wait = handle.wait
    assert wait.remote("first", 0.0).result(timeout_s=10) == "first"
    sent_before = wait._router.statistics().sent
    argument = wait.remote("argument", 0.5)
    chained = wait.remote(argument, 0.0)  # sent once ``argument`` is done, unless cancelled first
    chained.cancel()
    with pytest.raises(RequestCancelledError):
        chained.result(timeout_s=5)
    assert argument.result(timeout_s=10) == "argument"
    assert wait.remote("after", 0.0).result(timeout_s=10) == "after"
    assert wait._router.statistics().sent - sent_before == 2, "only the argument's request and the one after it were sent"


def test_a_cancelled_stream_closes_the_generator_in_the_replica(serve_cluster: Any, tmp_path: Any) -> None:
    from actors.serve import RequestCancelledError

    handle = serve.run(serve_apps.Cancellable.bind(str(tmp_path)), name="cancel", route_prefix=None)
    ticks = handle.options(stream=True).ticks.remote("s")
    assert next(ticks) == 0
    ticks.cancel()
    with pytest.raises(RequestCancelledError):
        next(ticks)
    wait_for(lambda: (tmp_path / "closed-s").exists(), 10, "the replica's generator to be closed")
    assert handle.wait.remote("after", 0.0).result(timeout_s=10) == "after", "its slot is free"


def test_get_app_handle_returns_the_same_handle_each_time(serve_cluster: Any) -> None:
    serve.run(serve_apps.Echo.bind("c:"), name="cached", route_prefix=None)
    assert serve.get_app_handle("cached") is serve.get_app_handle("cached")
    assert serve.get_deployment_handle("Echo", "cached") is serve.get_app_handle("cached")
    assert serve.get_app_handle("cached").remote("x").result(timeout_s=10) == "c:x"


def test_function_deployments_serve_like_a_class_call_method(serve_cluster: Any) -> None:
    assert serve.run(serve_apps.double.bind(), name="fn", route_prefix=None).remote(21).result(timeout_s=10) == 42
    handle = serve.run(serve_apps.agreet.bind(), name="afn", route_prefix=None)
    assert handle.remote("you").result(timeout_s=10) == "hi you"
    streamed = serve.run(serve_apps.upto.bind(), name="gfn", route_prefix=None)
    assert list(streamed.options(stream=True).remote(3)) == [0, 1, 2]
    with pytest.raises(TypeError, match="function deployment 'double' takes no constructor arguments"):
        serve_apps.double.bind(1)
    with pytest.raises(TypeError, match="decorates classes and functions"):
        serve.deployment(42)


def test_serve_batch_gathers_concurrent_calls_into_one_list_call(serve_cluster: Any) -> None:
    handle = serve.run(serve_apps.Batched.bind(), name="batched", route_prefix=None)
    responses = [handle.remote(i) for i in range(8)]
    assert [r.result(timeout_s=10) for r in responses] == [2 * i for i in range(8)]
    sizes = handle.seen.remote().result(timeout_s=10)
    assert sum(sizes) == 8 and max(sizes) == 4, sizes
    sync = [handle.sync_double.remote(i) for i in range(4)]
    assert [r.result(timeout_s=10) for r in sync] == [0, 2, 4, 6]
    assert handle.seen.remote().result(timeout_s=10) == [4], "the sync batch method got one list of 4"
    handle.resize.remote(1).result(timeout_s=10)
    assert [r.result(timeout_s=10) for r in [handle.remote(i) for i in range(3)]] == [0, 2, 4]
    assert handle.seen.remote().result(timeout_s=10) == [1, 1, 1], "the batch size changed at run time"


def test_a_batch_method_returning_the_wrong_number_of_results_fails_each_request_saying_so(serve_cluster: Any) -> None:
    handle = serve.run(serve_apps.Batched.bind(), name="batched", route_prefix=None)
    responses = [handle.short.remote(i) for i in range(3)]
    for r in responses:
        with pytest.raises(Exception, match=r"returned 2 results for a batch of 3 inputs"):
            r.result(timeout_s=10)
    assert handle.remote(5).result(timeout_s=10) == 10, "the replica still serves"


def test_a_batched_generator_streams_each_request_its_own_chunks(serve_cluster: Any) -> None:
    handle = serve.run(serve_apps.Batched.bind(), name="batched", route_prefix=None)
    for method in ("count", "sync_count"):
        streams = [getattr(handle.options(stream=True), method).remote(n) for n in (1, 3, 2)]
        assert [list(s) for s in streams] == [[0], [0, 1, 2], [0, 1]], method
        assert handle.seen.remote().result(timeout_s=10) == [3], f"{method}: one batch of three streams"


def test_a_batched_generator_yielding_the_wrong_number_of_chunks_fails_each_stream_saying_so(serve_cluster: Any) -> None:
    handle = serve.run(serve_apps.Batched.bind(), name="batched", route_prefix=None)
    streams = [handle.options(stream=True).bad_count.remote(n) for n in range(3)]
    for stream in streams:
        with pytest.raises(Exception, match=r"yielded 1 chunks for a batch of 3 inputs"):
            assert next(stream) == 0
            next(stream)
    assert handle.remote(5).result(timeout_s=10) == 10, "the replica still serves"


@pytest.mark.parametrize("method", ["numbers", "async_numbers"])
def test_a_slow_consumer_holds_its_stream_producer_to_the_window(serve_cluster: Any, method: str) -> None:
    from actors import Config
    from actors._window import CREDIT_EVERY

    window = Config().stream_window
    handle = serve.run(serve_apps.Producer.bind(), name="producer", route_prefix=None)
    stream = getattr(handle.options(stream=True), method).remote(20 * window)
    taken = [next(stream) for _ in range(CREDIT_EVERY - 1)]  # not enough to send a credit
    wait_for(lambda: handle.count.remote().result(timeout_s=10) >= window, 10, "a window of items produced")
    assert handle.count.remote().result(timeout_s=10) == window, "the producer stopped at a full window"
    taken += [next(stream) for _ in range(CREDIT_EVERY + 1)]  # one credit: for 2 * CREDIT_EVERY taken
    wait_for(lambda: handle.count.remote().result(timeout_s=10) >= window + 2 * CREDIT_EVERY, 10, "the producer to go on")
    assert handle.count.remote().result(timeout_s=10) == window + 2 * CREDIT_EVERY
    assert taken + list(stream) == list(range(20 * window)), "every item, in order, once the consumer reads on"


def test_multiplexed_requests_go_where_their_model_is_held_and_status_shows_the_models(serve_cluster: Any) -> None:
    handle = serve.run(serve_apps.Models.bind(), name="models", route_prefix=None)
    first = {m: handle.options(multiplexed_model_id=m).remote(0).result(timeout_s=10) for m in ("a", "b")}
    assert {m: r["model"] for m, r in first.items()} == {"a": "model-a", "b": "model-b"}
    for m in ("a", "b"):  # routed back to the replica that loaded it, which does not load it again
        again = [handle.options(multiplexed_model_id=m).remote(i).result(timeout_s=10) for i in range(5)]
        assert {r["replica"] for r in again} == {first[m]["replica"]}
        assert all(r["loads"].count(m) == 1 for r in again)
    assert handle.options(multiplexed_model_id="z").current.remote().result(timeout_s=10) == "z"

    def held() -> dict[str, list[str]]:
        replicas = serve.status(replicas=True).applications["models"].deployments["Models"].replicas
        return {r.replica_id: sorted(r.model_ids) for r in replicas if r.model_ids}

    expected: dict[str, list[str]] = {}
    for m in ("a", "b"):
        expected.setdefault(first[m]["replica"], []).append(m)
    wait_for(lambda: held() == expected, 10, f"status to show the held models {expected}")
    with pytest.raises(RuntimeError, match="cannot load broken"):
        handle.options(multiplexed_model_id="broken").remote(0).result(timeout_s=10)
    assert handle.options(multiplexed_model_id="a").remote(1).result(timeout_s=10)["model"] == "model-a", \
        "a loader that raised does not poison the replica"


def test_bad_multiplexed_parameters_fail_at_decoration_naming_them() -> None:
    with pytest.raises(ValueError, match="max_num_models_per_replica must be an int >= 1, got 0"):
        serve.multiplexed(max_num_models_per_replica=0)
    with pytest.raises(TypeError, match="must be a method taking self and a model id"):
        serve.multiplexed(lambda self: None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="multiplexed_model_id must be a str, got int"):
        serve.DeploymentHandle("app", "d").options(multiplexed_model_id=3)  # type: ignore[arg-type]


def test_bad_batch_parameters_fail_at_decoration_naming_them() -> None:
    with pytest.raises(ValueError, match="max_batch_size must be an int >= 1, got 0"):
        serve.batch(max_batch_size=0)
    with pytest.raises(ValueError, match="batch_wait_timeout_s must be a number >= 0, got -1"):
        serve.batch(batch_wait_timeout_s=-1)
    with pytest.raises(TypeError, match="must take self and one list of inputs"):
        serve.batch(lambda: None)  # type: ignore[arg-type]


def test_ray_options_corral_does_not_take_are_refused_by_name_with_what_to_use() -> None:
    with pytest.raises(serve.DeploymentOptionError, match="'placement_group_bundles': not supported; use gang_scheduling_config"):
        serve_apps.Echo.options(placement_group_bundles=[{"CPU": 1}])
    with pytest.raises(serve.DeploymentOptionError, match="'route_prefix': is given to serve.run"):
        serve_apps.Echo.options(route_prefix="/x")
    assert serve_apps.Echo.options(logging_config=None).name == "Echo", "None, as Ray's default, is accepted"


def test_sync_methods_run_on_the_receiving_thread_unless_the_deployment_asks_for_a_pool(serve_cluster: Any) -> None:
    inline = serve.run(serve_apps.Echo.bind(), name="inline", route_prefix=None)
    pooled = serve.run(serve_apps.Echo.options(run_sync_in_threadpool=True).bind(), name="pooled", route_prefix=None)
    assert inline.thread.remote().result(timeout_s=10) == "corral-io", "no thread hop before user code"
    assert pooled.thread.remote().result(timeout_s=10).startswith("replica-")
    with pytest.raises(DeploymentOptionError, match="run_sync_in_threadpool"):
        serve_apps.Echo.options(run_sync_in_threadpool="yes")


@pytest.mark.parametrize("isolation", ["process", "thread"])
def test_a_sync_method_longer_than_the_liveness_window_neither_kills_its_replica_nor_holds_up_the_next(
        serve_cluster: Any, isolation: str) -> None:
    handle = serve.run(serve_apps.Echo.options(max_ongoing_requests=4, isolation=isolation).bind(), name="long", route_prefix=None)
    slow = handle.slow.remote(1.5)  # five liveness windows of the tests' transport (0.3 s) on the receiving thread
    wait_for(lambda: handle.remote("x").result(timeout_s=10) == "x", 5, "a request served beside it")
    started = time.monotonic()
    assert handle.remote("y").result(timeout_s=10) == "y" and time.monotonic() - started < 0.5, \
        "a standby thread received the next request while the slow one ran"
    assert slow.result(timeout_s=10) == "slept 1.5", "its process was never taken for dead"
