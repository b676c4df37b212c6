"""Which GPU ids a worker's replica processes see: pure, no processes."""

from __future__ import annotations

import pytest

from actors.serve.worker._devices import DeviceError, GpuIds, declared_gpu_ids


def test_whole_gpus_go_to_one_replica_each_and_come_back_on_release() -> None:
    gpus = GpuIds(["0", "1", "2"])
    assert gpus.take("a", 2) == ["0", "1"]
    assert gpus.take("b", 1) == ["2"]
    with pytest.raises(DeviceError, match="asks for 1 GPU.*has 3 \\(0, 1, 2\\) with 0 free"):
        gpus.take("c", 1)
    gpus.release("a")
    assert gpus.take("c", 1) == ["0"]


def test_fractions_pack_onto_the_fullest_gpu_with_room() -> None:
    gpus = GpuIds(["0", "1"])
    assert gpus.take("a", 0.5) == ["0"]
    assert gpus.take("b", 0.25) == ["0"]
    assert gpus.take("c", 0.5) == ["1"], "0.75 + 0.5 does not fit on GPU 0"
    assert gpus.take("d", 0.25) == ["0"]
    with pytest.raises(DeviceError):
        gpus.take("e", 1)


def test_a_whole_gpu_is_never_given_while_a_fraction_holds_it() -> None:
    gpus = GpuIds(["0", "1"])
    gpus.take("a", 0.1)
    assert gpus.take("b", 1) == ["1"]


def test_bad_amounts_are_refused_with_the_amount() -> None:
    with pytest.raises(ValueError, match="1.5"):
        GpuIds(["0", "1"]).take("a", 1.5)


def test_declared_ids_come_from_the_workers_own_visible_devices() -> None:
    assert declared_gpu_ids(2, None) == ["0", "1"]
    assert declared_gpu_ids(2, "3,5,7") == ["3", "5"]
    with pytest.raises(ValueError, match="names only 1"):
        declared_gpu_ids(2, "3")
