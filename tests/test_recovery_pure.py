"""Checkpoints and re-adoption after a controller restart: the pure parts (no sockets, no threads)."""

from __future__ import annotations

from pathlib import Path

import pytest

from actors.serve.head._deployment_state import DeploymentState, make_limits
from actors.serve.head._commands import HealthCheckCmd, StartReplicaCmd, StopReplicaCmd
from actors.serve.head._gang_placement import Reservation
from actors.serve._options import DeploymentConfig
from actors.serve.head._placement import Cluster
from actors.serve.head._recovery import CheckpointError
from actors.serve.head._store import load_checkpoint
from actors.serve.head._replica_states import ReplicaState
from actors.serve.head._store import SqliteStore, StoreError, open_store
from protocol import (
    CHECKPOINT_FORMAT,
    Checkpoint,
    CheckpointApp,
    CheckpointNode,
    CorruptCheckpoint,
    decode_checkpoint,
    encode_checkpoint,
)

from .test_deployment_state import settle, spec

S = ReplicaState


def running_state(num_replicas: int = 2, **options: object) -> tuple[DeploymentState, Cluster]:
    cluster = Cluster()
    for i in range(2):
        cluster.add_node(f"n{i}", f"tcp://10.0.0.{i}:1", {"CPU": 8})
    state = DeploymentState(spec(), DeploymentConfig(num_replicas=num_replicas, **options), cluster, make_limits(3, 20, 3))
    settle(state)
    assert state.replicas.count([S.RUNNING]) == num_replicas
    return state, cluster


def restored_copy(state: DeploymentState) -> tuple[DeploymentState, Cluster]:
    """What a restarted controller builds from this state's checkpoint entry (via bytes)."""
    checkpoint = Checkpoint(CHECKPOINT_FORMAT, 0, 0.0, [CheckpointApp("app", "d", False, [state.checkpoint()])], [], [], [])
    entry = decode_checkpoint(encode_checkpoint(checkpoint)).apps[0].deployments[0]
    cluster = Cluster()
    for i in range(2):
        cluster.add_node(f"n{i}", f"tcp://10.0.0.{i}:1", {"CPU": 8})
    again = DeploymentState(state.spec, DeploymentConfig.from_dict(entry.config), cluster, make_limits(3, 20, 3))
    again.restore(entry)
    return again, cluster


def on_node(state: DeploymentState, node: str) -> set[str]:
    return {rid for rid, _, r in state.replicas.items() if r.node_id == node}


def test_restored_replicas_wait_in_recovering_and_nothing_is_decided_meanwhile() -> None:
    state, _ = running_state()
    again, _ = restored_copy(state)
    assert again.replica_states() == {"RECOVERING": 2}
    assert not again.needs_reconcile(1.0)
    assert {r.replica_id for r in again.serving()} == set(state.replicas.ids()), "handles keep the replicas they know"


def test_live_replicas_are_readopted_as_running_without_a_start() -> None:
    state, _ = running_state()
    again, _ = restored_copy(state)
    for node in ("n0", "n1"):
        adopted = again.recover_node(node, on_node(again, node), set(), 1.0)
        assert adopted == len(on_node(state, node))
    assert again.take_queued() == []
    assert again.replica_states() == {"RUNNING": 2}
    cmds = again.reconcile(1.0)
    assert [type(c) for c in cmds] == [HealthCheckCmd] * 2, "adopted replicas are checked at once; nothing starts or stops"
    assert again.status()[0] == "HEALTHY"


def test_a_replica_gone_from_its_worker_is_dropped_and_then_replaced() -> None:
    state, _ = running_state()
    again, _ = restored_copy(state)
    gone = next(iter(on_node(again, "n0")))
    again.recover_node("n0", set(), set(), 1.0)
    again.recover_node("n1", on_node(again, "n1"), set(), 1.0)
    assert gone not in again.replicas
    cmds = again.reconcile(1.0)
    assert sorted(type(c).__name__ for c in cmds) == ["HealthCheckCmd", "StartReplicaCmd"]


def test_a_replica_still_starting_is_asked_to_start_again_and_a_stopping_one_to_stop() -> None:
    state, _ = running_state(num_replicas=2)
    first, second = state.replicas.ids()
    state.replicas.move(first, S.STARTING)
    state.replicas.move(second, S.STOPPING)
    again, _ = restored_copy(state)
    for node in ("n0", "n1"):
        ids = on_node(again, node)
        again.recover_node(node, ids - {first}, ids & {first}, 1.0)
    queued = again.take_queued()
    kinds = {c.replica.replica_id: type(c) for c in queued}
    assert kinds == {first: StartReplicaCmd, second: StopReplicaCmd}
    assert again.replicas.state_of(first) is S.STARTING and again.replicas.state_of(second) is S.STOPPING


def test_a_gang_is_recovered_with_its_context_and_a_dead_member_takes_the_gang_down() -> None:
    gang = {"gang_size": 2, "gang_placement_strategy": "STRICT_SPREAD"}
    state, _ = running_state(num_replicas=2, gang_scheduling_config=gang, actor_options={"num_cpus": 1})
    alive, _ = restored_copy(state)
    for node in ("n0", "n1"):
        alive.recover_node(node, on_node(alive, node), set(), 1.0)
    [g] = alive.gangs.values()
    assert g.ready == set(g.members) and alive.replica_states() == {"RUNNING": 2}
    assert g.reservation == next(iter(state.gangs.values())).reservation

    broken, _ = restored_copy(state)
    broken.recover_node("n0", set(), set(), 1.0)  # the rank on n0 died while the controller was down
    stops = [c for c in broken.take_queued() if isinstance(c, StopReplicaCmd)]
    assert [c.replica.node_id for c in stops] == ["n1"], "its sibling is stopped with it (RESTART_GANG)"


def test_restoring_the_resource_book_counts_replicas_and_reservations_and_skips_unknown_nodes() -> None:
    cluster = Cluster()
    cluster.add_node("n0", "tcp://a:1", {"CPU": 4})
    skipped = cluster.restore(
        [("n0", {"CPU": 1}), ("gone", {"CPU": 1})],
        [Reservation("r1", ("n0", "gone"), {"CPU": 2}, ("tcp://a:1", "tcp://b:1"))],
    )
    assert skipped == 2
    assert cluster.get("n0").available == {"CPU": 1.0}  # type: ignore[union-attr]
    assert [r.name for r in cluster.reservations] == ["r1"]


def test_a_checkpoint_survives_the_round_trip_through_bytes() -> None:
    state, _ = running_state()
    checkpoint = Checkpoint(
        CHECKPOINT_FORMAT, 3, 12.5, [CheckpointApp("app", "d", False, [state.checkpoint()])],
        [CheckpointNode("n0", "tcp://10.0.0.0:1", {"CPU": 8.0})], [], [],
    )
    assert decode_checkpoint(encode_checkpoint(checkpoint)) == checkpoint


@pytest.mark.parametrize(
    "blob, says",
    [
        (b"\xc1garbage", "not a msgpack document"),
        (b"\x93\x07\x00\x00", "format 7"),
        (b"\x97\x01\x00\xcb" + b"\x00" * 8 + b"\x91\x01\x90\x90\x90", "checkpoint.apps[0]"),
    ],
)
def test_a_corrupt_checkpoint_names_what_is_wrong(blob: bytes, says: str) -> None:
    with pytest.raises(CorruptCheckpoint, match=says.replace("[", r"\[").replace("]", r"\]")):
        decode_checkpoint(blob)


def test_loading_says_clearly_when_the_checkpoint_is_corrupt_or_missing_and_fresh_starts_empty(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "cp.sqlite")
    try:
        assert load_checkpoint(store, "auto") is None, "a new cluster starts empty"
        with pytest.raises(CheckpointError, match="no checkpoint in sqlite://.*--fresh"):
            load_checkpoint(store, "required")
        store.save(b"\x00not a checkpoint")
        with pytest.raises(CheckpointError, match="is corrupt .*--fresh"):
            load_checkpoint(store, "auto")
        assert load_checkpoint(store, "fresh") is None
        assert store.load() is None, "fresh discards the checkpoint"
    finally:
        store.close()
    assert (tmp_path / "cp.sqlite").stat().st_mode & 0o077 == 0, "only the cluster's user can read it"


def test_a_store_url_that_names_nothing_usable_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="expected sqlite:///path or redis://"):
        open_store("file:///x")
    with pytest.raises(StoreError, match="no file named"):
        open_store("sqlite:")
    store = open_store(f"sqlite:///{tmp_path}/a/b.sqlite")
    store.save(b"x")
    assert store.load() == b"x"
    store.close()


def test_a_new_version_deployed_during_recovery_waits_for_it_and_then_rolls() -> None:
    state, _ = running_state()
    again, _ = restored_copy(state)
    again.set_target(spec("v2"), again.config)
    assert not again.needs_reconcile(1.0), "no decision while replicas wait to be recovered"
    for node in ("n0", "n1"):
        again.recover_node(node, on_node(again, node), set(), 1.0)
    cmds = again.reconcile(1.0)
    assert any(isinstance(c, StartReplicaCmd) and c.spec.version == "v2" for c in cmds)
    assert again.status()[0] == "UPDATING"
