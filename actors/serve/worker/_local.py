"""Local testing mode (Ray Serve's ``serve.run(app, _local_testing_mode=True)``):
an application's deployments constructed in the calling process, one instance
each, called through handles that behave as a cluster's do, with no worker,
no controller and no socket. Deployments defined inside a test function work,
because nothing is imported by path.

Async methods run on one event loop thread, sync methods in a thread pool;
``.remote()`` returns the same response types as on a cluster.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import inspect
import threading
import time
from typing import Any

from ..._future import Future
from ..._stream import Stream
from .._app import Application
from .._multiplex import set_multiplexed_model_id
from ..client._handle import DeploymentResponse, DeploymentResponseGenerator
from ._user_code import function_instance, pump_async, returned


class LocalRuntime:
    """The event loop and the thread pool every local application of a process shares.

    Args:
        threads: the pool's size (sync methods running at once).
    """

    def __init__(self, threads: int = 32) -> None:
        self.loop = asyncio.new_event_loop()
        self.pool = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="serve-local")
        self.thread = threading.Thread(target=self.loop.run_forever, name="serve-local-loop", daemon=True)
        self.thread.start()
        self.apps: dict[str, dict[str, Any]] = {}  # app name -> its deployments' instances

    def run(self, app: Application, name: str, timeout_s: float) -> LocalHandle:
        """Construct every deployment of ``app`` (bound deployments become local handles); its ingress's handle.

        Raises:
            Exception: what a constructor raised.
        """
        instances: dict[str, Any] = {}
        handle = self._build(app, instances, timeout_s)
        self.apps[name] = instances
        return handle

    def _build(self, app: Application, instances: dict[str, Any], timeout_s: float) -> LocalHandle:
        deployment = app.deployment
        args = [self._build(a, instances, timeout_s) if isinstance(a, Application) else a for a in app.args]
        kwargs = {k: self._build(v, instances, timeout_s) if isinstance(v, Application) else v for k, v in app.kwargs.items()}
        target = deployment.func_or_class
        if inspect.isfunction(target):
            instance = function_instance(target)
        elif inspect.iscoroutinefunction(target.__init__):
            instance = target.__new__(target)
            asyncio.run_coroutine_threadsafe(instance.__init__(*args, **kwargs), self.loop).result(timeout_s)
        else:
            instance = target(*args, **kwargs)
        user_config = deployment.config.user_config
        if user_config is not None and hasattr(instance, "reconfigure"):
            done = instance.reconfigure(user_config)
            if inspect.isawaitable(done):
                asyncio.run_coroutine_threadsafe(_awaited(done), self.loop).result(timeout_s)
        instances[deployment.name] = instance
        return LocalHandle(self, deployment.name, instance)

    def close(self) -> None:
        """Stop the loop and the pool (what runs is abandoned)."""
        self.apps.clear()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.pool.shutdown(wait=False, cancel_futures=True)


class LocalHandle:
    """A handle to one locally constructed deployment (see the module docstring)."""

    def __init__(self, runtime: LocalRuntime, deployment: str, instance: Any, method: str = "__call__",
                 stream: bool = False, multiplexed_model_id: str = "") -> None:
        self._runtime = runtime
        self.deployment_name = deployment
        self._instance = instance
        self.method_name = method
        self.stream = stream
        self.multiplexed_model_id = multiplexed_model_id

    def options(self, *, method_name: str | None = None, stream: bool | None = None,
                multiplexed_model_id: str | None = None) -> LocalHandle:
        return LocalHandle(self._runtime, self.deployment_name, self._instance, method_name or self.method_name,
                           self.stream if stream is None else stream,
                           self.multiplexed_model_id if multiplexed_model_id is None else multiplexed_model_id)

    def __getattr__(self, name: str) -> LocalHandle:
        if name.startswith("_"):
            raise AttributeError(name)
        return self.options(method_name=name)

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        """Call the method; a response (or a response generator with ``stream=True``), as on a cluster.

        Raises:
            AttributeError: the deployment has no such method (the message lists its methods).
        """
        method = getattr(self._instance, self.method_name, None)
        if method is None or not callable(method):
            raise AttributeError(f"deployment {self.deployment_name!r} has no method {self.method_name!r}")
        what = f"{self.deployment_name}.{self.method_name}"
        if self.stream:
            generator = DeploymentResponseGenerator(time.monotonic() + 3600, f"stream from {what}")
            stream: Stream[Any] = Stream(f"stream from {what}", time.monotonic() + 3600)
            generator._attach(stream)
            asyncio.run_coroutine_threadsafe(self._stream(method, args, kwargs, stream), self._runtime.loop)
            return generator
        future: Future[Any] = Future(f"request to {what}")
        asyncio.run_coroutine_threadsafe(self._call(method, args, kwargs, future), self._runtime.loop)
        return DeploymentResponse(future)

    async def _call(self, method: Any, args: Any, kwargs: Any, future: Future[Any]) -> None:
        set_multiplexed_model_id(self.multiplexed_model_id)  # this task's context (and the pool call's copy of it)
        try:
            args, kwargs = await _resolved(args, kwargs)
            if inspect.iscoroutinefunction(method) or getattr(method, "__corral_kind__", None) == "async":
                value = await method(*args, **kwargs)
            else:
                context = contextvars.copy_context()
                value = await self._runtime.loop.run_in_executor(self._runtime.pool, lambda: context.run(method, *args, **kwargs))
            future.set_result(returned(self.deployment_name, self.method_name, value, None))
        except BaseException as exc:  # the caller's result() raises it, as a cluster's would
            future.set_exception(exc)

    async def _stream(self, method: Any, args: Any, kwargs: Any, stream: Stream[Any]) -> None:
        set_multiplexed_model_id(self.multiplexed_model_id)
        try:
            args, kwargs = await _resolved(args, kwargs)
            if inspect.iscoroutinefunction(method) or inspect.isasyncgenfunction(method) or \
                    getattr(method, "__corral_kind__", None) in ("async", "agen"):
                produced = method(*args, **kwargs)
                if inspect.isawaitable(produced):
                    produced = await produced
                if inspect.isasyncgen(produced):
                    await pump_async(produced, stream.push)
                else:
                    returned(self.deployment_name, self.method_name, produced, stream.push)
            else:  # a sync generator runs on the pool, not on the loop
                context = contextvars.copy_context()
                await self._runtime.loop.run_in_executor(self._runtime.pool, lambda: context.run(
                    lambda: returned(self.deployment_name, self.method_name, method(*args, **kwargs), stream.push)))
            stream.finish()
        except BaseException as exc:
            stream.finish(exc)

    def __repr__(self) -> str:
        return f"LocalHandle(deployment={self.deployment_name!r}, method={self.method_name!r})"


async def _resolved(args: Any, kwargs: Any) -> tuple[list[Any], dict[str, Any]]:
    """Responses passed as arguments are awaited first, as a cluster's handle does."""
    out = [await a if isinstance(a, DeploymentResponse) else a for a in args]
    return out, {k: await v if isinstance(v, DeploymentResponse) else v for k, v in kwargs.items()}


async def _awaited(awaitable: Any) -> Any:
    return await awaitable
