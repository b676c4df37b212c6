"""The controller process's collector policy: survivors of a full collection
are frozen, and a periodic sweep thaws and collects them."""

from __future__ import annotations

import gc
import weakref
from typing import Iterator

import pytest

from actors import ServeSettings
from actors._gc import FrozenSurvivors


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Node:
    def __init__(self) -> None:
        self.other: object = None


@pytest.fixture
def policy() -> Iterator[tuple[FrozenSurvivors, Clock]]:
    clock = Clock()
    frozen = FrozenSurvivors(sweep_s=60.0, clock=clock)
    frozen.install()
    try:
        yield frozen, clock
    finally:
        frozen.uninstall()


def test_what_survives_a_full_collection_is_frozen_and_thawed_on_uninstall(policy: tuple[FrozenSurvivors, Clock]) -> None:
    frozen, _ = policy
    gc.collect()
    assert gc.get_freeze_count() > 0
    assert frozen.statistics()["freezes"] >= 1
    frozen.uninstall()
    assert gc.get_freeze_count() == 0


def test_a_cycle_among_frozen_objects_waits_for_the_next_sweep(policy: tuple[FrozenSurvivors, Clock]) -> None:
    frozen, clock = policy
    a, b = Node(), Node()
    a.other, b.other = b, a
    alive = weakref.ref(a)
    gc.collect()  # the cycle survives (still referenced) and is frozen
    del a, b
    gc.collect()
    assert alive() is not None, "a frozen cycle is not walked by a full collection"
    assert not frozen.sweep_if_due(), "the sweep waits for its period"
    clock.now = 61.0
    assert frozen.sweep_if_due()
    assert alive() is None
    assert frozen.statistics()["sweeps"] == 1
    assert gc.get_freeze_count() > 0, "the sweep's survivors are frozen again"


def test_a_sweep_period_that_is_not_positive_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="sweep_s"):
        FrozenSurvivors(sweep_s=0)
    with pytest.raises(ValueError, match="gc_sweep_s"):
        ServeSettings(gc_sweep_s=-1.0)
    assert ServeSettings(gc_sweep_s=None).gc_sweep_s is None
