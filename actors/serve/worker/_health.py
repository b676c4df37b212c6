"""Health checks in a worker: one replica's (:class:`ReplicaHealth`), and the
probes of every replica a process hosts, answered together (:class:`HealthProbes`).

A worker with thousands of thread-mode replicas is asked about them in one
:class:`protocol.HealthChecks` per health-check round, not one message per
replica: each replica adds its probe here once ready and removes it when it
stops; the node agent answers the batch from here.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import threading
from typing import Any, Callable

from .._context import ReplicaContext, set_replica_context

#: Starts a replica's health check; the future ends with its answer or its error.
Probe = Callable[[], "concurrent.futures.Future[dict[str, Any]]"]


class ReplicaHealth:
    """A replica's health check: the user's ``check_health`` (if any) off the
    actor's thread, on one thread of its own (a hung check never takes a
    request's thread) or, for ``async def``, on the replica's event loop.

    Args:
        instance: the user's object.
        context: the replica's identity (its check's thread carries it).
        timeout_s: ``health_check_timeout_s``.
        event_loop: the replica's event loop (started on first use).
        answer: what a passed check answers: the replica's load and models.
    """

    def __init__(self, instance: Any, context: ReplicaContext, timeout_s: float,
                 event_loop: Callable[[], asyncio.AbstractEventLoop], answer: Callable[[], dict[str, Any]]) -> None:
        self._check = getattr(instance, "check_health", None)
        self._context = context
        self.timeout_s = timeout_s
        self._event_loop = event_loop
        self._answer = answer
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    def run(self) -> dict[str, Any]:
        """Check now and wait, at most ``timeout_s``.

        Returns:
            The replica's answer.

        Raises:
            TimeoutError: the check did not return in time.
            Exception: what the check raised.
        """
        if self._check is not None:
            try:
                self._start().result(self.timeout_s)
            except concurrent.futures.TimeoutError:
                raise TimeoutError(f"check_health did not return within health_check_timeout_s={self.timeout_s:g}s") from None
        return self._answer()

    def start(self) -> concurrent.futures.Future[dict[str, Any]]:
        """Start a check without waiting (a worker's batched checks).

        Returns:
            A future of :meth:`run`'s answer: done at once when the deployment
            has no ``check_health``. The caller bounds the wait.
        """
        answer: concurrent.futures.Future[dict[str, Any]] = concurrent.futures.Future()
        if self._check is None:
            answer.set_result(self._answer())
            return answer

        def settle(done: concurrent.futures.Future[Any]) -> None:
            if done.cancelled():
                answer.cancel()
            elif done.exception() is not None:
                answer.set_exception(done.exception())  # type: ignore[arg-type]
            else:
                answer.set_result(self._answer())

        self._start().add_done_callback(settle)
        return answer

    def shutdown(self) -> None:
        """Drop checks not started; one running is left to end on its own."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def _start(self) -> concurrent.futures.Future[Any]:
        assert self._check is not None
        if inspect.iscoroutinefunction(self._check):
            return asyncio.run_coroutine_threadsafe(_awaited(self._check()), self._event_loop())
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(
                1, thread_name_prefix=f"health-{self._context.replica_id}", initializer=set_replica_context,
                initargs=(self._context,))
        return self._pool.submit(self._check)


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


class HealthProbes:
    """Probes by replica actor name; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._probes: dict[str, Probe] = {}

    def add(self, actor: str, probe: Probe) -> None:
        """Answer for ``actor`` with ``probe`` from now on."""
        with self._lock:
            self._probes[actor] = probe

    def remove(self, actor: str) -> None:
        """Stop answering for ``actor`` (its health is then an error: not here)."""
        with self._lock:
            self._probes.pop(actor, None)

    def check(self, actors: list[str], timeout_s: float) -> concurrent.futures.Future[list[dict[str, Any]]]:
        """Start every named replica's check at once.

        Args:
            actors: replica actor names.
            timeout_s: how long a check may take; one still running then is a failure.

        Returns:
            A future of one entry per name, in order: the replica's answer, or
            ``{"error": text}``. It is done at once when no check blocks, or
            after ``timeout_s`` at the latest.
        """
        with self._lock:
            probes = [self._probes.get(name) for name in actors]
        started = [_start(name, probe) for name, probe in zip(actors, probes)]
        answer: concurrent.futures.Future[list[dict[str, Any]]] = concurrent.futures.Future()
        pending = [f for f in started if not f.done()]
        if not pending:
            answer.set_result([_entry(f, timeout_s) for f in started])
            return answer

        def wait_then_answer() -> None:
            concurrent.futures.wait(pending, timeout_s)
            answer.set_result([_entry(f, timeout_s) for f in started])

        threading.Thread(target=wait_then_answer, name="health-checks", daemon=True).start()
        return answer


def _start(name: str, probe: Probe | None) -> concurrent.futures.Future[dict[str, Any]]:
    if probe is None:
        return _failed(f"LookupError: no replica actor {name!r} runs in this process")
    try:
        return probe()
    except Exception as exc:
        return _failed(f"{type(exc).__name__}: {exc}")


def _failed(text: str) -> concurrent.futures.Future[dict[str, Any]]:
    done: concurrent.futures.Future[dict[str, Any]] = concurrent.futures.Future()
    done.set_result({"error": text})
    return done


def _entry(done: concurrent.futures.Future[dict[str, Any]], timeout_s: float) -> dict[str, Any]:
    if not done.done():
        return {"error": f"TimeoutError: check_health did not return within health_check_timeout_s={timeout_s:g}s"}
    if done.cancelled():
        return {"error": "CancelledError: the replica stopped before its check ran"}
    exc = done.exception()
    if exc is not None:
        return {"error": f"{type(exc).__name__}: {exc}"}
    return done.result()
