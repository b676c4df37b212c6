"""Placement of single replicas over node resources (pure)."""

from __future__ import annotations

import pytest

from actors.serve.head._placement import Cluster


def two_nodes() -> Cluster:
    cluster = Cluster()
    cluster.add_node("a", "ipc://a", {"CPU": 2})
    cluster.add_node("b", "ipc://b", {"CPU": 2, "GPU": 1})
    return cluster


def test_replicas_of_a_deployment_spread_over_nodes() -> None:
    cluster = two_nodes()
    spread: dict[str, int] = {}
    placed = []
    for _ in range(4):
        node = cluster.place({}, spread)
        assert node is not None
        cluster.allocate(node, {})
        spread[node] = spread.get(node, 0) + 1
        placed.append(node)
    assert sorted(placed) == ["a", "a", "b", "b"]


def test_a_request_goes_only_where_it_fits() -> None:
    cluster = two_nodes()
    assert cluster.place({"GPU": 1}, {}) == "b"
    cluster.allocate("b", {"GPU": 1})
    assert cluster.place({"GPU": 1}, {}) is None
    cluster.release("b", {"GPU": 1})
    assert cluster.place({"GPU": 1}, {}) == "b"


def test_resources_run_out_and_come_back_on_release() -> None:
    cluster = two_nodes()
    for _ in range(4):
        node = cluster.place({"CPU": 1}, {})
        assert node is not None
        cluster.allocate(node, {"CPU": 1})
    assert cluster.place({"CPU": 1}, {}) is None
    cluster.release("a", {"CPU": 1})
    assert cluster.place({"CPU": 1}, {}) == "a"


def test_fractional_requests_add_up_without_rounding_errors() -> None:
    cluster = Cluster()
    cluster.add_node("a", "ipc://a", {"CPU": 1})
    for _ in range(10):
        assert cluster.place({"CPU": 0.1}, {}) == "a"
        cluster.allocate("a", {"CPU": 0.1})
    assert cluster.place({"CPU": 0.1}, {}) is None


def test_a_request_larger_than_any_node_could_never_fit() -> None:
    cluster = two_nodes()
    assert cluster.could_ever_fit({"CPU": 2, "GPU": 1})
    assert not cluster.could_ever_fit({"CPU": 3})
    assert not cluster.could_ever_fit({"TPU": 1})


def test_a_node_cannot_be_registered_twice_and_removed_nodes_are_not_used() -> None:
    cluster = two_nodes()
    with pytest.raises(ValueError, match="already registered"):
        cluster.add_node("a", "ipc://a2", {})
    cluster.remove_node("a")
    assert cluster.place({}, {}) == "b"
    cluster.release("a", {"CPU": 1})
