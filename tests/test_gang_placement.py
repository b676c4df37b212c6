"""Atomic gang reservations and their strategies (pure)."""

from __future__ import annotations

import pytest

from actors.serve._gangs import GangConfigError, GangSchedulingConfig
from actors.serve.head._gang_placement import could_ever_hold, plan_gang, release_gang, reserve_gang
from actors.serve.head._placement import Cluster


def cluster(*cpus: float) -> Cluster:
    c = Cluster()
    for i, cpu in enumerate(cpus):
        c.add_node(f"n{i}", f"ipc://n{i}", {"CPU": cpu})
    return c


def test_pack_puts_a_gang_on_one_node_when_it_fits() -> None:
    assert plan_gang(cluster(2, 2).nodes, {"CPU": 0.5}, 4, "PACK") in (["n0"] * 4, ["n1"] * 4)


def test_pack_uses_the_fewest_nodes_when_one_is_not_enough() -> None:
    nodes = plan_gang(cluster(1, 1, 1).nodes, {"CPU": 0.5}, 4, "PACK")
    assert nodes is not None and len(set(nodes)) == 2


def test_strict_pack_needs_one_node_with_room_for_all() -> None:
    assert plan_gang(cluster(1, 1).nodes, {"CPU": 0.5}, 4, "STRICT_PACK") is None
    assert plan_gang(cluster(1, 2).nodes, {"CPU": 0.5}, 4, "STRICT_PACK") == ["n1"] * 4


def test_spread_uses_distinct_nodes_and_strict_spread_requires_them() -> None:
    assert sorted(plan_gang(cluster(4, 4, 4).nodes, {"CPU": 1}, 3, "SPREAD")) == ["n0", "n1", "n2"]  # type: ignore[arg-type]
    assert sorted(plan_gang(cluster(4, 4).nodes, {"CPU": 1}, 3, "SPREAD")) in (["n0", "n0", "n1"], ["n0", "n1", "n1"])  # type: ignore[arg-type]
    assert plan_gang(cluster(4, 4).nodes, {"CPU": 1}, 3, "STRICT_SPREAD") is None
    assert sorted(plan_gang(cluster(4, 4, 4).nodes, {"CPU": 1}, 3, "STRICT_SPREAD")) == ["n0", "n1", "n2"]  # type: ignore[arg-type]


def test_a_reservation_is_all_or_nothing() -> None:
    c = cluster(1, 1)
    assert reserve_gang(c, "g1", {"CPU": 0.5}, 4, "PACK") is not None
    assert reserve_gang(c, "g2", {"CPU": 0.5}, 2, "PACK") is None
    assert all(n.available["CPU"] < 1e-9 for n in c.nodes)
    c2 = cluster(1, 0.4)
    assert reserve_gang(c2, "g", {"CPU": 0.5}, 3, "PACK") is None
    assert [n.available["CPU"] for n in c2.nodes] == [1, 0.4], "nothing partly reserved"


def test_leftover_capacity_never_yields_a_partial_gang() -> None:
    c = cluster(1, 1)
    gangs = [reserve_gang(c, f"g{i}", {"CPU": 0.25}, 4, "PACK") for i in range(3)]
    assert [g is not None for g in gangs] == [True, True, False]
    c.add_node("n2", "ipc://n2", {"CPU": 1})
    assert reserve_gang(c, "g2", {"CPU": 0.25}, 4, "PACK") is not None


def test_releasing_gives_every_bundle_back() -> None:
    c = cluster(1, 1)
    reservation = reserve_gang(c, "g", {"CPU": 0.5}, 4, "SPREAD")
    assert reservation is not None
    release_gang(c, reservation)
    assert [n.available["CPU"] for n in c.nodes] == [1, 1]


def test_a_gang_no_cluster_could_ever_hold_is_recognised() -> None:
    c = cluster(1, 1)
    assert could_ever_hold(c, {"CPU": 0.5}, 4, "PACK")
    assert not could_ever_hold(c, {"CPU": 0.5}, 4, "STRICT_PACK")
    assert not could_ever_hold(c, {"CPU": 2}, 1, "PACK")
    assert not could_ever_hold(c, {"CPU": 1}, 3, "STRICT_SPREAD")


@pytest.mark.parametrize(
    ("fields", "text"),
    [
        ({"gang_size": 0}, "gang_size: expected an int >= 1"),
        ({"gang_placement_strategy": "CLUSTER"}, "expected one of PACK, SPREAD, STRICT_PACK, STRICT_SPREAD"),
        ({"runtime_failure_policy": "IGNORE"}, "'IGNORE' is not implemented"),
        ({"size": 2}, "unknown fields"),
    ],
)
def test_bad_gang_options_name_the_field(fields: dict[str, object], text: str) -> None:
    with pytest.raises(GangConfigError, match=text):
        GangSchedulingConfig.from_value(fields)
