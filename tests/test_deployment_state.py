"""The deployment state machine (pure): scaling, rolling updates, failures, health."""

from __future__ import annotations

from typing import Any

from actors.serve.head._deployment_state import DeploymentState, make_limits
from actors.serve.head._commands import HealthCheckCmd, ReconfigureCmd, StartReplicaCmd, StopReplicaCmd
from actors.serve._options import DeploymentConfig
from actors.serve.head._placement import Cluster
from actors.serve.head._replica_states import ReplicaState
from protocol import DeploymentSpec

S = ReplicaState


def spec(version: str = "v1") -> DeploymentSpec:
    return DeploymentSpec("app", "d", "m:C", None, [], {}, {}, version)


def make(num_replicas: int = 2, nodes: int = 2, cpu: float = 100.0, **options: Any) -> tuple[DeploymentState, Cluster]:
    cluster = Cluster()
    for i in range(nodes):
        cluster.add_node(f"n{i}", f"ipc://n{i}", {"CPU": cpu})
    state = DeploymentState(spec(), DeploymentConfig(num_replicas=num_replicas, **options), cluster, make_limits(3, 20, 3))
    return state, cluster


def settle(state: DeploymentState, now: float = 0.0, rounds: int = 50) -> list[Any]:
    """Reconcile, start and stop everything asked, until nothing changes."""
    seen = []
    for _ in range(rounds):
        cmds = state.reconcile(now)
        seen += cmds
        work = [c for c in cmds if isinstance(c, (StartReplicaCmd, StopReplicaCmd))]
        if not work:
            return seen
        for cmd in work:
            if isinstance(cmd, StartReplicaCmd):
                state.on_started(cmd.replica.replica_id, now)
            else:
                state.on_stopped(cmd.replica.replica_id)
    raise AssertionError("did not settle")


def answer_health_checks(state: DeploymentState, cmds: list[Any], loads: dict[str, int] | None = None, now: float = 0.0) -> None:
    """Each health check asked in ``cmds`` answers healthy, with its replica's load."""
    for cmd in cmds:
        if isinstance(cmd, HealthCheckCmd):
            state.on_health(cmd.replica.replica_id, True, (loads or {}).get(cmd.replica.replica_id, 0), "", now)


def test_a_new_deployment_starts_its_replicas_spread_over_nodes_and_becomes_healthy() -> None:
    state, _ = make(4)
    cmds = state.reconcile(0.0)
    assert [type(c) for c in cmds] == [StartReplicaCmd] * 4
    assert sorted(c.replica.node_id for c in cmds) == ["n0", "n0", "n1", "n1"]
    assert state.status()[0] == "UPDATING" and state.replica_states() == {"STARTING": 4}
    for c in cmds:
        state.on_started(c.replica.replica_id, 0.0)
    state.reconcile(0.0)
    assert state.status() == ("HEALTHY", "") and state.replica_states() == {"RUNNING": 4}


def test_downscale_stops_replicas_that_do_not_serve_yet_first_then_the_least_loaded() -> None:
    state, _ = make(3)
    settle(state)
    records = state.serving()
    state.config = state.config.replace(num_replicas=5)
    starting = [c.replica.replica_id for c in state.reconcile(0.0) if isinstance(c, StartReplicaCmd)]
    state.set_target(spec(), state.config.replace(num_replicas=2))
    asked = state.reconcile(0.0)
    assert not [c for c in asked if isinstance(c, StopReplicaCmd)], "no stop before the running replicas told their load"
    answer_health_checks(state, asked, {r.replica_id: load for load, r in zip((5, 0, 9), records)})
    stops = [c.replica.replica_id for c in state.reconcile(0.1) if isinstance(c, StopReplicaCmd)]
    assert stops[:2] == starting and stops[2] == records[1].replica_id
    assert state.status()[0] == "DOWNSCALING"


def test_stopping_replicas_do_not_block_new_ones() -> None:
    state, _ = make(2)
    settle(state)
    old = {r.replica_id for r in state.serving()}
    state.set_target(spec("v2"), state.config)
    cmds = state.reconcile(0.0)
    stops = [c for c in cmds if isinstance(c, StopReplicaCmd)]
    starts = [c for c in cmds if isinstance(c, StartReplicaCmd)]
    assert starts and not stops, "a rolling update starts new replicas before it stops old ones"
    for c in starts:
        state.on_started(c.replica.replica_id, 0.0)
    cmds = state.reconcile(0.0)
    stops = [c for c in cmds if isinstance(c, StopReplicaCmd)]
    assert {c.replica.replica_id for c in stops} <= old and stops
    assert state.replicas.count([S.STOPPING]) == len(stops)
    assert any(isinstance(c, StartReplicaCmd) for c in cmds), "new replicas start while old ones are still STOPPING"


def test_a_rolling_update_keeps_serving_capacity_and_moves_in_batches_of_about_20_percent() -> None:
    state, _ = make(10)
    settle(state)
    state.set_target(spec("v2"), state.config)
    now = 0.0
    for _ in range(100):
        cmds = state.reconcile(now)
        starts = [c for c in cmds if isinstance(c, StartReplicaCmd)]
        assert len(starts) <= 2
        assert len(state.serving()) >= 10
        if not cmds:
            break
        for c in cmds:
            if isinstance(c, StartReplicaCmd):
                state.on_started(c.replica.replica_id, now)
            elif isinstance(c, StopReplicaCmd):
                state.on_stopped(c.replica.replica_id)
    assert {r.version for r in state.serving()} == {"v2"} and len(state.serving()) == 10
    assert state.status() == ("HEALTHY", "")


def test_a_user_config_change_reconfigures_in_place_without_new_replicas_a_batch_at_a_time() -> None:
    state, _ = make(2, user_config={"a": 1})
    settle(state)
    ids = {r.replica_id for r in state.serving()}
    state.set_target(spec(), state.config.replace(user_config={"a": 2}))
    reconfigured = []
    for _ in range(2):  # a fifth of 2, at least one: one replica at a time, the other serving
        cmds = state.reconcile(0.0)
        assert len(cmds) == 1 and isinstance(cmds[0], ReconfigureCmd) and cmds[0].user_config == {"a": 2}
        assert state.status()[0] == "UPDATING" and state.replica_states() == {"UPDATING": 1, "RUNNING": 1}
        assert state.on_reconfigured(cmds[0].replica.replica_id, cmds[0].user_config_version, None) is None
        reconfigured.append(cmds[0].replica.replica_id)
    assert state.reconcile(0.0) == []
    assert set(reconfigured) == ids
    assert {r.replica_id for r in state.serving()} == ids and state.status()[0] == "HEALTHY"


def test_a_user_config_change_over_ten_replicas_reconfigures_two_at_a_time() -> None:
    state, _ = make(10, user_config={"a": 1})
    settle(state)
    state.set_target(spec(), state.config.replace(user_config={"a": 2}))
    rounds = 0
    while state.status()[0] != "HEALTHY" and rounds < 20:
        cmds = state.reconcile(0.0)
        assert len(cmds) <= 2 and state.replica_states().get("UPDATING", 0) <= 2
        for c in cmds:
            state.on_reconfigured(c.replica.replica_id, c.user_config_version, None)
        rounds += 1
    assert rounds == 5 and state.replica_states() == {"RUNNING": 10}


def test_a_constructor_that_always_fails_ends_in_deploy_failed_after_the_retry_limit() -> None:
    state, cluster = make(2)
    now = 0.0
    for _ in range(200):
        for c in state.reconcile(now):
            assert isinstance(c, StartReplicaCmd)
            state.on_start_failed(c.replica.replica_id, "ValueError: bad model path", now)
        if state.failed:
            break
        now += 1.0
    status, message = state.status()
    assert status == "DEPLOY_FAILED" and "failed 6 times" in message and "bad model path" in message
    assert state.reconcile(now + 100) == [] and len(state.replicas) == 0
    assert all(n.available["CPU"] == 100.0 for n in cluster.nodes)


def test_failed_starts_are_retried_after_a_backoff() -> None:
    state, _ = make(1)
    (first,) = state.reconcile(0.0)
    state.on_start_failed(first.replica.replica_id, "boom", 0.0)
    assert state.reconcile(0.0) == []
    assert state.status()[0] == "UPDATING" and "boom" in state.status()[1]
    assert [type(c) for c in state.reconcile(10.0)] == [StartReplicaCmd]


def test_a_replica_failing_health_checks_past_the_threshold_is_replaced() -> None:
    state, _ = make(1, health_check_period_s=1.0)
    settle(state)
    (record,) = state.serving()
    for attempt in range(3):
        cmds = state.reconcile(10.0 * (attempt + 1))
        (check,) = [c for c in cmds if isinstance(c, HealthCheckCmd)]
        stop = state.on_health(record.replica_id, False, 0, "TimeoutError", 10.0 * (attempt + 1))
    assert isinstance(stop, StopReplicaCmd) and stop.timeout_s == 0.0
    assert state.status()[0] == "UNHEALTHY" and "failed 3 health checks" in state.status()[1]
    state.on_stopped(record.replica_id)
    assert [type(c) for c in state.reconcile(40.0)] == [StartReplicaCmd]


def test_health_checks_are_due_once_per_period_and_cost_nothing_between() -> None:
    state, _ = make(3, health_check_period_s=5.0)
    settle(state, now=0.0)
    assert state.reconcile(2.4) == [], "first checks are spread over [0.5, 1.5) periods"
    checks = state.reconcile(7.5)
    assert len(checks) == 3 and all(isinstance(c, HealthCheckCmd) for c in checks)
    assert state.reconcile(8.0) == [], "a check in flight is not sent again"
    for c in checks:
        state.on_health(c.replica.replica_id, True, 2, "", 8.0)
    assert state.reconcile(12.9) == []
    assert len(state.reconcile(13.0)) == 3


def test_replicas_lost_with_their_node_are_replaced_on_the_other_nodes() -> None:
    state, cluster = make(4)
    settle(state)
    cluster.remove_node("n0")
    state.on_node_lost("n0", "no heartbeat")
    assert state.status()[0] == "UNHEALTHY" and "n0" in state.status()[1]
    starts = [c for c in state.reconcile(0.0) if isinstance(c, StartReplicaCmd)]
    assert len(starts) == 2 and {c.replica.node_id for c in starts} == {"n1"}


def test_not_enough_resources_leaves_the_rest_waiting_with_a_message() -> None:
    state, cluster = make(3, nodes=1, cpu=2.0, actor_options={"num_cpus": 1})
    starts = state.reconcile(0.0)
    assert len(starts) == 2
    assert "waiting for resources" in state.status()[1]
    cluster.add_node("n9", "ipc://n9", {"CPU": 1})
    assert len(state.reconcile(0.0)) == 1


def test_delete_stops_everything_and_releases_resources() -> None:
    state, cluster = make(2, actor_options={"num_cpus": 1})
    settle(state)
    state.delete()
    stops = state.reconcile(0.0)
    assert len(stops) == 2 and all(isinstance(c, StopReplicaCmd) for c in stops)
    assert not state.finished_deleting
    for c in stops:
        state.on_stopped(c.replica.replica_id)
    assert state.finished_deleting
    assert all(n.available["CPU"] == 100.0 for n in cluster.nodes)


def test_the_membership_version_changes_only_when_the_serving_set_changes() -> None:
    state, _ = make(2)
    settle(state)
    version = state.membership_version
    state.reconcile(1.0)
    assert state.membership_version == version
    state.set_target(spec(), state.config.replace(num_replicas=1))
    answer_health_checks(state, state.reconcile(1.0))
    assert state.membership_version == version
    state.reconcile(1.0)
    assert state.membership_version == version + 1


def test_a_downscale_asks_the_running_replicas_their_load_and_stops_the_one_idle_now() -> None:
    state, _ = make(3)
    settle(state)
    busy_then, busy_now, idle = state.serving()
    busy_then.ongoing = 0  # what the last periodic checks said: everyone idle but the first
    busy_now.ongoing, idle.ongoing = 0, 4
    state.set_target(spec(), state.config.replace(num_replicas=2))
    asked = state.reconcile(5.0)
    assert sorted(c.replica.replica_id for c in asked if isinstance(c, HealthCheckCmd)) == sorted(r.replica_id for r in (busy_then, busy_now, idle))
    assert state.status() == ("DOWNSCALING", "downscaling from 3 to 2 replicas; asking 3 running replicas their load to stop the least loaded")
    answer_health_checks(state, asked[:2], {busy_then.replica_id: 3, busy_now.replica_id: 2}, now=5.1)
    assert not [c for c in state.reconcile(5.1) if isinstance(c, StopReplicaCmd)], "one answer is still missing"
    answer_health_checks(state, asked[2:], {idle.replica_id: 0}, now=5.2)
    assert [c.replica.replica_id for c in state.reconcile(5.2) if isinstance(c, StopReplicaCmd)] == [idle.replica_id]


def test_a_downscale_whose_load_questions_go_unanswered_goes_on_after_the_probe_window_with_what_it_last_heard() -> None:
    from actors.serve.head._reconcile import LOAD_PROBE_S

    state, _ = make(3)
    settle(state)
    records = state.serving()
    for load, record in zip((2, 1, 7), records):
        record.ongoing = load
    state.set_target(spec(), state.config.replace(num_replicas=2))
    state.reconcile(5.0)
    assert not [c for c in state.reconcile(5.0 + LOAD_PROBE_S / 2) if isinstance(c, StopReplicaCmd)]
    stops = [c.replica.replica_id for c in state.reconcile(5.0 + LOAD_PROBE_S) if isinstance(c, StopReplicaCmd)]
    assert stops == [records[1].replica_id]


def test_a_replica_that_dies_while_stopping_is_not_reported_as_unhealthy() -> None:
    state, _ = make(1)
    settle(state)
    state.set_target(spec(), state.config.replace(num_replicas=0))
    (stop,) = state.reconcile(0.0)
    state.on_died(stop.replica.replica_id, "gone")
    state.reconcile(0.0)
    assert state.status() == ("HEALTHY", "")


def test_a_converged_deployment_needs_no_reconcile_until_something_changes_or_a_check_is_due() -> None:
    state, _ = make(2, health_check_period_s=5.0)
    assert state.needs_reconcile(0.0)
    settle(state, now=0.0)
    state.reconcile(0.0)
    assert not state.needs_reconcile(1.0)
    assert state.needs_reconcile(8.0), "a health check falls due within 1.5 periods"
    state.set_target(spec(), state.config.replace(num_replicas=3))
    assert state.needs_reconcile(1.0)
    settle(state, now=1.0)
    state.reconcile(1.0)
    assert not state.needs_reconcile(1.0)
    state.on_died(state.serving()[0].replica_id, "gone")
    assert state.needs_reconcile(1.0)


def test_a_deployment_waiting_for_a_start_retry_stays_due_until_the_retry() -> None:
    state, _ = make(1)
    (first,) = state.reconcile(0.0)
    state.on_start_failed(first.replica.replica_id, "boom", 0.0)
    assert state.reconcile(0.0) == []
    assert state.needs_reconcile(0.01)
    assert [type(c) for c in state.reconcile(10.0)] == [StartReplicaCmd]


def test_a_replica_id_drawn_twice_by_chance_is_drawn_again_and_the_deployment_still_starts(monkeypatch: Any) -> None:
    from actors.serve.head import _ids

    draws = iter(["aaaaaaaa", "aaaaaaaa", "aaaaaaaa", "bbbbbbbb"])  # the second replica draws the first one's id twice
    monkeypatch.setattr(_ids.secrets, "token_hex", lambda n: next(draws))
    state, _ = make(2)
    cmds = state.reconcile(0.0)
    assert sorted(c.replica.replica_id for c in cmds) == ["app.d.aaaaaaaa", "app.d.bbbbbbbb"]
    assert state.replica_states() == {"STARTING": 2}
