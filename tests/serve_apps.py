"""Deployments the serving tests deploy (importable by worker processes)."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import threading
import time
from typing import Any

from pydantic import BaseModel

from actors import serve
from actors.serve import get_replica_context


@serve.deployment(num_replicas=2, health_check_period_s=0.2, health_check_timeout_s=2, graceful_shutdown_timeout_s=5)
class Echo:
    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix
        self.instance = os.urandom(4).hex()

    def __call__(self, x: Any) -> Any:
        return f"{self.prefix}{x}"

    def whoami(self) -> dict[str, Any]:
        c = get_replica_context()
        return {"replica_id": c.replica_id, "deployment": c.deployment, "app": c.app_name, "node": c.node_id, "pid": os.getpid(), "prefix": self.prefix}

    def fail(self, text: str) -> None:
        raise ValueError(text)

    def shout(self, text: str) -> str:
        print(f"shouting {text}", flush=True)
        return text

    def unencodable(self) -> Any:
        return object()

    async def async_echo(self, x: Any) -> Any:
        await asyncio.sleep(0)
        return {"async": x}

    def slow(self, seconds: float) -> str:
        threading.Event().wait(seconds)
        return f"slept {seconds}"

    def thread(self) -> str:
        return threading.current_thread().name

    async def blocking(self, seconds: float) -> str:
        """Blocks its event loop (no await), as CPU-bound code in an ``async def`` does."""
        threading.Event().wait(seconds)
        return f"blocked {seconds}"

    def slow_marked(self, path: str, seconds: float) -> str:
        """Writes this process's pid to ``path``, then holds the request."""
        with open(path, "w") as fh:
            fh.write(str(os.getpid()))
        threading.Event().wait(seconds)
        return "done"


@serve.deployment(num_replicas=1, health_check_period_s=0.2, health_check_timeout_s=2)
class Configurable:
    def __init__(self) -> None:
        self.config: Any = None
        self.reconfigured = 0
        self.instance = os.urandom(4).hex()

    def reconfigure(self, user_config: Any) -> None:
        self.config = user_config
        self.reconfigured += 1

    def __call__(self) -> dict[str, Any]:
        return {"config": self.config, "reconfigured": self.reconfigured, "instance": self.instance}


@serve.deployment(num_replicas=1)
class FailsToStart:
    def __init__(self) -> None:
        raise RuntimeError("cannot load the model file")


@serve.deployment(num_replicas=1, graceful_shutdown_timeout_s=1)
class SlowToStart:
    def __init__(self, seconds: float) -> None:
        threading.Event().wait(seconds)

    def __call__(self) -> str:
        return "finally"


@serve.deployment(num_replicas=1, health_check_period_s=0.1, health_check_timeout_s=1)
class Fragile:
    """Fails its health checks while a flag file exists."""

    def __init__(self, flag: str) -> None:
        self.flag = flag
        self.instance = os.urandom(4).hex()

    def check_health(self) -> None:
        if os.path.exists(self.flag) and open(self.flag).read().strip() == self.instance:
            raise RuntimeError("flag file says unhealthy")

    def __call__(self) -> str:
        return self.instance

    def whoami(self) -> dict[str, Any]:
        c = get_replica_context()
        return {"instance": self.instance, "replica_id": c.replica_id, "node": c.node_id}


@serve.deployment(num_replicas=1)
class Sleepy:
    def __init__(self) -> None:
        self.started = time.time()

    def __call__(self, seconds: float) -> str:
        threading.Event().wait(seconds)
        return "done"


@serve.deployment(num_replicas=2)
class Model:
    def __init__(self, weight: float) -> None:
        self.weight = weight

    def __call__(self, x: float) -> float:
        return x * self.weight

    def tokens(self, n: int) -> Any:
        for i in range(n):
            yield f"tok{i}"

    async def atokens(self, n: int) -> Any:
        for i in range(n):
            await asyncio.sleep(0)
            yield {"i": i}

    def broken_stream(self) -> Any:
        yield "first"
        raise KeyError("second is missing")


@serve.deployment(num_replicas=1)
class Ingress:
    """Composition: calls Model through the handle it was given."""

    def __init__(self, model: Any, offset: float) -> None:
        self.model = model
        self.offset = offset

    def __call__(self, x: float) -> float:
        return self.model.remote(x).result(timeout_s=10) + self.offset

    async def chained(self, x: float) -> float:
        doubled = self.model.remote(x)
        again = self.model.remote(doubled)
        return await again

    def relay(self, n: int) -> list[str]:
        return list(self.model.options(stream=True).tokens.remote(n))


@serve.deployment(num_replicas=1, max_ongoing_requests=4)
class Concurrent:
    """Counts how many calls run at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.peak = 0
        self.arrived = 0

    def _enter(self) -> None:
        with self.lock:
            self.now += 1
            self.arrived += 1
            self.peak = max(self.peak, self.now)

    def _leave(self) -> None:
        with self.lock:
            self.now -= 1

    def hold(self, seconds: float) -> int:
        self._enter()
        try:
            threading.Event().wait(seconds)
        finally:
            self._leave()
        return self.peak

    def gather(self, n: int) -> int:
        """Returns once n calls are inside at the same time (needs real concurrency)."""
        self._enter()
        try:
            deadline = time.monotonic() + 10
            while self.arrived < n and time.monotonic() < deadline:
                threading.Event().wait(0.005)
            return self.arrived
        finally:
            self._leave()

    async def agather(self, n: int) -> int:
        self._enter()
        try:
            deadline = time.monotonic() + 10
            while self.arrived < n and time.monotonic() < deadline:
                await asyncio.sleep(0.005)
            return self.arrived
        finally:
            self._leave()

    def peak_seen(self) -> int:
        return self.peak


@serve.deployment(
    max_ongoing_requests=4,
    health_check_period_s=0.5,
    graceful_shutdown_timeout_s=2,
    autoscaling_config={
        "target_ongoing_requests": 1,
        "min_replicas": 1,
        "max_replicas": 4,
        "upscale_delay_s": 0.3,
        "downscale_delay_s": 0.8,
        "look_back_period_s": 1.0,
    },
)
class Elastic:
    def __call__(self, seconds: float) -> str:
        threading.Event().wait(seconds)
        return get_replica_context().replica_id


def always_three(ctx: Any) -> int:
    """A custom autoscaling policy: three replicas, whatever the load."""
    return 3


@serve.deployment(
    num_replicas=8,
    actor_options={"num_cpus": 0.25},
    health_check_period_s=0.1,
    health_check_timeout_s=2,
    graceful_shutdown_timeout_s=2,
    gang_scheduling_config=serve.GangSchedulingConfig(gang_size=4, gang_placement_strategy="PACK"),
)
class Shard:
    """A gang member. Flag files in ``flag_dir`` make ranks fail once or
    always, or make a given replica fail its health checks."""

    def __init__(self, flag_dir: str = "") -> None:
        self.flag_dir = flag_dir
        context = get_replica_context()
        gang = context.gang_context
        assert gang is not None
        if flag_dir:
            once = os.path.join(flag_dir, f"fail-once-rank-{gang.rank}")
            if os.path.exists(once):
                os.remove(once)
                raise RuntimeError(f"rank {gang.rank} fails once")
            if os.path.exists(os.path.join(flag_dir, f"always-fail-rank-{gang.rank}")):
                raise RuntimeError(f"rank {gang.rank} always fails")

    def __call__(self) -> dict[str, Any]:
        context = get_replica_context()
        gang = context.gang_context
        assert gang is not None
        return {
            "replica": context.replica_id, "gang": gang.gang_id, "rank": gang.rank, "world": gang.world_size,
            "members": gang.member_replica_ids, "reservation": gang.reservation_name, "node": context.node_id,
        }

    def check_health(self) -> None:
        if self.flag_dir and os.path.exists(os.path.join(self.flag_dir, f"sick-{get_replica_context().replica_id}")):
            raise RuntimeError("told to be sick")


@serve.deployment(num_replicas=1, max_ongoing_requests=4)
class Mortal:
    """Dies on request in the way asked: exit, segfault or running out of memory."""

    def whoami(self) -> dict[str, Any]:
        c = get_replica_context()
        return {"replica_id": c.replica_id, "node": c.node_id, "pid": os.getpid()}

    def die(self, how: str) -> str:
        if how == "exit":
            os._exit(1)
        if how == "segfault":
            import ctypes

            ctypes.string_at(0)
        if how == "memory":
            hog = []
            for _ in range(160):  # up to 8 GiB, 50 MiB at a time; its worker kills it long before
                hog.append(b"x" * (50 << 20))
                time.sleep(0.005)
            time.sleep(60)
        return f"survived {how}"

    def devices(self) -> str:
        return os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>")


@serve.deployment(num_replicas=1)
class NeedsMissingDependency:
    """Its replica process cannot import what it needs."""

    def __init__(self) -> None:
        import corral_no_such_dependency  # noqa: F401


@dataclasses.dataclass
class Reading:
    """A dataclass that crosses the wire (both ends import it from here)."""

    sensor: str
    values: Any


class Ticket(BaseModel):
    """A pydantic model that crosses the wire."""

    title: str
    seats: list[int]


class Unregistered:
    """A plain class: only a pickle-opted deployment can receive it."""

    def __init__(self, payload: Any) -> None:
        self.payload = payload


@serve.deployment(num_replicas=1)
class Arrays:
    """Returns what it is given, or works on arrays (numpy imported lazily, as users do)."""

    def __init__(self, weights: Any = None) -> None:
        self.weights = weights

    def echo(self, value: Any) -> Any:
        return value

    def scaled(self, array: Any, factor: float) -> Any:
        return array * factor

    def weights_sum(self) -> float:
        return float(self.weights.sum())

    def chunks(self, n: int, size: int) -> Any:
        import numpy

        for i in range(n):
            yield numpy.full(size, i, dtype=numpy.int64)

    def describe(self, value: Any) -> str:
        return type(value).__name__


@serve.deployment(num_replicas=1)
class AsyncInit:
    """An ``async def __init__``, as Ray Serve allows."""

    async def __init__(self, value: str) -> None:
        await asyncio.sleep(0.01)
        self.value = value

    def __call__(self) -> str:
        return self.value


@serve.deployment(num_replicas=1)
class GeneratorObjects:
    """Methods that return generator objects (not generator functions)."""

    def words(self, n: int) -> Any:
        return (f"w{i}" for i in range(n))

    async def awords(self, n: int) -> Any:
        async def gen() -> Any:
            for i in range(n):
                yield f"a{i}"

        return gen()

    def plain(self) -> int:
        return 1


@serve.deployment(num_replicas=1, max_ongoing_requests=1)
class Cancellable:
    """Long async work that notes, in flag files, when it starts and when it is cancelled or closed."""

    def __init__(self, flag_dir: str) -> None:
        self.flag_dir = flag_dir

    def _flag(self, name: str) -> None:
        with open(os.path.join(self.flag_dir, name), "w") as fh:
            fh.write("yes")

    async def wait(self, tag: str, seconds: float) -> str:
        self._flag(f"started-{tag}")
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            self._flag(f"cancelled-{tag}")
            raise
        return tag

    async def ticks(self, tag: str) -> Any:
        try:
            for i in range(100_000):
                yield i
                await asyncio.sleep(0.01)
        finally:
            self._flag(f"closed-{tag}")


@serve.deployment
def double(x: int) -> int:
    """A function deployment."""
    return 2 * x


@serve.deployment(num_replicas=2)
async def agreet(name: str) -> str:
    await asyncio.sleep(0)
    return f"hi {name}"


@serve.deployment
def upto(n: int) -> Any:
    yield from range(n)


@serve.deployment(num_replicas=1, health_check_period_s=0.1, health_check_timeout_s=0.5)
class NeverHealthy:
    """Its check_health always raises."""

    def check_health(self) -> None:
        raise RuntimeError("never healthy")

    def __call__(self) -> str:
        return "served"


@serve.deployment(num_replicas=1, health_check_period_s=0.2, health_check_timeout_s=0.5, graceful_shutdown_timeout_s=0.5)
class HangingHealth:
    """Its check_health hangs while a flag file names this replica (so its replacement is healthy)."""

    def __init__(self, flag: str) -> None:
        self.flag = flag
        self.instance = os.urandom(4).hex()

    def check_health(self) -> None:
        deadline = time.monotonic() + 60
        while os.path.exists(self.flag) and open(self.flag).read() == self.instance and time.monotonic() < deadline:
            time.sleep(0.05)

    def __call__(self) -> str:
        return self.instance


@serve.deployment(num_replicas=4, health_check_period_s=30, graceful_shutdown_timeout_s=0.5)
class Holder:
    """Holds a request until a release file appears; its periodic health checks are far apart,
    so the load they last told is stale when a downscale comes."""

    def hold(self, marker: str, release: str) -> str:
        replica_id = get_replica_context().replica_id
        with open(marker, "w") as fh:
            fh.write(replica_id)
        deadline = time.monotonic() + 30
        while not os.path.exists(release) and time.monotonic() < deadline:
            time.sleep(0.02)
        return replica_id

    def whoami(self) -> str:
        return get_replica_context().replica_id


@serve.deployment(num_replicas=2, health_check_period_s=0.2, health_check_timeout_s=2)
class Models:
    """@serve.multiplexed: at most two models per replica; model "broken" fails to load."""

    def __init__(self) -> None:
        self.loaded: list[str] = []

    @serve.multiplexed(max_num_models_per_replica=2)
    async def get_model(self, model_id: str) -> str:
        if model_id == "broken":
            raise RuntimeError(f"cannot load {model_id}")
        self.loaded.append(model_id)
        return f"model-{model_id}"

    async def __call__(self, x: int) -> dict[str, Any]:
        model = await self.get_model(serve.get_multiplexed_model_id())
        return {"model": model, "replica": get_replica_context().replica_id, "loads": list(self.loaded), "x": x}

    def current(self) -> str:
        return serve.get_multiplexed_model_id()


@serve.deployment(num_replicas=1)
class Producer:
    """Streams numbers and counts how many its generators produced."""

    def __init__(self) -> None:
        self.produced = 0

    def numbers(self, n: int) -> Any:
        for i in range(n):
            self.produced += 1
            yield i

    async def async_numbers(self, n: int) -> Any:
        for i in range(n):
            self.produced += 1
            yield i

    def count(self) -> int:
        return self.produced


@serve.deployment(num_replicas=1, max_ongoing_requests=32)
class Batched:
    """@serve.batch on async and sync methods; records the batch sizes it saw."""

    def __init__(self) -> None:
        self.sizes: list[int] = []

    @serve.batch(max_batch_size=4, batch_wait_timeout_s=0.2)
    async def __call__(self, inputs: list[int]) -> list[int]:
        self.sizes.append(len(inputs))
        return [x * 2 for x in inputs]

    @serve.batch(max_batch_size=4, batch_wait_timeout_s=0.2)
    def sync_double(self, inputs: list[int]) -> list[int]:
        self.sizes.append(len(inputs))
        return [x * 2 for x in inputs]

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.1)
    async def short(self, inputs: list[int]) -> list[int]:
        return inputs[:-1]

    @serve.batch(max_batch_size=4, batch_wait_timeout_s=0.2)
    async def count(self, limits: list[int]) -> Any:
        """Streams 0..n-1 to each request; StopIteration ends the shorter ones."""
        self.sizes.append(len(limits))
        for i in range(max(limits)):
            yield [i if i < n else StopIteration for n in limits]

    @serve.batch(max_batch_size=4, batch_wait_timeout_s=0.2)
    def sync_count(self, limits: list[int]) -> Any:
        self.sizes.append(len(limits))
        for i in range(max(limits)):
            yield [i if i < n else StopIteration for n in limits]

    @serve.batch(max_batch_size=4, batch_wait_timeout_s=0.2)
    async def bad_count(self, limits: list[int]) -> Any:
        yield [0] * len(limits)
        yield [1]

    def seen(self) -> list[int]:
        sizes, self.sizes = self.sizes, []
        return sizes

    def resize(self, n: int) -> None:
        self.__call__.set_max_batch_size(n)
