"""Metrics and autoscaling end to end, and the aggregator under concurrency."""

from __future__ import annotations

import threading
import time
import zlib
from typing import Any

import msgpack
import pytest

from actors import Actor, ActorSystem, ServeSettings, serve
from actors.serve import DeploymentOptionError
from actors.serve.client._metrics import MetricsAggregator, MetricsRegistry
from actors.serve.head._controller_metrics import decode_push
from actors.serve._api import current_session
from protocol import HandleMetrics, MetricsPush, decode_fields, encode_fields
from tests import serve_apps
from tests.helpers import wait_for


def deployment(app: str, name: str) -> Any:
    return serve.status().applications[app].deployments[name]


def load(handle: Any, stop: threading.Event, seconds: float) -> None:
    while not stop.is_set():
        handle.remote(seconds).result(timeout_s=20)


def test_an_autoscaled_deployment_scales_up_under_load_and_back_down_when_idle(autoscaling_cluster: Any) -> None:
    handle = serve.run(serve_apps.Elastic.bind(), name="elastic", route_prefix=None)
    assert deployment("elastic", "Elastic").replica_states == {"RUNNING": 1}
    stop = threading.Event()
    threads = [threading.Thread(target=load, args=(handle, stop, 0.2)) for _ in range(8)]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: deployment("elastic", "Elastic").replica_states == {"RUNNING": 4}, 30, "scale up to 4")
        auto = deployment("elastic", "Elastic").autoscaling
        assert auto["target"] == 4 and "scaled up" in auto["reason"]
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    wait_for(lambda: deployment("elastic", "Elastic").replica_states == {"RUNNING": 1}, 30, "scale back down to 1")
    assert "scaled down" in deployment("elastic", "Elastic").autoscaling["reason"]


def test_scale_to_zero_and_a_cold_start_from_zero(autoscaling_cluster: Any) -> None:
    app = serve_apps.Elastic.options(
        autoscaling_config={
            "target_ongoing_requests": 1, "min_replicas": 0, "max_replicas": 2, "initial_replicas": 1,
            "upscale_delay_s": 5.0, "downscale_delay_s": 5.0, "downscale_to_zero_delay_s": 0.5, "look_back_period_s": 0.5,
        }
    ).bind()
    handle = serve.run(app, name="zero", route_prefix=None)
    assert handle.remote(0).result(timeout_s=10)
    wait_for(lambda: deployment("zero", "Elastic").replica_states == {}, 30, "scale to zero")
    started = time.monotonic()
    assert handle.remote(0).result(timeout_s=20), "a request to a deployment at zero starts a replica"
    assert time.monotonic() - started < 4.0, "the cold start does not wait for the upscale delay"
    assert deployment("zero", "Elastic").replica_states == {"RUNNING": 1}


def test_a_custom_policy_is_named_by_import_path(autoscaling_cluster: Any) -> None:
    app = serve_apps.Elastic.options(
        autoscaling_config={"min_replicas": 1, "max_replicas": 5, "upscale_delay_s": 0, "policy": "tests.serve_apps:always_three"}
    ).bind()
    serve.run(app, name="custom", route_prefix=None)
    wait_for(lambda: deployment("custom", "Elastic").replica_states == {"RUNNING": 3}, 20, "the custom policy's 3 replicas")


def test_a_custom_policy_that_cannot_be_imported_is_refused_at_run(autoscaling_cluster: Any) -> None:
    app = serve_apps.Elastic.options(autoscaling_config={"max_replicas": 2, "policy": "tests.serve_apps:nope"}).bind()
    with pytest.raises(DeploymentOptionError, match="policy: cannot import 'tests.serve_apps:nope'"):
        serve.run(app, name="badpolicy", route_prefix=None)
    assert "badpolicy" not in serve.status().applications


@pytest.mark.parametrize(
    ("config", "text"),
    [
        ({"min_replicas": 5, "max_replicas": 2}, "min_replicas \\(5\\) must not exceed max_replicas \\(2\\)"),
        ({"downscale_delay_s": -1}, "downscale_delay_s: expected a number >= 0"),
        ({"target_ongoing_requests": 0}, "target_ongoing_requests: expected a number > 0"),
        ({"speed": 2}, "unknown field 'speed'"),
    ],
)
def test_an_invalid_autoscaling_config_is_refused_at_the_decorator_and_options(config: dict[str, Any], text: str) -> None:
    with pytest.raises(DeploymentOptionError, match=text):
        serve_apps.Elastic.options(autoscaling_config=config)
    with pytest.raises(DeploymentOptionError, match=text):
        serve.deployment(autoscaling_config=config)(serve_apps.Sleepy.func_or_class)


def test_num_replicas_and_autoscaling_config_cannot_be_given_together() -> None:
    with pytest.raises(DeploymentOptionError, match="cannot be given together"):
        serve_apps.Echo.options(num_replicas=2, autoscaling_config={"max_replicas": 3})


def push_of(reports: list[HandleMetrics], sender: str = "ipc://test") -> MetricsPush:
    raw = msgpack.packb([[encode_fields(r) for r in reports], []], use_bin_type=True)
    return MetricsPush(sender, 1, True, zlib.compress(raw))


def test_a_stale_report_does_not_move_the_target() -> None:
    from tests.conftest import autoscaling_serve_config

    serve.start(workers=1, config=autoscaling_serve_config(metrics_staleness_s=0.3), http_options={"port": 0})
    try:
        app = serve_apps.Elastic.options(
            autoscaling_config={"target_ongoing_requests": 1, "max_replicas": 4, "upscale_delay_s": 1.0, "look_back_period_s": 5}
        ).bind()
        serve.run(app, name="stale", route_prefix=None)
        session = current_session()
        burst = HandleMetrics("stale", "Elastic", "fake-handle", 100.0, {}, False, time.time())
        session.ask_controller(push_of([burst]))
        deadline = time.monotonic() + 1.6
        while time.monotonic() < deadline:
            assert deployment("stale", "Elastic").autoscaling["target"] == 1
            threading.Event().wait(0.05)
        for _ in range(40):  # the same load kept fresh does move it
            session.ask_controller(push_of([burst]))
            threading.Event().wait(0.05)
        assert deployment("stale", "Elastic").autoscaling["target"] == 4
    finally:
        serve.shutdown()


def test_malformed_reports_and_reports_of_unknown_deployments_are_dropped_and_counted(autoscaling_cluster: Any) -> None:
    serve.run(serve_apps.Echo.bind(), name="known", route_prefix=None)
    session = current_session()
    before = serve.controller_stats()["metrics_dropped"]
    assert session.ask_controller(MetricsPush("ipc://x", 1, True, b"not zlib at all")) == "dropped"
    assert session.ask_controller(MetricsPush("ipc://x", 2, False, msgpack.packb({"a": 1}))) == "dropped"
    bad_fields = msgpack.packb([[["known", "Echo", "h", "lots", {}, False, 0.0]], []])
    assert session.ask_controller(MetricsPush("ipc://x", 3, False, bad_fields)) == "ok"
    unknown = HandleMetrics("nope", "Nope", "h", 1.0, {}, False, 0.0)
    assert session.ask_controller(push_of([unknown])) == "ok"
    assert serve.controller_stats()["metrics_dropped"] == before + 4
    assert serve.run(serve_apps.Echo.bind("still:"), name="known", route_prefix=None).remote(1).result(timeout_s=10) == "still:1"


def test_one_push_per_process_carries_every_handle_of_the_process(autoscaling_cluster: Any) -> None:
    for name in ("a", "b", "c"):
        serve.run(serve_apps.Echo.options(num_replicas=1).bind(), name=name, route_prefix=None)
    handles = [serve.get_app_handle(n) for n in ("a", "b", "c")]
    for h in handles:
        h.remote(1).result(timeout_s=10)
    session = current_session()
    assert sum(1 for name in session.system._actors if name == "serve-metrics") == 1
    ours0 = session.aggregator_statistics().pushes_sent
    controller0 = serve.controller_stats()
    wait_for(lambda: session.aggregator_statistics().pushes_sent >= ours0 + 10, 20, "ten pushes")
    ours = session.aggregator_statistics().pushes_sent - ours0
    controller1 = serve.controller_stats()
    reports = controller1["metrics_reports"] - controller0["metrics_reports"]
    messages = controller1["metrics_messages"] - controller0["metrics_messages"]
    assert 3 * (ours - 1) <= reports <= 3 * (ours + 1), "each push carries the 3 handles' reports"
    assert messages <= 4 * (ours + 2), "about one message per process (this one and 3 replica processes) per interval"


class Recorder(Actor):
    """Stands in for the controller: keeps every push."""

    def __init__(self) -> None:
        super().__init__()
        self.pushes: list[MetricsPush] = []

    def receive(self, message: Any) -> Any:
        if message == "dump":
            return [list(decode_push(p)[0]) for p in self.pushes]
        self.pushes.append(message)
        return "ok"


class Source:
    def __init__(self, ident: str) -> None:
        self.ident = ident

    def metrics_sample(self) -> tuple[Any, ...]:
        return ("handle", "app", "d", self.ident, 1, {"r": 1}, False)


def test_registration_hammered_from_many_threads_during_pushes_loses_and_doubles_nothing(system: ActorSystem) -> None:
    recorder = system.spawn(Recorder, name="controller")
    registry = MetricsRegistry()
    settings = ServeSettings(metrics_record_interval_s=0.01, metrics_push_interval_s=0.03)
    system.spawn(MetricsAggregator, registry, settings, recorder, name="aggregator")
    keep = [Source(f"keep-{i}") for i in range(20)]
    for source in keep:
        registry.register(source)
    errors: list[BaseException] = []

    def churn(n: int) -> None:
        try:
            for i in range(2000):
                temp = Source(f"temp-{n}-{i}")
                token = registry.register(temp)
                if i % 2:
                    registry.unregister(token)
                del temp  # the other half drop out by garbage collection
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=churn, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    wait_for(lambda: len(recorder.ask("dump").get(timeout=5)) >= 10, 10, "pushes")
    pushes = recorder.ask("dump").get(timeout=5)
    for reports in pushes:
        ids = [decode_fields(HandleMetrics, r, "h").handle_id for r in reports]
        assert len(ids) == len(set(ids)), "no report is doubled within a push"
    last_ids = {decode_fields(HandleMetrics, r, "h").handle_id for r in pushes[-1]}
    assert {s.ident for s in keep} <= last_ids, "no registered handle is lost"
    wait_for(lambda: len(registry) == len(keep), 5, "dropped sources to leave the registry")
