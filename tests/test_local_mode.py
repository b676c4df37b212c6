"""Local testing mode: an application run in the calling process, no cluster,
deployments defined inside the test function itself."""

from __future__ import annotations

import asyncio
from typing import Any, Iterator

import pytest

from actors import serve


@pytest.fixture
def local() -> Iterator[None]:
    try:
        yield
    finally:
        serve.shutdown()


def test_a_composed_app_defined_in_a_test_runs_in_process(local: None) -> None:
    @serve.deployment
    class Model:
        def __init__(self, weight: float) -> None:
            self.weight = weight

        def __call__(self, x: float) -> float:
            return x * self.weight

    @serve.deployment
    class Ingress:
        def __init__(self, model: Any) -> None:
            self.model = model

        async def __call__(self, x: float) -> dict[str, float]:
            return {"score": await self.model.remote(x)}

    handle = serve.run(Ingress.bind(Model.bind(2.0)), _local_testing_mode=True)
    assert handle.remote(3.0).result(timeout_s=5) == {"score": 6.0}
    assert not serve._api.has_session(), "no cluster was started"


def test_streams_async_init_functions_and_errors_behave_as_on_a_cluster(local: None) -> None:
    @serve.deployment
    class Words:
        async def __init__(self) -> None:
            await asyncio.sleep(0)
            self.ready = True

        def split(self, text: str) -> Any:
            yield from text.split()

        async def upper(self, text: str) -> Any:
            for word in text.split():
                yield word.upper()

        def fail(self) -> None:
            raise ValueError("as asked")

    @serve.deployment
    def double(x: int) -> int:
        return 2 * x

    words = serve.run(Words.bind(), name="words", _local_testing_mode=True)
    assert list(words.options(stream=True).split.remote("a b c")) == ["a", "b", "c"]
    assert list(words.options(stream=True).upper.remote("a b")) == ["A", "B"]
    with pytest.raises(ValueError, match="as asked"):
        words.fail.remote().result(timeout_s=5)
    with pytest.raises(TypeError, match="returned a generator; call it with handle.options"):
        words.split.remote("x").result(timeout_s=5)
    assert serve.run(double.bind(), name="fn", _local_testing_mode=True).remote(4).result(timeout_s=5) == 8


def test_responses_passed_as_arguments_are_resolved_first(local: None) -> None:
    @serve.deployment
    class Adder:
        def __call__(self, a: int, b: int) -> int:
            return a + b

    handle = serve.run(Adder.bind(), _local_testing_mode=True)
    assert handle.remote(handle.remote(1, 2), 10).result(timeout_s=5) == 13

    async def main() -> int:
        return await handle.remote(20, 22)

    assert asyncio.run(main()) == 42


def test_batched_methods_and_batched_generators_gather_calls_in_process(local: None) -> None:
    @serve.deployment
    class Batched:
        @serve.batch(max_batch_size=4, batch_wait_timeout_s=0.2)
        async def __call__(self, inputs: list[int]) -> list[int]:
            return [x + 1 for x in inputs]

        @serve.batch(max_batch_size=4, batch_wait_timeout_s=0.2)
        async def count(self, limits: list[int]) -> Any:
            for i in range(max(limits)):
                yield [i if i < n else StopIteration for n in limits]

    handle = serve.run(Batched.bind(), _local_testing_mode=True)
    assert [r.result(timeout_s=5) for r in [handle.remote(i) for i in range(3)]] == [1, 2, 3]
    streams = [handle.options(stream=True).count.remote(n) for n in (2, 1)]
    assert [list(s) for s in streams] == [[0, 1], [0]]


def test_a_multiplexed_model_id_reaches_the_loader_in_process(local: None) -> None:
    @serve.deployment
    class Models:
        @serve.multiplexed(max_num_models_per_replica=1)
        async def get_model(self, model_id: str) -> str:
            return f"model-{model_id}"

        async def __call__(self) -> str:
            return await self.get_model(serve.get_multiplexed_model_id())

        def current(self) -> str:
            return serve.get_multiplexed_model_id()

    handle = serve.run(Models.bind(), _local_testing_mode=True)
    assert handle.options(multiplexed_model_id="x").remote().result(timeout_s=5) == "model-x"
    assert handle.options(multiplexed_model_id="y").current.remote().result(timeout_s=5) == "y", "sync methods see it too"
