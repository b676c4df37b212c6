"""@serve.multiplexed's model cache (pure asyncio, no cluster): least recently
used dropped past the limit, one load per model, a failed load not kept."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from actors import serve
from actors.serve._multiplex import held_model_ids, set_multiplexed_model_id


class Holder:
    def __init__(self) -> None:
        self.loads: list[str] = []
        self.gate: asyncio.Event | None = None

    @serve.multiplexed(max_num_models_per_replica=2)
    async def get_model(self, model_id: str) -> str:
        if self.gate is not None:
            await self.gate.wait()
        if model_id == "broken":
            raise RuntimeError("no such weights")
        self.loads.append(model_id)
        return f"m-{model_id}"


def test_past_its_limit_a_replica_drops_the_least_recently_used_model() -> None:
    holder = Holder()

    async def scenario() -> None:
        assert await holder.get_model("a") == "m-a"
        await holder.get_model("b")
        await holder.get_model("a")  # a is now the most recently used
        await holder.get_model("c")  # b goes
        assert held_model_ids(holder) == ["a", "c"]
        await holder.get_model("b")
        assert holder.loads == ["a", "b", "c", "b"] and held_model_ids(holder) == ["b", "c"]

    asyncio.run(scenario())


def test_concurrent_requests_for_one_model_load_it_once() -> None:
    holder = Holder()

    async def scenario() -> list[Any]:
        holder.gate = asyncio.Event()
        waiting = [asyncio.ensure_future(holder.get_model("a")) for _ in range(5)]
        await asyncio.sleep(0)
        holder.gate.set()
        return await asyncio.gather(*waiting)

    assert asyncio.run(scenario()) == ["m-a"] * 5 and holder.loads == ["a"]


def test_a_loader_that_raises_fails_its_request_and_nothing_is_kept() -> None:
    holder = Holder()

    async def scenario() -> None:
        with pytest.raises(RuntimeError, match="no such weights"):
            await holder.get_model("broken")
        assert held_model_ids(holder) == []
        assert await holder.get_model("a") == "m-a"

    asyncio.run(scenario())


def test_the_model_id_defaults_to_the_requests_and_none_is_a_clear_error() -> None:
    holder = Holder()

    async def scenario() -> None:
        with pytest.raises(ValueError, match="no multiplexed model id: call with handle.options"):
            await holder.get_model()
        set_multiplexed_model_id("q")
        assert await holder.get_model() == "m-q" and serve.get_multiplexed_model_id() == "q"

    asyncio.run(scenario())
