"""Gang scheduling end to end: real workers with declared resources."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import pytest

from actors import serve
from actors.serve import DeploymentOptionError, GangSchedulingConfig
from actors.serve._api import current_session
from protocol import ReplicaSet
from tests import serve_apps
from tests.helpers import Traffic, wait_for


def shard_status(app: str = "gangs") -> Any:
    return serve.status().applications[app].deployments["Shard"]


def members_seen(handle: Any, n: int = 80) -> dict[str, dict[str, Any]]:
    return {info["replica"]: info for info in (handle.remote().result(timeout_s=10) for _ in range(n))}


def test_gang_members_get_ranks_one_member_list_and_pack_on_one_worker(gang_cluster: Any) -> None:
    handle = serve.run(serve_apps.Shard.bind(), name="gangs", route_prefix=None)
    seen = members_seen(handle)
    assert len(seen) == 8
    gangs: dict[str, list[dict[str, Any]]] = {}
    for info in seen.values():
        gangs.setdefault(info["gang"], []).append(info)
    assert len(gangs) == 2
    for members in gangs.values():
        assert sorted(m["rank"] for m in members) == [0, 1, 2, 3]
        assert all(m["members"] == members[0]["members"] and m["world"] == 4 for m in members)
        assert len({m["node"] for m in members}) == 1, "PACK puts a gang on one worker"
    status = serve.status()
    assert len(status.reservations) == 2 and all(len(r.nodes) == 4 for r in status.reservations)
    assert all(n.available["CPU"] == pytest.approx(0.0) for n in status.nodes)


def test_strict_spread_puts_members_on_distinct_workers(gang_cluster: Any) -> None:
    app = serve_apps.Shard.options(
        num_replicas=2, gang_scheduling_config=GangSchedulingConfig(gang_size=2, gang_placement_strategy="STRICT_SPREAD")
    ).bind()
    handle = serve.run(app, name="spread", route_prefix=None)
    assert {info["node"] for info in members_seen(handle, 30).values()} == {"worker-0", "worker-1"}


def test_deleting_a_gang_app_releases_every_reservation(gang_cluster: Any) -> None:
    serve.run(serve_apps.Shard.bind(), name="gangs", route_prefix=None)
    serve.delete("gangs")
    status = serve.status()
    assert status.reservations == [] and all(n.available["CPU"] == 1.0 for n in status.nodes)


def test_two_gang_deployments_in_one_app(gang_cluster: Any) -> None:
    other = serve_apps.Shard.options(name="Other", num_replicas=2, gang_scheduling_config={"gang_size": 2})
    app = serve_apps.Ingress.bind(serve_apps.Shard.options(num_replicas=4).bind(), other.bind())
    serve.run(app, name="two", route_prefix=None)
    deployments = serve.status().applications["two"].deployments
    assert deployments["Shard"].replica_states == {"RUNNING": 4}
    assert deployments["Other"].replica_states == {"RUNNING": 2}
    assert len(serve.status().reservations) == 2  # one gang of 4, one gang of 2


def test_twelve_in_gangs_of_four_with_room_for_eight_run_eight_then_all_after_a_worker_joins(gang_cluster: Any) -> None:
    serve.run(serve_apps.Shard.options(num_replicas=12).bind(), name="gangs", wait_for_ready=False, route_prefix=None)
    wait_for(lambda: shard_status().replica_states == {"RUNNING": 8}, 20, "two gangs running")
    d = shard_status()
    assert d.status == "UPDATING" and "waiting for resources: a gang of 4" in d.message
    serve.add_worker({"CPU": 1})
    wait_for(lambda: shard_status().replica_states == {"RUNNING": 12}, 20, "the third gang")
    assert shard_status().status == "HEALTHY"


def test_a_member_whose_constructor_fails_once_retries_its_whole_gang_never_partial(gang_cluster: Any, tmp_path: Path) -> None:
    (tmp_path / "fail-once-rank-2").write_text("")
    handle = serve.run(serve_apps.Shard.options(num_replicas=4).bind(str(tmp_path)), name="gangs", route_prefix=None)
    seen = members_seen(handle, 40)
    assert len(seen) == 4 and sorted(i["rank"] for i in seen.values()) == [0, 1, 2, 3]
    assert not (tmp_path / "fail-once-rank-2").exists()


def test_a_constructor_that_always_fails_gives_deploy_failed_with_nothing_running(gang_cluster: Any, tmp_path: Path) -> None:
    (tmp_path / "always-fail-rank-1").write_text("")
    with pytest.raises(serve.DeployFailedError, match="rank 1 always fails"):
        serve.run(serve_apps.Shard.options(num_replicas=4).bind(str(tmp_path)), name="gangs", route_prefix=None)
    wait_for(lambda: shard_status().replica_states == {}, 10, "every member stopped")
    assert serve.status().reservations == []


def test_a_member_failing_health_checks_replaces_its_gang_while_the_other_serves(gang_cluster: Any, tmp_path: Path) -> None:
    handle = serve.run(serve_apps.Shard.bind(str(tmp_path)), name="gangs", route_prefix=None)
    seen = members_seen(handle)
    victim = next(iter(seen.values()))
    with Traffic(lambda: handle.remote().result(timeout_s=10)) as traffic:
        (tmp_path / f"sick-{victim['replica']}").write_text("")
        wait_for(lambda: victim["gang"] not in {i["gang"] for i in members_seen(handle, 20).values()}, 20, "the sick gang to go")
        wait_for(lambda: shard_status().replica_states == {"RUNNING": 8}, 20, "a new gang")
    assert traffic.failures == [] and traffic.answers, [repr(f) for f in traffic.failures[:3]]


def test_scaling_eight_to_four_to_eight_fails_no_request(gang_cluster: Any) -> None:
    handle = serve.run(serve_apps.Shard.bind(), name="gangs", route_prefix=None)
    with Traffic(lambda: handle.remote().result(timeout_s=10)) as traffic:
        serve.run(serve_apps.Shard.options(num_replicas=4).bind(), name="gangs", route_prefix=None)
        assert len(serve.status().reservations) == 1
        serve.run(serve_apps.Shard.options(num_replicas=8).bind(), name="gangs", route_prefix=None)
    assert traffic.failures == [] and traffic.answers, [repr(f) for f in traffic.failures[:3]]
    assert shard_status().replica_states == {"RUNNING": 8}


def test_chaos_no_published_replica_set_ever_holds_an_incomplete_gang(gang_cluster: Any, tmp_path: Path) -> None:
    handle = serve.run(serve_apps.Shard.bind(str(tmp_path)), name="gangs", route_prefix=None)
    handle.remote().result(timeout_s=10)
    router = current_session().router("gangs", "Shard")
    published: list[ReplicaSet] = []
    original = router.update

    def record(update: ReplicaSet) -> None:
        published.append(update)
        original(update)

    router.update = record  # type: ignore[method-assign]
    rng = random.Random(3)
    faults = 0
    deadline = time.monotonic() + 8.0
    while time.monotonic() < deadline and faults < 4:
        victim = rng.choice(list(members_seen(handle, 20).values()))
        (tmp_path / f"sick-{victim['replica']}").write_text("")
        faults += 1
        # recovered = the victim's gang left the published set, and a whole new gang serves
        wait_for(lambda: victim["replica"] not in {r.replica_id for r in router._replicas}
                 and shard_status().status == "HEALTHY" and shard_status().replica_states == {"RUNNING": 8},
                 30, f"recovery from fault {faults}")
    assert faults >= 2 and published
    for update in published:
        gangs: dict[str, int] = {}
        for replica in update.replicas:
            gang = replica.replica_id.rsplit(".", 1)[0]
            gangs[gang] = gangs.get(gang, 0) + 1
        assert all(count == 4 for count in gangs.values()), f"an incomplete gang was published: {gangs}"


@pytest.mark.parametrize(
    ("options", "text"),
    [
        ({"num_replicas": 6}, "'num_replicas' \\(6\\) must be a multiple of gang_scheduling_config.gang_size \\(4\\)"),
        ({"gang_scheduling_config": {"gang_size": 0}}, "gang_size: expected an int >= 1"),
        ({"gang_scheduling_config": {"gang_size": 4, "gang_placement_strategy": "RANDOM"}}, "expected one of PACK"),
        ({"gang_scheduling_config": {"gang_size": 4, "runtime_failure_policy": "IGNORE"}}, "'IGNORE' is not implemented"),
    ],
)
def test_bad_gang_options_are_refused_naming_the_field(options: dict[str, Any], text: str) -> None:
    with pytest.raises(DeploymentOptionError, match=text):
        serve_apps.Shard.options(**options)


def test_a_gang_that_could_never_fit_is_refused_at_run_and_nothing_is_reserved(gang_cluster: Any) -> None:
    app = serve_apps.Shard.options(
        num_replicas=4, gang_scheduling_config={"gang_size": 4, "gang_placement_strategy": "STRICT_PACK"},
        actor_options={"num_cpus": 0.5},
    ).bind()
    with pytest.raises(DeploymentOptionError, match="does not fit on the workers even when they are empty"):
        serve.run(app, name="toobig", route_prefix=None)
    assert serve.status().reservations == [] and "toobig" not in serve.status().applications
