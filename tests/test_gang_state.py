"""Gangs in the deployment state machine (pure): all or nothing, RESTART_GANG."""

from __future__ import annotations

from typing import Any

from actors.serve.head._deployment_state import DeploymentState, make_limits
from actors.serve.head._commands import StartReplicaCmd, StopReplicaCmd
from actors.serve._options import DeploymentConfig
from actors.serve.head._placement import Cluster
from actors.serve.head._replica_states import ReplicaState
from protocol import DeploymentSpec

S = ReplicaState


def spec(version: str = "v1") -> DeploymentSpec:
    return DeploymentSpec("app", "shard", "m:C", None, [], {}, {}, version)


def make(num_replicas: int = 8, size: int = 4, nodes: int = 2, cpu: float = 1.0, strategy: str = "PACK") -> tuple[DeploymentState, Cluster]:
    cluster = Cluster()
    for i in range(nodes):
        cluster.add_node(f"n{i}", f"ipc://n{i}", {"CPU": cpu})
    config = DeploymentConfig(
        num_replicas=num_replicas,
        actor_options={"num_cpus": 0.25},
        health_check_period_s=1.0,
        gang_scheduling_config={"gang_size": size, "gang_placement_strategy": strategy},
    )
    return DeploymentState(spec(), config, cluster, make_limits(3, 20, 2)), cluster


def start_all(state: DeploymentState, now: float = 0.0) -> list[StartReplicaCmd]:
    starts = [c for c in state.reconcile(now) if isinstance(c, StartReplicaCmd)]
    for c in starts:
        state.on_started(c.replica.replica_id, now)
    return starts


def test_each_gang_is_reserved_and_started_with_its_context() -> None:
    state, _ = make()
    starts = [c for c in state.reconcile(0.0) if isinstance(c, StartReplicaCmd)]
    assert len(starts) == 8
    gangs: dict[str, list[Any]] = {}
    for c in starts:
        gangs.setdefault(c.gang["gang_id"], []).append(c.gang)
    assert len(gangs) == 2
    for members in gangs.values():
        assert sorted(m["rank"] for m in members) == [0, 1, 2, 3]
        assert {tuple(m["member_replica_ids"]) for m in members} == {tuple(members[0]["member_replica_ids"])}
        assert all(m["world_size"] == 4 and m["reservation_name"].startswith("reservation-") for m in members)
    assert len(state.reservations()) == 2


def test_pack_puts_each_gang_on_one_worker() -> None:
    state, _ = make()
    starts = [c for c in state.reconcile(0.0) if isinstance(c, StartReplicaCmd)]
    for c in starts:
        peers = [o.replica.node_id for o in starts if o.gang["gang_id"] == c.gang["gang_id"]]
        assert len(set(peers)) == 1


def test_spread_puts_members_on_distinct_workers() -> None:
    state, _ = make(num_replicas=2, size=2, nodes=2, strategy="STRICT_SPREAD")
    starts = [c for c in state.reconcile(0.0) if isinstance(c, StartReplicaCmd)]
    assert {c.replica.node_id for c in starts} == {"n0", "n1"}


def test_members_never_join_the_serving_set_one_by_one() -> None:
    state, _ = make(num_replicas=4)
    starts = [c for c in state.reconcile(0.0) if isinstance(c, StartReplicaCmd)]
    version = state.membership_version
    for c in starts[:3]:
        state.on_started(c.replica.replica_id, 0.0)
        assert state.serving() == [] and state.membership_version == version
    state.on_started(starts[3].replica.replica_id, 0.0)
    assert len(state.serving()) == 4


def test_a_member_failing_to_start_stops_its_whole_gang_counts_once_and_retries_the_gang() -> None:
    state, cluster = make(num_replicas=4)
    starts = [c for c in state.reconcile(0.0) if isinstance(c, StartReplicaCmd)]
    state.on_started(starts[0].replica.replica_id, 0.0)
    state.on_start_failed(starts[1].replica.replica_id, "boom", 0.0)
    state.on_start_failed(starts[2].replica.replica_id, "boom too", 0.0)
    assert state._failures.count == 1, "one failure for the gang, not one per member"
    stops = [c for c in state.reconcile(0.0) if isinstance(c, StopReplicaCmd)]
    assert {c.replica.replica_id for c in stops} == {starts[0].replica.replica_id, starts[3].replica.replica_id}
    assert all(c.timeout_s == 0.0 for c in stops)
    assert state.serving() == []
    for c in stops:
        state.on_stopped(c.replica.replica_id)
    assert state.reservations() == [] and cluster.nodes[0].available["CPU"] == 1.0
    retry = [c for c in state.reconcile(100.0) if isinstance(c, StartReplicaCmd)]
    assert len(retry) == 4 and len({c.gang["gang_id"] for c in retry}) == 1


def test_a_constructor_that_always_fails_ends_in_deploy_failed_with_nothing_running() -> None:
    state, cluster = make(num_replicas=4)
    now = 0.0
    for _ in range(100):
        for c in state.reconcile(now):
            if isinstance(c, StartReplicaCmd):
                state.on_start_failed(c.replica.replica_id, "RuntimeError: no GPU", now)
            elif isinstance(c, StopReplicaCmd):
                state.on_stopped(c.replica.replica_id)
        if state.failed:
            break
        now += 10
    status, message = state.status()
    assert status == "DEPLOY_FAILED" and "failed 3 times (counting gangs)" in message
    assert state.serving() == [] and state.reservations() == []


def test_one_member_failing_health_checks_restarts_its_gang_while_the_other_gang_serves() -> None:
    state, _ = make()
    start_all(state)
    state.reconcile(0.1)
    assert state.status() == ("HEALTHY", "")
    gangs = {}
    for r in state.serving():
        gangs.setdefault(r.gang_id, []).append(r.replica_id)
    sick_gang, healthy_gang = list(gangs)
    sick = gangs[sick_gang][2]
    stop = None
    for i in range(2):
        stop = state.on_health(sick, False, 0, "TimeoutError", float(i))
    assert isinstance(stop, StopReplicaCmd)
    serving = {r.replica_id for r in state.serving()}
    assert serving == set(gangs[healthy_gang]), "only the healthy gang serves; the sick gang left whole"
    siblings = [c for c in state.reconcile(5.0) if isinstance(c, StopReplicaCmd)]
    assert {c.replica.replica_id for c in siblings} == set(gangs[sick_gang]) - {sick}
    assert "with its whole gang" in state.status()[1]


def test_a_member_that_dies_takes_its_gang_down_and_a_new_gang_starts() -> None:
    state, _ = make()
    start_all(state)
    victim = state.serving()[0]
    state.on_died(victim.replica_id, "worker killed")
    cmds = state.reconcile(1.0)
    stops = [c for c in cmds if isinstance(c, StopReplicaCmd)]
    assert len(stops) == 3
    for c in stops:
        state.on_stopped(c.replica.replica_id)
    starts = [c for c in state.reconcile(2.0) if isinstance(c, StartReplicaCmd)]
    assert len(starts) == 4 and len(state.serving()) == 4


def test_sibling_clean_up_covers_members_pending_migration() -> None:
    state, _ = make(num_replicas=4)
    start_all(state)
    members = [r.replica_id for r in state.serving()]
    state.replicas.move(members[1], S.PENDING_MIGRATION)
    state.on_died(members[0], "gone")
    stops = {c.replica.replica_id for c in state.reconcile(1.0) if isinstance(c, StopReplicaCmd)}
    assert members[1] in stops and stops == set(members[1:])


def test_leftover_capacity_never_starts_a_partial_gang_and_waiting_gangs_start_when_a_worker_joins() -> None:
    state, cluster = make(num_replicas=12)
    starts = start_all(state)
    assert len(starts) == 8 and len(state.serving()) == 8
    assert state.status()[0] == "UPDATING" and "waiting for resources: a gang of 4" in state.status()[1]
    assert state.reconcile(0.1) == []
    cluster.add_node("n9", "ipc://n9", {"CPU": 1.0})
    state._dirty = True  # the controller marks deployments dirty when a worker joins
    more = start_all(state, 2.0)
    assert len(more) == 4 and len(state.serving()) == 12


def test_scaling_moves_whole_gangs() -> None:
    state, _ = make()
    start_all(state)
    state.set_target(spec(), state.config.replace(num_replicas=4))
    stops = [c for c in state.reconcile(1.0) if isinstance(c, StopReplicaCmd)]
    assert len(stops) == 4 and len({c.replica.gang_id for c in stops}) == 1
    for c in stops:
        state.on_stopped(c.replica.replica_id)
    state.set_target(spec(), state.config.replace(num_replicas=8))
    assert len(start_all(state, 2.0)) == 4 and len(state.serving()) == 8


def test_deleting_releases_every_reservation() -> None:
    state, cluster = make()
    start_all(state)
    state.delete()
    for c in state.reconcile(0.1):
        state.on_stopped(c.replica.replica_id)
    assert state.finished_deleting and state.reservations() == []
    assert all(n.available["CPU"] == 1.0 for n in cluster.nodes)


def test_a_rolling_update_replaces_gangs_whole_and_keeps_capacity() -> None:
    state, _ = make(nodes=3)
    start_all(state)
    state.set_target(spec("v2"), state.config)
    for step in range(20):
        cmds = state.reconcile(float(step))
        assert len(state.serving()) >= 8
        if not cmds:
            break
        for c in cmds:
            if isinstance(c, StartReplicaCmd):
                state.on_started(c.replica.replica_id, float(step))
            elif isinstance(c, StopReplicaCmd):
                state.on_stopped(c.replica.replica_id)
    assert {r.version for r in state.serving()} == {"v2"} and len(state.serving()) == 8
