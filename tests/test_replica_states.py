"""The replica state container (pure): O(k) removal, nothing else touched."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.serve.head._replica_states import ALL_STATES, ReplicaState, ReplicaStateContainer

S = ReplicaState


def filled(spec: dict[ReplicaState, int]) -> ReplicaStateContainer[dict[str, str]]:
    c: ReplicaStateContainer[dict[str, str]] = ReplicaStateContainer()
    for state, n in spec.items():
        for i in range(n):
            c.add(state, f"{state.value[:3]}{i}", {"id": f"{state.value[:3]}{i}"})
    return c


def test_replicas_are_grouped_by_state_and_counted() -> None:
    c = filled({S.STARTING: 2, S.RUNNING: 3, S.STOPPING: 1})
    assert c.count() == len(c) == 6
    assert c.count([S.RUNNING, S.STARTING]) == 5
    assert c.counts() == {"STARTING": 2, "RUNNING": 3, "STOPPING": 1}


def test_removing_by_id_returns_the_state_each_was_in_and_skips_unknown_ids() -> None:
    c = filled({S.STARTING: 2, S.RUNNING: 3})
    removed = c.remove(["RUN1", "STA0", "nope"])
    assert [(rid, state) for rid, state, _ in removed] == [("RUN1", S.RUNNING), ("STA0", S.STARTING)]
    assert c.ids() == ["STA1", "RUN0", "RUN2"]
    assert "RUN1" not in c and c.get("RUN1") is None


def test_removing_a_few_leaves_every_other_record_the_same_object() -> None:
    c = filled({S.RUNNING: 100})
    before = {rid: rep for rid, _, rep in c.items()}
    c.remove(["RUN5", "RUN50"])
    for rid, _, rep in c.items():
        assert rep is before[rid]


def test_adding_an_id_twice_is_refused() -> None:
    c = filled({S.RUNNING: 1})
    with pytest.raises(ValueError, match="already tracked"):
        c.add(S.STARTING, "RUN0", {})


def test_move_changes_the_state_and_keeps_the_record() -> None:
    c = filled({S.STARTING: 1})
    record = c.get("STA0")
    assert c.move("STA0", S.RUNNING) is record
    assert c.state_of("STA0") is S.RUNNING and c.counts() == {"RUNNING": 1}
    with pytest.raises(KeyError):
        c.move("ghost", S.RUNNING)


def test_pop_takes_states_in_the_order_given_and_respects_the_maximum() -> None:
    c = filled({S.STARTING: 2, S.UPDATING: 1, S.RUNNING: 3})
    popped = c.pop([S.STARTING, S.UPDATING, S.RUNNING], max_replicas=4)
    assert [rid for rid, _, _ in popped] == ["STA0", "STA1", "UPD0", "RUN0"]
    assert c.ids() == ["RUN1", "RUN2"]
    assert c.pop([S.STOPPING]) == []
    assert len(c.pop()) == 2 and len(c) == 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["add", "remove", "move", "pop"]), st.integers(0, 30), st.sampled_from(ALL_STATES)), max_size=80))
def test_the_index_always_agrees_with_the_groups(ops: list[tuple[str, int, ReplicaState]]) -> None:
    c: ReplicaStateContainer[int] = ReplicaStateContainer()
    model: dict[str, ReplicaState] = {}
    for op, n, state in ops:
        rid = f"r{n}"
        if op == "add" and rid not in model:
            c.add(state, rid, n)
            model[rid] = state
        elif op == "remove":
            c.remove([rid])
            model.pop(rid, None)
        elif op == "move" and rid in model:
            c.move(rid, state)
            model[rid] = state
        elif op == "pop":
            for popped, _, _ in c.pop([state], max_replicas=1):
                del model[popped]
    assert {rid: c.state_of(rid) for rid in c.ids()} == model
    assert c.count() == len(model)
    for state in ALL_STATES:
        assert c.count([state]) == sum(1 for s in model.values() if s is state)
