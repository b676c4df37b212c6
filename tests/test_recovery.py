"""A controller SIGKILLed and started again: real head and worker processes, real sockets."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from actors import Config, ServeSettings, serve
from actors.serve.head._store import SqliteStore
from protocol import CHECKPOINT_FORMAT, Checkpoint, CheckpointNode, CheckpointReservation, encode_checkpoint
from scripts._local_cluster import LocalCluster
from transport import TransportConfig

from .conftest import FAST
from .helpers import Traffic, wait_for
from .serve_apps import Echo, Ingress, Model, Shard

SETTINGS = {"reconcile_interval_s": 0.05, "recovery_timeout_s": 3.0, "recovery_retry_s": 0.2, "control_timeout_s": 10.0}


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    """A head and two workers in their own processes; this process connects as a client."""
    local = LocalCluster(tmp_path, settings=SETTINGS, transport=dict(FAST))
    try:
        local.start_head()
        for node in ("w0", "w1"):
            local.start_worker(node)
        serve.start(address=local.address, config=Config(transport=TransportConfig(**FAST), serve=ServeSettings(**SETTINGS)))
        yield local
    finally:
        serve.shutdown()
        local.close()


def stats() -> dict[str, Any]:
    return serve.controller_stats()


def distinct_answers(call: Callable[[], dict[str, Any]], key: str, n: int) -> dict[str, dict[str, Any]]:
    """Call until ``n`` distinct replicas (by ``key``) have answered; their answers by that key."""
    seen: dict[str, dict[str, Any]] = {}

    def enough() -> bool:
        answer = call()
        seen[answer[key]] = answer
        return len(seen) >= n

    wait_for(enough, 30, f"{n} distinct replicas to answer")
    return seen


def replicas_by_id(app: str = "default") -> dict[str, dict[str, Any]]:
    handle = serve.get_app_handle(app)
    return distinct_answers(lambda: handle.whoami.remote().result(10), "replica_id", 2)


def stats_once_reachable() -> dict[str, Any] | None:
    """The controller's statistics, or None while this client still sees the old head as dead."""
    try:
        return stats()
    except Exception:
        return None


def recovered() -> dict[str, Any] | None:
    s = stats_once_reachable()
    return s if s is not None and s["recovery"]["recovery_s"] is not None else None


def test_a_controller_killed_and_restarted_readopts_every_replica_without_restarting_it(cluster: LocalCluster) -> None:
    serve.run(Echo.bind("a:"), name="default")
    before = replicas_by_id()
    cluster.kill_head()
    info = cluster.start_head(recovery="required")
    assert info["recovery"]["epoch"] == 1
    after = wait_for(recovered, 30, "the recovery to finish")
    assert after["recovery"]["adopted"] == 2 and after["recovery"]["dropped"] == 0
    assert after["leaked_reservations"] == 0
    wait_for(lambda: serve.status().applications["default"].status == "RUNNING", 20, "the app to be RUNNING")
    again = replicas_by_id()
    assert {k: v["pid"] for k, v in again.items()} == {k: v["pid"] for k, v in before.items()}, "same replicas, same processes"
    assert serve.get_app_handle("default").remote("x").result(10) == "a:x"


def test_handles_keep_serving_while_the_controller_is_down(cluster: LocalCluster) -> None:
    serve.run(Echo.bind(), name="default")
    handle = serve.get_app_handle("default")
    assert handle.remote(1).result(10) == "1"
    cluster.kill_head()
    with Traffic(lambda: handle.remote(2).result(10), threads=2) as traffic:
        wait_for(lambda: len(traffic.answers) >= 200, 30, "200 answers with the controller down")
    assert traffic.failures == []
    cluster.start_head()
    wait_for(recovered, 30, "the recovery to finish")
    assert handle.remote(3).result(10) == "3"


def test_composed_deployments_keep_calling_each_other_while_the_controller_is_down(cluster: LocalCluster) -> None:
    handle = serve.run(Ingress.bind(Model.bind(2.0), 1.0), name="composed", route_prefix=None)
    cluster.kill_head()
    with Traffic(lambda: handle.remote(3.0).result(10), threads=2) as traffic:
        wait_for(lambda: len(traffic.answers) >= 100, 30, "100 answers through both deployments with the controller down")
    assert traffic.failures == [] and set(traffic.answers) == {7.0}


def test_a_replica_whose_worker_died_while_the_controller_was_down_is_replaced_on_the_other(cluster: LocalCluster) -> None:
    serve.run(Echo.bind(), name="default")
    before = replicas_by_id()
    cluster.kill_head()
    cluster.kill_worker("w0")
    cluster.start_head()
    after = wait_for(recovered, 30, "the recovery to finish")
    assert after["recovery"]["adopted"] == 1
    wait_for(lambda: serve.status().applications["default"].status == "RUNNING", 30, "a replacement on w1")
    nodes = {n.node_id for n in serve.status().nodes}
    assert nodes == {"w1"}
    kept = {rid for rid, w in before.items() if w["node"] == "w1"}
    assert kept <= set(replicas_by_id()), "the live replica was kept, not restarted"


def test_a_gang_is_readopted_whole_with_its_context_and_reservation(cluster: LocalCluster) -> None:
    serve.run(Shard.options(num_replicas=4).bind(), name="gang", route_prefix=None)
    handle = serve.get_app_handle("gang")
    before = distinct_answers(lambda: handle.remote().result(10), "replica", 4)
    reservations = [r.name for r in serve.status().reservations]
    cluster.kill_head()
    cluster.start_head()
    after = wait_for(recovered, 30, "the recovery to finish")
    assert after["recovery"]["adopted"] == 4 and after["leaked_reservations"] == 0
    assert [r.name for r in serve.status().reservations] == reservations
    assert distinct_answers(lambda: handle.remote().result(10), "replica", 4) == before, "same members, same ranks, same gang and reservation"


def test_a_corrupt_checkpoint_stops_the_head_with_a_clear_error_and_only_fresh_starts_empty(cluster: LocalCluster) -> None:
    serve.run(Echo.bind(), name="default")
    cluster.kill_head()
    with sqlite3.connect(cluster.folder / "checkpoint.sqlite") as db:
        db.execute("UPDATE checkpoint SET blob = ?", (b"\x92\x01garbage",))
    with pytest.raises(RuntimeError, match="exited with code 2"):
        cluster.start_head()
    log = (cluster.folder / "head.log").read_text()
    assert "error: the checkpoint in sqlite:///" in log and "is corrupt" in log and "--fresh" in log
    cluster.start_head(recovery="fresh")
    assert wait_for(stats_once_reachable, 10, "the fresh head to answer")["recovery"]["epoch"] == 0
    assert serve.status().applications == {}
    # the workers' hellos find them unknown: they stop their stale replicas and register again
    wait_for(lambda: {n.node_id for n in serve.status().nodes} == {"w0", "w1"}, 30, "the workers to register again")


def test_a_missing_checkpoint_when_one_is_required_is_an_error(cluster: LocalCluster) -> None:
    cluster.kill_head()
    with sqlite3.connect(cluster.folder / "checkpoint.sqlite") as db:
        db.execute("DELETE FROM checkpoint")
    with pytest.raises(RuntimeError, match="exited with code 2"):
        cluster.start_head(recovery="required")
    assert "error: no checkpoint in sqlite:///" in (cluster.folder / "head.log").read_text()


def test_leaked_reservations_are_released_only_once_every_worker_has_answered(tmp_path: Path, peer: Callable[..., Any]) -> None:
    confused = peer({"node": "tests.helpers:Echo"})  # alive, but answers "what do you run?" with nonsense
    path = tmp_path / "cp.sqlite"
    store = SqliteStore(path)
    store.save(encode_checkpoint(Checkpoint(
        CHECKPOINT_FORMAT, 0, 0.0, [], [CheckpointNode("confused", confused.address, {"CPU": 2.0})],
        [CheckpointReservation("reservation-leak", ["confused"], {"CPU": 1.0}, [confused.address])], [],
    )))
    store.close()
    settings = ServeSettings(
        checkpoint_store=f"sqlite:///{path}", checkpoint_recovery="required",
        recovery_retry_s=0.1, recovery_timeout_s=3.0, reconcile_interval_s=0.05,
    )
    serve.start(workers=[], config=Config(transport=TransportConfig(**FAST), serve=settings), http_options={"port": 0})
    try:
        during = wait_for(lambda: (s := stats())["recovery"]["query_failures"] >= 3 and s, 10, "three failed asks")
        assert during["recovery"]["recovering_workers"] == ["confused"]
        assert during["leaked_reservations"] == 1, "clean-up waits while a worker has not answered"
        assert during["recovery"]["leaked_reservations_released"] == 0
        after = wait_for(recovered, 10, "the worker to be given up")
        assert after["recovery"]["workers_given_up"] == 1
        assert after["recovery"]["leaked_reservations_released"] == 1 and after["leaked_reservations"] == 0
    finally:
        serve.shutdown()


def test_replicas_on_a_worker_the_checkpoint_does_not_list_are_replaced_not_waited_for(tmp_path: Path) -> None:
    from actors.serve.head._deployment_state import DeploymentState, make_limits
    from actors.serve._options import DeploymentConfig
    from actors.serve.head._placement import Cluster
    from protocol import CheckpointApp, DeploymentSpec

    spec = DeploymentSpec("default", "Echo", "tests.serve_apps:Echo", None, [], {}, {}, "v1")
    cluster = Cluster()
    cluster.add_node("vanished", "tcp://127.0.0.1:1", {"CPU": 4})
    state = DeploymentState(spec, DeploymentConfig(num_replicas=1), cluster, make_limits(3, 20, 3))
    state.reconcile(0.0)  # one STARTING replica on "vanished"
    path = tmp_path / "cp.sqlite"
    store = SqliteStore(path)
    store.save(encode_checkpoint(Checkpoint(
        CHECKPOINT_FORMAT, 0, 0.0, [CheckpointApp("default", "Echo", False, [state.checkpoint()])], [], [], [],
    )))
    store.close()
    settings = ServeSettings(checkpoint_store=f"sqlite:///{path}", checkpoint_recovery="required", reconcile_interval_s=0.05)
    serve.start(workers=[], config=Config(transport=TransportConfig(**FAST), serve=settings), http_options={"port": 0})
    try:
        after = wait_for(recovered, 10, "the recovery to finish")
        assert after["recovery"]["dropped"] == 1
        deployment = serve.status().applications["default"].deployments["Echo"]
        assert deployment.replica_states == {} and "waiting for resources" in deployment.message
    finally:
        serve.shutdown()


def test_a_process_whose_subscription_the_restarted_controller_lost_subscribes_again(cluster: LocalCluster) -> None:
    import dataclasses

    from protocol import decode_checkpoint

    serve.run(Echo.bind(), name="default")
    handle = serve.get_app_handle("default")
    cluster.kill_head()
    store = SqliteStore(cluster.folder / "checkpoint.sqlite")
    try:  # a checkpoint written before this process subscribed, say
        checkpoint = decode_checkpoint(store.load() or b"")
        store.save(encode_checkpoint(dataclasses.replace(checkpoint, subscribers=[])))
    finally:
        store.close()
    cluster.start_head(recovery="required")
    wait_for(recovered, 30, "the recovery to finish")
    serve.run(Echo.options(num_replicas=3).bind(), name="default")
    distinct_answers(lambda: handle.whoami.remote().result(10), "replica_id", 3)  # only if replica sets reach us again


def test_a_worker_restarted_while_the_controller_was_down_registers_and_its_old_replicas_are_replaced(cluster: LocalCluster) -> None:
    serve.run(Echo.bind(), name="default")
    before = replicas_by_id()
    cluster.kill_head()
    cluster.kill_worker("w0")
    cluster.start_head()
    cluster.start_worker("w0")  # the same node id from a new process (a supervisor restarted it)
    wait_for(recovered, 30, "the recovery to finish")
    wait_for(lambda: serve.status().applications["default"].status == "RUNNING", 30, "the app to be RUNNING")
    after = replicas_by_id()
    assert {rid for rid, w in before.items() if w["node"] == "w1"} <= set(after)
    assert not {rid for rid, w in before.items() if w["node"] == "w0"} & set(after)
    assert {n.node_id for n in serve.status().nodes} == {"w0", "w1"}
