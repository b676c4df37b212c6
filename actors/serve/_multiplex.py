"""``@serve.multiplexed``: many models served by one deployment, each replica
holding the few most recently used, as Ray Serve's.

    @serve.deployment
    class Models:
        @serve.multiplexed(max_num_models_per_replica=3)
        async def get_model(self, model_id: str) -> Any:
            return load(model_id)                   # sync or async; called once per model held

        async def __call__(self, x):
            model = await self.get_model(serve.get_multiplexed_model_id())
            return model(x)

    handle.options(multiplexed_model_id="a").remote(x)   # or the HTTP header serve_multiplexed_model_id

The router sends a request for model ``a`` to a replica that holds it when
one has room (replicas tell which they hold in their health checks, and each
router remembers where it sent a model), and falls back to its usual choice
otherwise. A replica past its limit drops its least recently used model. A
loader that raises fails that request with its error; nothing is cached.
"""

from __future__ import annotations

import asyncio
import inspect
from collections import OrderedDict
from contextvars import ContextVar
from typing import Any, Callable

from ._per_instance import PerInstance

_MODEL_ID: ContextVar[str] = ContextVar("corral_multiplexed_model_id", default="")
_CACHES = "__corral_model_caches__"  # in a deployment instance's __dict__: its model caches by method name


def get_multiplexed_model_id() -> str:
    """The model id the current request asked for (``""`` when none).

    Returns:
        ``handle.options(multiplexed_model_id=...)``'s value, or the HTTP header
        ``serve_multiplexed_model_id``'s, for the request being served.
    """
    return _MODEL_ID.get()


def set_multiplexed_model_id(model_id: str) -> Any:
    """Make ``model_id`` the current request's (the replica, before user code runs). Returns a reset token."""
    return _MODEL_ID.set(model_id)


def reset_multiplexed_model_id(token: Any) -> None:
    _MODEL_ID.reset(token)


def held_model_ids(instance: Any) -> list[str]:
    """The model ids a deployment instance holds, across its multiplexed methods."""
    caches = getattr(instance, "__dict__", {}).get(_CACHES, {})
    return sorted({model_id for cache in caches.values() for model_id in cache.model_ids()})


def multiplexed(_func: Callable[..., Any] | None = None, *, max_num_models_per_replica: int = 3) -> Any:
    """Cache what a model loader returns, per model id, up to a limit per replica
    (see the module docstring). The decorated method takes ``self`` and a model
    id; calling it (``await self.get_model(model_id)``) loads on first use.

    Raises:
        ValueError: ``max_num_models_per_replica`` is not an int >= 1.
        TypeError: what is decorated is not a function taking ``self`` and a model id.
    """
    limit = max_num_models_per_replica
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"serve.multiplexed: max_num_models_per_replica must be an int >= 1, got {limit!r}")

    def decorate(func: Callable[..., Any]) -> PerInstance:
        if not inspect.isfunction(func) or len(inspect.signature(func).parameters) != 2:
            raise TypeError(f"serve.multiplexed: {getattr(func, '__qualname__', func)!r} must be a method taking self and a model id")
        if inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
            raise TypeError(f"serve.multiplexed: {func.__qualname__} must return a model, not be a generator")
        return PerInstance(func, _CACHES, lambda bound: ModelCache(bound, limit))

    return decorate(_func) if _func is not None else decorate


class ModelCache:
    """One instance's models from one loader: least recently used dropped past the limit."""

    __corral_kind__ = "async"

    def __init__(self, load: Callable[[str], Any], limit: int) -> None:
        self.load = load
        self.limit = limit
        self.is_async = inspect.iscoroutinefunction(load)
        self._models: OrderedDict[str, Any] = OrderedDict()
        self._loading: dict[str, asyncio.Future[Any]] = {}
        self.loads = 0
        self.evictions = 0

    def model_ids(self) -> list[str]:
        return list(self._models)

    async def __call__(self, model_id: str | None = None) -> Any:
        """The model for ``model_id`` (the current request's when None), loaded on first use.

        Raises:
            ValueError: no model id (the request named none).
            Exception: what the loader raised (nothing is cached then).
        """
        model_id = get_multiplexed_model_id() if model_id is None else model_id
        if not isinstance(model_id, str) or not model_id:
            raise ValueError(f"no multiplexed model id: call with handle.options(multiplexed_model_id=...), got {model_id!r}")
        if model_id in self._models:
            self._models.move_to_end(model_id)
            return self._models[model_id]
        loading = self._loading.get(model_id)
        if loading is None:  # one load per model, however many requests wait for it
            loading = self._loading[model_id] = asyncio.ensure_future(self._load(model_id))
        return await asyncio.shield(loading)

    async def _load(self, model_id: str) -> Any:
        try:
            if self.is_async:
                model = await self.load(model_id)
            else:
                model = await asyncio.get_running_loop().run_in_executor(None, self.load, model_id)
        finally:
            del self._loading[model_id]
        self.loads += 1
        self._models[model_id] = model
        while len(self._models) > self.limit:
            self._models.popitem(last=False)
            self.evictions += 1
        return model
