"""The control plane's sans-IO core, driven by events alone: no thread, no
socket, no actor. Each test feeds :class:`ControlPlane` events and asserts on
the effects it returns; a small simulated cluster answers its asks."""

from __future__ import annotations

import dataclasses
import math

import pytest
from typing import Any

from hypothesis import HealthCheck as Hc
from hypothesis import given, settings
from hypothesis import strategies as st

from actors import ServeSettings
from actors.serve._options import DeploymentConfig
from actors.serve._names import NODE_ACTOR
from actors.serve.head import _effects as fx
from actors.serve.head import _events as ev
from actors.serve.head._control_plane import ControlPlane
from actors.serve.head._deployment_state import DeploymentState
from actors.serve.head._replica_states import ReplicaState
from protocol import (
    DeleteApp,
    DeployApp,
    DeploymentSpec,
    HealthCheck,
    HealthChecks,
    ListReplicas,
    Reconfigure,
    RegisterNode,
    StartReplica,
    StopReplica,
    SubscribeReplicas,
    decode_checkpoint,
)

SUBSCRIBER = "ipc:///tmp/client.sock#serve-membership"
LIVE = (ReplicaState.STARTING, ReplicaState.UPDATING, ReplicaState.RECOVERING, ReplicaState.RUNNING, ReplicaState.PENDING_MIGRATION)


def settings_(**overrides: Any) -> ServeSettings:
    return ServeSettings(**{"recovery_timeout_s": 5.0, "recovery_retry_s": 1.0, "health_check_failure_threshold": 2, **overrides})


def deploy_message(version: str = "v1", app: str = "app", **options: Any) -> DeployApp:
    config = DeploymentConfig(**{"health_check_period_s": 1.0, "graceful_shutdown_timeout_s": 1.0, **options})
    spec = DeploymentSpec(app, "D", "m:C", None, [], {}, config.to_dict(), version)
    return DeployApp(app, "D", [spec])


class Sim:
    """Feeds a ControlPlane events at a simulated time and holds the asks it made
    until a test answers them."""

    def __init__(self, checkpointing: bool = True, **overrides: Any) -> None:
        self.core = ControlPlane(settings_(**overrides), checkpointing, "memory")
        self.now = 0.0
        self.asks: list[fx.Ask] = []
        self.gang_starts: list[fx.StartGang] = []
        self.gang_stops: list[fx.StopGang] = []
        self.published: dict[tuple[str, str], Any] = {}
        self.watches: list[fx.Watch] = []
        self.unwatched: list[str] = []
        self.tells: list[fx.Tell] = []
        self.checkpoints: list[bytes] = []
        self.effects: list[Any] = []

    def send(self, event: Any) -> Any:
        answer = self.core.handle(event, self.now, 1000.0 + self.now)
        self._take()
        return answer

    def _take(self) -> None:
        for effect in self.core.take_effects():
            self.effects.append(effect)
            if isinstance(effect, fx.Ask):
                self.asks.append(effect)
            elif isinstance(effect, fx.StartGang):
                self.gang_starts.append(effect)
            elif isinstance(effect, fx.StopGang):
                self.gang_stops.append(effect)
            elif isinstance(effect, fx.Publish):
                self.published[(effect.replica_set.app, effect.replica_set.deployment)] = effect.replica_set
            elif isinstance(effect, fx.Watch):
                self.watches.append(effect)
            elif isinstance(effect, fx.Unwatch):
                self.unwatched.append(effect.key)
            elif isinstance(effect, fx.Tell):
                self.tells.append(effect)
            elif isinstance(effect, fx.SaveCheckpoint):
                self.checkpoints.append(effect.blob)
                self.core.handle(ev.CheckpointWritten(effect.fingerprint, len(effect.blob), 0.1), self.now)
                self._take()

    def register(self, node_id: str, cpu: float = 4.0) -> None:
        self.send(ev.Register(RegisterNode(node_id, f"tcp://10.0.0.{len(self.core.nodes) + 1}:7000", {"CPU": cpu})))

    def tick(self, dt: float = 0.1) -> None:
        self.now += dt
        self.send(ev.Tick())

    def pending(self, kind: type) -> list[fx.Ask]:
        return [a for a in self.asks if isinstance(a.message, kind)]

    def answer(self, ask: fx.Ask, value: Any = True, error: str | None = None) -> None:
        self.asks.remove(ask)
        self.send(dataclasses.replace(ask.then, value=value, error=error))

    def healthy(self, ask: fx.Ask) -> Any:
        """What a healthy answer to ``ask`` is: one entry per replica for a worker's batch."""
        if isinstance(ask.message, HealthChecks):
            return [{"ongoing": 0} for _ in ask.message.actors]
        return {"ongoing": 0} if isinstance(ask.message, HealthCheck) else True

    def answer_health(self, failing: set[str] = frozenset(), error: str = "TimeoutError: no answer") -> int:  # type: ignore[assignment]
        """Answer every pending health check, a worker's batch entry by entry;
        the replicas in ``failing`` fail theirs. Returns how many replicas were answered."""
        answered = 0
        for ask in [a for a in self.asks if isinstance(a.message, (HealthCheck, HealthChecks))]:
            if isinstance(ask.message, HealthChecks):
                ids = ask.then.replica_ids
                self.answer(ask, [{"error": error} if rid in failing else {"ongoing": 0} for rid in ids])
            else:
                ids = (ask.then.replica_id,)
                ok = ask.then.replica_id not in failing
                self.answer(ask, {"ongoing": 0} if ok else None, None if ok else error)
            answered += len(ids)
        return answered

    def answer_all(self, rounds: int = 100) -> None:
        """Answer every ask and gang operation successfully until the cluster is quiet."""
        for _ in range(rounds):
            if not (self.asks or self.gang_starts or self.gang_stops):
                self.tick()
                if not (self.asks or self.gang_starts or self.gang_stops):
                    return
            for ask in list(self.asks):
                self.answer(ask, self.healthy(ask))
            for start in list(self.gang_starts):
                self.gang_starts.remove(start)
                self.send(ev.GangStarted(tuple(m.replica_id for _, m in start.members)))
            for stop in list(self.gang_stops):
                self.gang_stops.remove(stop)
                for _, message in stop.members:
                    self.send(ev.StopReplied(message.replica_id))
        raise AssertionError("the simulated cluster never settled")

    def states(self, app: str = "app") -> dict[str, int]:
        return self.core.apps[app].deployments["D"].replica_states()

    def status(self, app: str = "app") -> str:
        return self.core.apps[app].deployments["D"].status()[0]


def running_cluster(replicas: int = 2, nodes: int = 2, **options: Any) -> Sim:
    sim = Sim()
    for i in range(nodes):
        sim.register(f"n{i}")
    sim.send(ev.Subscribe(SubscribeReplicas("app", "D", SUBSCRIBER)))
    assert sim.send(ev.Deploy(deploy_message(num_replicas=replicas, **options))) == "ok"
    sim.answer_all()
    return sim


def test_a_deploy_starts_each_replica_on_a_worker_and_publishes_them_once_running() -> None:
    sim = Sim()
    sim.register("n0")
    sim.register("n1")
    assert [w.key for w in sim.watches] == ["node:n0", "node:n1"]
    sim.send(ev.Subscribe(SubscribeReplicas("app", "D", SUBSCRIBER)))
    sim.send(ev.Deploy(deploy_message(num_replicas=2)))
    starts = sim.pending(StartReplica)
    assert len(starts) == 2 and {a.address for a in starts} == {"tcp://10.0.0.1:7000", "tcp://10.0.0.2:7000"}
    assert sim.published[("app", "D")].replicas == []
    for ask in starts:
        sim.answer(ask)
    assert len(sim.published[("app", "D")].replicas) == 2
    assert sim.states() == {"RUNNING": 2} and sim.status() == "HEALTHY"
    assert sim.checkpoints, "the deploy was written to the checkpoint"
    assert {w.then.replica_id for w in sim.watches if isinstance(w.then, ev.ReplicaDied)} == {a.message.replica_id for a in starts}


def test_a_renewed_subscription_whose_version_is_current_is_answered_without_the_replicas() -> None:
    sim = running_cluster(replicas=3)
    current = sim.send(ev.Subscribe(SubscribeReplicas("app", "D", SUBSCRIBER)))
    assert len(current.replicas) == 3 and not current.unchanged
    renewed = sim.send(ev.Subscribe(SubscribeReplicas("app", "D", SUBSCRIBER, current.version)))
    assert renewed.unchanged and renewed.replicas == [] and renewed.version == current.version
    assert sim.send(ev.Subscribe(SubscribeReplicas("app", "D", SUBSCRIBER, current.version - 1))).replicas == current.replicas
    sim.send(ev.Deploy(deploy_message(num_replicas=4)))
    sim.answer_all()
    after = sim.send(ev.Subscribe(SubscribeReplicas("app", "D", SUBSCRIBER, current.version)))
    assert not after.unchanged and len(after.replicas) == 4


def test_status_rows_are_reused_within_a_second_and_rebuilt_when_a_replica_changes_or_the_second_passes() -> None:
    sim = running_cluster(replicas=2)

    def rows() -> list[Any]:
        return sim.send(ev.StatusAsked()).applications["app"].deployments["D"].replicas

    first = rows()
    assert [r.state for r in first] == ["RUNNING", "RUNNING"]
    assert rows()[0] is first[0], "nothing changed within the second: the same rows"
    sim.send(ev.Deploy(deploy_message(num_replicas=3)))
    changed = rows()
    assert len(changed) == 3 and changed[0] is not first[0]
    sim.answer_all()
    running = rows()
    assert sorted(r.state for r in running) == ["RUNNING"] * 3
    sim.now += 1.0
    assert rows()[0] is not running[0], "a new second: ages are built again"


def test_scaling_down_stops_the_extra_replicas_and_publishes_the_smaller_set() -> None:
    sim = running_cluster(replicas=3)
    sim.send(ev.Deploy(deploy_message(num_replicas=1)))
    assert not sim.pending(StopReplica), "the running replicas are asked their load first"
    assert sim.answer_health() == 3
    sim.tick(0.0)
    stops = sim.pending(StopReplica)
    assert len(stops) == 2
    assert len(sim.published[("app", "D")].replicas) == 1, "stopping replicas leave the set at once"
    sim.answer_all()
    assert sim.states() == {"RUNNING": 1}


def test_a_new_version_rolls_in_batches_and_never_runs_more_than_target_plus_surge() -> None:
    sim = running_cluster(replicas=5, nodes=3)
    sim.send(ev.Deploy(deploy_message(version="v2", num_replicas=5)))
    surge = max(1, math.ceil(0.2 * 5))
    versions_seen = set()
    for _ in range(200):
        state = sim.core.apps["app"].deployments["D"]
        assert state.replicas.count(LIVE) <= 5 + surge
        versions_seen.update(r.version for _, _, r in state.replicas.items(LIVE))
        if not sim.asks:
            sim.tick()
            if not sim.asks:
                break
        for ask in list(sim.asks):
            sim.answer(ask, sim.healthy(ask))
    assert versions_seen == {"v1", "v2"}
    assert sim.states() == {"RUNNING": 5}
    assert {r.version for _, _, r in sim.core.apps["app"].deployments["D"].replicas.items(LIVE)} == {"v2"}


def test_a_user_config_change_reconfigures_in_place_one_replica_at_a_time() -> None:
    sim = running_cluster(replicas=2)
    sim.send(ev.Deploy(deploy_message(num_replicas=2, user_config={"threshold": 3})))
    sim.tick()
    first = sim.pending(Reconfigure)
    assert len(first) == 1 and not sim.pending(StartReplica), "the other replica keeps serving"
    sim.answer(first[0])
    sim.tick()
    second = sim.pending(Reconfigure)
    assert len(second) == 1 and second[0].then.replica_id != first[0].then.replica_id
    assert all(a.message.user_config == {"threshold": 3} for a in first + second)


def test_a_replica_that_fails_its_health_checks_is_replaced() -> None:
    sim = running_cluster(replicas=2)
    sick = sim.published[("app", "D")].replicas[0].replica_id
    for _ in range(2):  # health_check_failure_threshold
        sim.now += 2.0
        sim.send(ev.Tick())
        assert sim.answer_health(failing={sick}) == 2
    assert any(a.message.replica_id == sick for a in sim.pending(StopReplica))
    sim.answer_all()
    replicas = {r.replica_id for r in sim.published[("app", "D")].replicas}
    assert sick not in replicas and len(replicas) == 2


def test_health_checks_of_replicas_sharing_a_worker_process_go_out_as_one_message_per_worker() -> None:
    sim = running_cluster(replicas=6, nodes=2, actor_options={"num_cpus": 0.1})
    sim.asks.clear()
    sim.now += 2.0
    sim.send(ev.Tick())
    batches = sim.pending(HealthChecks)
    assert not sim.pending(HealthCheck) and len(batches) == 2, "one message per worker, none per replica"
    records = {rid: rec for rid, _, rec in sim.core.apps["app"].deployments["D"].replicas.items()}
    for ask in batches:
        ids = ask.then.replica_ids
        assert ask.actor == NODE_ACTOR and len(ids) == 3
        assert ask.message.actors == [records[rid].actor for rid in ids]
        assert {sim.core.nodes[records[rid].node_id].address for rid in ids} == {ask.address}
    sick = batches[0].then.replica_ids[1]
    assert sim.answer_health(failing={sick}, error="RuntimeError: flag says sick") == 6
    failures = {rid: rec.health_failures for rid, rec in records.items()}
    assert failures == {rid: int(rid == sick) for rid in records}, "each entry counts for its own replica only"


def test_replicas_in_processes_of_their_own_are_asked_one_by_one() -> None:
    sim = Sim()
    sim.register("n0")
    sim.send(ev.Deploy(deploy_message(num_replicas=2)))
    for i, ask in enumerate(sim.pending(StartReplica)):
        sim.answer(ask, {"address": f"ipc:///tmp/replica-{i}.sock", "pid": 100 + i})
    sim.asks.clear()
    sim.now += 2.0
    sim.send(ev.Tick())
    singles = sim.pending(HealthCheck)
    assert len(singles) == 2 and not sim.pending(HealthChecks)
    assert sorted(a.address for a in singles) == ["ipc:///tmp/replica-0.sock", "ipc:///tmp/replica-1.sock"]


@pytest.mark.parametrize("answer, first, error", [
    ({"ongoing": 0}, None, "ProtocolError: the worker answered a dict for 2 health checks"),
    ([{"ongoing": 0}], None, "ProtocolError: the worker answered 1 entries for 2 health checks"),
    ([{"ongoing": 0}, "fine"], {"ongoing": 0}, "ProtocolError: a health answer is a str, not a map"),
])
def test_a_malformed_batch_of_health_answers_fails_the_checks_it_cannot_read_saying_so(answer: Any, first: Any, error: str) -> None:
    replies = ev.health_replies(ev.HealthBatchReplied(("r1", "r2"), answer))
    expected_first = ev.HealthReplied("r1", first) if first is not None else ev.HealthReplied("r1", None, error)
    assert replies == [expected_first, ev.HealthReplied("r2", None, error)]


def test_a_batch_that_could_not_be_asked_fails_every_check_in_it() -> None:
    replies = ev.health_replies(ev.HealthBatchReplied(("r1", "r2"), None, "AskTimeout: no answer"))
    assert replies == [ev.HealthReplied("r1", None, "AskTimeout: no answer"), ev.HealthReplied("r2", None, "AskTimeout: no answer")]


def test_a_gang_member_that_fails_to_start_takes_its_whole_gang_down_and_the_gang_is_retried() -> None:
    sim = Sim()
    for i in range(2):
        sim.register(f"n{i}", cpu=1.0)
    sim.send(ev.Deploy(deploy_message(num_replicas=4, actor_options={"num_cpus": 0.25}, gang_scheduling_config={"gang_size": 2})))
    assert len(sim.gang_starts) == 2 and all(len(g.members) == 2 for g in sim.gang_starts)
    failing = sim.gang_starts.pop(0)
    first, second = (m.replica_id for _, m in failing.members)
    sim.send(ev.StartReplied(first, None, "RuntimeError: cannot load the model"))
    stops = [m for stop in sim.gang_stops for _, m in stop.members]
    assert [m.replica_id for m in stops] == [second], "the sibling is stopped with its gang"
    assert sim.published.get(("app", "D")) is None or not sim.published[("app", "D")].replicas
    sim.gang_stops.clear()
    sim.send(ev.StopReplied(second))
    assert len(sim.core.cluster.reservations) == 1, "the failed gang's reservation is released once its members stopped"
    sim.answer_all()
    assert sim.states() == {"RUNNING": 4}


def test_a_dead_worker_is_unwatched_and_its_replicas_are_replaced_elsewhere() -> None:
    sim = running_cluster(replicas=2)
    on_n0 = [r.replica_id for r in sim.published[("app", "D")].replicas if r.node_id == "n0"]
    assert on_n0
    sim.send(ev.NodeDied("n0", "no heartbeat"))
    assert "node:n0" in sim.unwatched
    assert not {r.replica_id for r in sim.published[("app", "D")].replicas} & set(on_n0)
    sim.answer_all()
    assert sim.states() == {"RUNNING": 2}
    assert {r.node_id for r in sim.published[("app", "D")].replicas} == {"n1"}


def test_a_restarted_control_plane_adopts_live_replicas_without_restarting_them() -> None:
    before = running_cluster(replicas=2)
    blob = before.checkpoints[-1]
    serving = {r.replica_id for r in before.published[("app", "D")].replicas}
    after = Sim()
    after.core.restore(decode_checkpoint(blob), 0.0)
    after._take()
    inventories = after.pending(ListReplicas)
    assert {a.then.node_id for a in inventories} == {"n0", "n1"}
    for ask in inventories:
        mine = {rid: "running" for rid in serving if before.core.state_of(rid).replicas.get(rid).node_id == ask.then.node_id}
        after.answer(ask, {**mine, "stray-replica": "running"} if ask.then.node_id == "n0" else mine)
    assert not after.pending(StartReplica), "nothing is restarted"
    assert after.states() == {"RUNNING": 2}
    assert [t.message.replica_id for t in after.tells if isinstance(t.message, StopReplica)] == ["stray-replica"]
    assert after.core.recovery.stats.adopted == 2 and after.core.recovery.stats.finished_after_s is not None


def test_each_restart_counts_an_epoch_of_its_own_even_when_nothing_changed_between_them() -> None:
    blob = running_cluster(replicas=2).checkpoints[-1]
    epochs = []
    for _ in range(3):  # restarted, and restarted again before any replica changed
        again = Sim()
        again.core.restore(decode_checkpoint(blob), 0.0)
        again._take()
        epochs.append(again.core.recovery.stats.epoch)
        assert again.checkpoints, "the new epoch is written at once, before the first tick"
        blob = again.checkpoints[-1]
    assert epochs == [1, 2, 3], "replica-set versions ((epoch << 40) + version) never repeat across restarts"


def test_a_worker_that_never_answers_after_a_restart_is_given_up_and_its_replicas_replaced() -> None:
    before = running_cluster(replicas=2)
    after = Sim()
    after.core.restore(decode_checkpoint(before.checkpoints[-1]), 0.0)
    after._take()
    for ask in after.pending(ListReplicas):
        if ask.then.node_id == "n1":
            mine = {r.replica_id: "running" for r in before.published[("app", "D")].replicas if r.node_id == "n1"}
            after.answer(ask, mine)
    for _ in range(60):  # recovery_timeout_s = 5
        after.tick()
    assert "n0" not in after.core.nodes and after.core.recovery.stats.nodes_given_up == 1
    after.answer_all()
    assert after.states() == {"RUNNING": 2}


def test_deleting_an_application_stops_everything_and_releases_every_reservation() -> None:
    sim = Sim()
    for i in range(2):
        sim.register(f"n{i}", cpu=1.0)
    sim.send(ev.Deploy(deploy_message(num_replicas=4, actor_options={"num_cpus": 0.25}, gang_scheduling_config={"gang_size": 2})))
    sim.answer_all()
    assert len(sim.core.cluster.reservations) == 2
    assert sim.send(ev.Delete(DeleteApp("app"))) == "deleting"
    sim.answer_all()
    assert "app" not in sim.core.apps and sim.core.cluster.reservations == []


def test_an_unknown_event_is_refused_by_name() -> None:
    import pytest

    with pytest.raises(TypeError, match="does not handle str events"):
        Sim().core.handle("tick", 0.0)


# ---- random event sequences ----------------------------------------------------------------

ACTIONS = st.lists(
    st.one_of(
        st.tuples(st.just("deploy"), st.integers(0, 6), st.sampled_from(["v1", "v2", "v3"]), st.booleans()),
        st.tuples(st.just("answer"), st.integers(0, 20), st.booleans()),
        st.tuples(st.just("gang"), st.integers(0, 5), st.booleans()),
        st.tuples(st.just("tick"), st.floats(0.05, 3.0)),
        st.tuples(st.just("join"), st.integers(0, 4)),
        st.tuples(st.just("die"), st.integers(0, 4)),
        st.tuples(st.just("delete"),),
        st.tuples(st.just("settle"),),
    ),
    max_size=60,
)


def _member_gangs(sim: Sim, replica_ids: set[str]) -> list[str]:
    """Gangs of which some but not all members are in ``replica_ids``."""
    partial = []
    for app in sim.core.apps.values():
        for state in app.deployments.values():
            for gang in state.gangs.values():
                members = set(gang.members)
                if members & replica_ids and not members <= replica_ids:
                    partial.append(gang.gang_id)
    return partial


@settings(max_examples=150, deadline=None, suppress_health_check=[Hc.too_slow])
@given(ACTIONS)
def test_random_event_sequences_keep_the_invariants(actions: list[tuple[Any, ...]]) -> None:
    sim = Sim()
    for i in range(3):
        sim.register(f"n{i}", cpu=2.0)
    sim.send(ev.Subscribe(SubscribeReplicas("app", "D", SUBSCRIBER)))
    deployed = False
    for action in actions:
        kind = action[0]
        if kind == "deploy":
            _, count, version, gang = action
            options: dict[str, Any] = {"num_replicas": count * 2 if gang else count, "actor_options": {"num_cpus": 0.25}}
            if gang:
                options["gang_scheduling_config"] = {"gang_size": 2}
            try:
                sim.send(ev.Deploy(deploy_message(version=version, **options)))
                deployed = True
            except (ValueError, RuntimeError):
                pass  # refused whole (a gang that never fits, an app being deleted): nothing applied
        elif kind == "answer" and sim.asks:
            _, index, ok = action
            ask = sim.asks[index % len(sim.asks)]
            failing = isinstance(ask.message, (StartReplica, HealthCheck, HealthChecks)) and not ok
            sim.answer(ask, sim.healthy(ask) if not failing else None, "RuntimeError: failed" if failing else None)
        elif kind == "gang" and (sim.gang_starts or sim.gang_stops):
            _, index, ok = action
            if sim.gang_starts:
                start = sim.gang_starts.pop(index % len(sim.gang_starts))
                members = tuple(m.replica_id for _, m in start.members)
                sim.send(ev.GangStarted(members) if ok else ev.StartReplied(members[0], None, "RuntimeError: failed"))
            else:
                stop = sim.gang_stops.pop(0)
                for _, message in stop.members:
                    sim.send(ev.StopReplied(message.replica_id))
        elif kind == "tick":
            sim.tick(action[1])
        elif kind == "join":
            sim.register(f"n{action[1]}", cpu=2.0)
        elif kind == "die" and f"n{action[1]}" in sim.core.nodes:
            sim.send(ev.NodeDied(f"n{action[1]}", "killed"))
        elif kind == "delete" and deployed:
            sim.send(ev.Delete(DeleteApp("app")))
        elif kind == "settle":  # every worker answers what it was asked, successfully
            for ask in list(sim.asks):
                sim.answer(ask, sim.healthy(ask))
            for start in list(sim.gang_starts):
                sim.gang_starts.remove(start)
                sim.send(ev.GangStarted(tuple(m.replica_id for _, m in start.members)))
        # never more live replicas than the target plus one batch of surge, once reconciled
        for app in sim.core.apps.values():
            for state in app.deployments.values():
                gang = state.config.gang()
                target = state.config.num_replicas
                surge = gang.gang_size if gang else max(1, math.ceil(0.2 * target))
                if not state.needs_reconcile(sim.now) and not state.deleting:
                    assert state.replicas.count(LIVE) <= target + surge
        # never a partial gang in a published replica set
        published = sim.published.get(("app", "D"))
        if published is not None and published.exists:
            assert _member_gangs(sim, {r.replica_id for r in published.replicas}) == []
    if deployed:
        sim.send(ev.Delete(DeleteApp("app")))
        sim.answer_all()
        assert "app" not in sim.core.apps
        assert sim.core.cluster.reservations == [], "every reservation is released on delete"


def test_changing_the_gang_layout_replaces_whole_gangs_and_never_publishes_half_of_one() -> None:
    sim = Sim()
    for i in range(2):
        sim.register(f"n{i}", cpu=2.0)
    sim.send(ev.Subscribe(SubscribeReplicas("app", "D", SUBSCRIBER)))
    sim.send(ev.Deploy(deploy_message(num_replicas=2, actor_options={"num_cpus": 0.25}, gang_scheduling_config={"gang_size": 2})))
    sim.answer_all()
    sim.send(ev.Deploy(deploy_message(num_replicas=1, actor_options={"num_cpus": 0.25})))  # same code, no gang
    for _ in range(50):
        assert _member_gangs(sim, {r.replica_id for r in sim.published[("app", "D")].replicas}) == []
        if not (sim.asks or sim.gang_stops):
            sim.tick()
            if not (sim.asks or sim.gang_stops):
                break
        for ask in list(sim.asks):
            sim.answer(ask, {"ongoing": 0})
        for stop in list(sim.gang_stops):
            sim.gang_stops.remove(stop)
            for _, message in stop.members:
                sim.send(ev.StopReplied(message.replica_id))
    assert sim.states() == {"RUNNING": 1}
    assert [r.gang_id for _, _, r in sim.core.apps["app"].deployments["D"].replicas.items(LIVE)] == [None]
    assert sim.core.cluster.reservations == []


def test_a_tick_looks_only_at_deployments_that_changed_or_have_a_check_due(monkeypatch: Any) -> None:
    sim = Sim()
    sim.register("n0", cpu=1000.0)
    for i in range(40):
        sim.send(ev.Deploy(deploy_message(app=f"a{i}", num_replicas=1)))
    sim.answer_all()
    looked: list[tuple[str, str]] = []
    real = DeploymentState.handle

    def counting(state: Any, event: Any, now: float) -> Any:
        if isinstance(event, ev.Tick):
            looked.append(state.key)
        return real(state, event, now)

    monkeypatch.setattr(DeploymentState, "handle", counting)
    sim.tick(0.01)  # quiet: no change, and no health check due yet
    assert looked == []
    sim.send(ev.Deploy(deploy_message(app="a7", num_replicas=2)))
    assert looked == [("a7", "D")], "the deploy's own tick looked at the changed deployment only"
    looked.clear()
    sim.tick(1.5)  # every health check (period 1 s) is due now
    assert len(set(looked)) == 40
