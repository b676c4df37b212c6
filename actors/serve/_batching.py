"""``@serve.batch``: calls of a method from many requests, gathered into one
call with a list, as Ray Serve's. The gathering runs on the replica's event
loop; a sync batch function runs on a worker thread so the loop keeps serving.

    @serve.deployment
    class Model:
        @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.01)
        async def __call__(self, inputs: list[str]) -> list[int]:
            return [len(x) for x in inputs]     # one result per input, in order

Each request still calls ``handle.remote(x)`` with one input and gets its own
result; ``self.__call__.set_max_batch_size(n)`` (and
``set_batch_wait_timeout_s``) change the batching while it serves.

A batch method may be a generator (sync or async): each list it yields holds
the next chunk of every request's stream, in order, and callers stream with
``handle.options(stream=True)``. ``StopIteration`` in a request's place ends
that request's stream while the others go on; the generator's end ends them all.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any, Callable

from ._per_instance import PerInstance


def _check(max_batch_size: Any, batch_wait_timeout_s: Any) -> tuple[int, float]:
    if isinstance(max_batch_size, bool) or not isinstance(max_batch_size, int) or max_batch_size < 1:
        raise ValueError(f"serve.batch: max_batch_size must be an int >= 1, got {max_batch_size!r}")
    if isinstance(batch_wait_timeout_s, bool) or not isinstance(batch_wait_timeout_s, (int, float)) or batch_wait_timeout_s < 0:
        raise ValueError(f"serve.batch: batch_wait_timeout_s must be a number >= 0, got {batch_wait_timeout_s!r}")
    return max_batch_size, float(batch_wait_timeout_s)


def batch(_func: Callable[..., Any] | None = None, *, max_batch_size: int = 10, batch_wait_timeout_s: float = 0.0) -> Any:
    """Gather single calls of a method into calls with a list (see the module docstring).

    The decorated method takes ``self`` and one list, and returns a list of the
    same length (sync or ``async def``).

    Raises:
        ValueError: ``max_batch_size`` is not an int >= 1, or ``batch_wait_timeout_s``
            not a number >= 0 (at decoration).
        TypeError: what is decorated is not a function taking ``self`` and a list.
    """
    size, wait = _check(max_batch_size, batch_wait_timeout_s)

    def decorate(func: Callable[..., Any]) -> PerInstance:
        if not inspect.isfunction(func):
            raise TypeError(f"serve.batch decorates a method, got {func!r}")
        if len(inspect.signature(func).parameters) != 2:
            raise TypeError(f"serve.batch: {func.__qualname__} must take self and one list of inputs")
        kind = _StreamBatcher if inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func) else _Batcher
        return PerInstance(func, "__corral_batchers__", lambda bound: kind(bound, size, wait))

    return decorate(_func) if _func is not None else decorate


class _Batcher:
    """One instance's batching of one method: queued calls, gathered on the running loop."""

    __corral_kind__ = "async"  # the replica runs it on its event loop

    def __init__(self, bound: Callable[..., Any], max_batch_size: int, batch_wait_timeout_s: float) -> None:
        self.bound = bound
        self.max_batch_size = max_batch_size
        self.batch_wait_timeout_s = batch_wait_timeout_s
        self.is_async = inspect.iscoroutinefunction(bound) or inspect.isasyncgenfunction(bound)
        self._queue: asyncio.Queue[tuple[Any, Any]] | None = None
        self._task: asyncio.Task[Any] | None = None
        self.batches = 0  # calls of the batch function, for tests and metrics

    def set_max_batch_size(self, max_batch_size: int) -> None:
        """Change the batch size while serving.

        Raises:
            ValueError: not an int >= 1.
        """
        self.max_batch_size, _ = _check(max_batch_size, self.batch_wait_timeout_s)

    def set_batch_wait_timeout_s(self, batch_wait_timeout_s: float) -> None:
        """Change how long a batch waits to fill up.

        Raises:
            ValueError: not a number >= 0.
        """
        _, self.batch_wait_timeout_s = _check(self.max_batch_size, batch_wait_timeout_s)

    async def __call__(self, item: Any) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._enqueue(item, future)
        return await future

    def _enqueue(self, item: Any, waiter: Any) -> None:
        if self._queue is None:
            self._queue = asyncio.Queue()
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._gather())
        self._queue.put_nowait((item, waiter))

    async def _gather(self) -> None:
        queue = self._queue
        assert queue is not None
        loop = asyncio.get_running_loop()
        while not queue.empty():  # idle, the task ends (the next call starts another): nothing left pending at a loop's close
            calls = [queue.get_nowait()]
            deadline = loop.time() + self.batch_wait_timeout_s
            while len(calls) < self.max_batch_size:
                remaining = deadline - loop.time()
                try:
                    calls.append(queue.get_nowait() if remaining <= 0 else await asyncio.wait_for(queue.get(), remaining))
                except (asyncio.QueueEmpty, asyncio.TimeoutError):
                    break
            calls = [(item, future) for item, future in calls if not future.done()]  # cancelled callers drop out
            if calls:
                await self._run(calls)

    async def _run(self, calls: list[tuple[Any, asyncio.Future[Any]]]) -> None:
        inputs = [item for item, _ in calls]
        self.batches += 1
        try:
            if self.is_async:
                results = await self.bound(inputs)
            else:
                results = await asyncio.get_running_loop().run_in_executor(None, self.bound, inputs)
            if not isinstance(results, (list, tuple)) or len(results) != len(inputs):
                got = f"{len(results)} results" if isinstance(results, (list, tuple)) else f"a {type(results).__name__}"
                raise ValueError(f"batch method {self.bound.__qualname__} returned {got} for a batch of {len(inputs)} "
                                 "inputs; it must return one result per input, in order")
        except Exception as exc:
            for _, future in calls:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), result in zip(calls, results):
            if not future.done():
                future.set_result(result)


class _Chunks:
    """One request's stream out of a batched generator: the chunks given to it, then its end."""

    __slots__ = ("queue", "ended")

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[bool, Any]] = asyncio.Queue()
        self.ended = False  # the batch ended it, or its caller went away

    def done(self) -> bool:
        return self.ended

    def put(self, chunk: Any) -> None:
        if not self.ended:
            self.queue.put_nowait((False, chunk))

    def end(self, error: BaseException | None = None) -> None:
        if not self.ended:
            self.ended = True
            self.queue.put_nowait((True, error))


_END = object()


class _StreamBatcher(_Batcher):
    """A batched generator: each yielded list carries one chunk per request of the batch."""

    __corral_kind__ = "agen"  # the replica streams what ``__call__`` yields

    async def __call__(self, item: Any) -> Any:
        chunks = _Chunks()
        self._enqueue(item, chunks)
        try:
            while True:
                ended, value = await chunks.queue.get()
                if ended:
                    if value is not None:
                        raise value
                    return
                yield value
        finally:
            chunks.ended = True  # a caller gone (cancelled, closed) stops getting chunks

    async def _run(self, calls: list[tuple[Any, Any]]) -> None:
        inputs = [item for item, _ in calls]
        streams: list[_Chunks] = [chunks for _, chunks in calls]
        self.batches += 1
        produced = self.bound(inputs)
        loop = asyncio.get_running_loop()
        try:
            while not all(chunks.ended for chunks in streams):
                if self.is_async:
                    step = await anext(produced, _END)
                else:
                    step = await loop.run_in_executor(None, next, produced, _END)
                if step is _END:
                    break
                if not isinstance(step, (list, tuple)) or len(step) != len(streams):
                    got = f"{len(step)} chunks" if isinstance(step, (list, tuple)) else f"a {type(step).__name__}"
                    raise ValueError(f"batch generator {self.bound.__qualname__} yielded {got} for a batch of {len(streams)} "
                                     "inputs; each yield must hold one chunk per input, in order (StopIteration ends one)")
                for chunks, chunk in zip(streams, step):
                    if chunk is StopIteration or isinstance(chunk, StopIteration):
                        chunks.end()
                    else:
                        chunks.put(chunk)
        except Exception as exc:
            for chunks in streams:
                chunks.end(exc)
        finally:
            for chunks in streams:
                chunks.end()
            if self.is_async:
                await produced.aclose()
            else:
                produced.close()
