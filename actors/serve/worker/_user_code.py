"""Finding the user's code from an import path, and calling it: what a method
returned (an answer, or a generator to stream), function deployments."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import os
import runpy
import sys
import threading
import types
from typing import Any, Callable

from ..._imports import import_object
from .._app import PLAIN_TYPES

_main_lock = threading.Lock()


def load_import_path(import_path: str, main_file: str | None, import_dirs: list[str] | None = None) -> Any:
    """Import ``module:Qualified.Name``; ``__main__`` means the user's script.

    ``import_dirs`` (the folders the deploying process found the code in) go
    first on this process's import path. The script is run once per process
    under the name ``__mp_main__`` (as multiprocessing's spawn does), so its
    ``if __name__ == "__main__":`` block does not run again in the worker.

    Raises:
        ImportError: the module or the attribute cannot be found.
    """
    missing = _add_import_dirs(import_dirs or [])
    module_name, _, qualname = import_path.partition(":")
    if module_name != "__main__":
        try:
            return import_object(import_path)
        except ModuleNotFoundError as exc:
            if missing:
                raise ModuleNotFoundError(
                    f"{exc} (the folder it was deployed from, {', '.join(missing)}, does not exist on this host: "
                    "install the code there or put it on a shared path)"
                ) from None
            raise
    obj: Any = _user_main(main_file, import_path)
    try:
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except AttributeError:
        raise ImportError(f"cannot import {import_path!r}: {qualname!r} not found in the user's script") from None
    return obj


def _add_import_dirs(dirs: list[str]) -> list[str]:
    """Put ``dirs`` first on ``sys.path`` (once each); returns those that do not exist here."""
    missing = [d for d in dirs if not os.path.isdir(d)]
    wanted = [d for d in dirs if d not in missing]
    if wanted:
        with _main_lock:
            for folder in reversed(wanted):
                if folder in sys.path:
                    sys.path.remove(folder)
                sys.path.insert(0, folder)
            importlib.invalidate_caches()
    return missing


def _user_main(main_file: str | None, import_path: str) -> types.ModuleType:
    if not main_file:
        raise ImportError(f"cannot import {import_path!r}: the defining script's file is unknown")
    with _main_lock:
        module = sys.modules.get("__mp_main__")
        if module is None or getattr(module, "__file__", None) != main_file:
            namespace = runpy.run_path(main_file, run_name="__mp_main__")
            module = types.ModuleType("__mp_main__")
            module.__dict__.update(namespace)
            module.__file__ = main_file
            sys.modules["__mp_main__"] = module
    return module


def function_instance(fn: Any) -> Any:
    """An object whose ``__call__`` is a function deployment's function, of
    the same kind (sync, async, generator or async generator), so the replica
    serves it as it serves a class's ``__call__``."""
    if inspect.isasyncgenfunction(fn):
        async def call(self: Any, *args: Any, **kwargs: Any) -> Any:
            async for item in fn(*args, **kwargs):
                yield item
    elif inspect.iscoroutinefunction(fn):
        async def call(self: Any, *args: Any, **kwargs: Any) -> Any:  # type: ignore[misc]
            return await fn(*args, **kwargs)
    elif inspect.isgeneratorfunction(fn):
        def call(self: Any, *args: Any, **kwargs: Any) -> Any:  # type: ignore[misc]
            yield from fn(*args, **kwargs)
    else:
        def call(self: Any, *args: Any, **kwargs: Any) -> Any:  # type: ignore[misc]
            return fn(*args, **kwargs)
    return type(fn.__name__, (), {"__call__": call, "__doc__": fn.__doc__})()


def returned(deployment: str, method: str, value: Any, emit: Any) -> Any:
    """What a plain method returned: a generator object streams (with
    stream=True, as a generator method does; an async generator is left to
    the caller's loop); anything else is the answer.

    Raises:
        TypeError: a generator without stream=True, or stream=True without one.
    """
    if emit is None and type(value) in PLAIN_TYPES:  # the common case: the answer, nothing to check
        return value
    streams = inspect.isgenerator(value) or inspect.isasyncgen(value)
    if emit is None and streams:
        raise TypeError(f"method {method!r} of deployment {deployment!r} returned a generator; "
                        "call it with handle.options(stream=True)")
    if emit is not None and not streams:
        raise TypeError(f"method {method!r} of deployment {deployment!r} returned {type(value).__name__}, "
                        "not a generator; call it without stream=True")
    if inspect.isgenerator(value):
        _drain(value, emit)
        return None
    return value


def public_methods(instance: Any) -> list[str]:
    cls = type(instance)
    names = sorted(n for n in dir(cls) if not n.startswith("_") and callable(getattr(cls, n, None)))
    return (["__call__"] if any("__call__" in vars(k) for k in cls.__mro__[:-1]) else []) + names


def pump_sync(method: Callable[..., Any], args: list[Any], kwargs: dict[str, Any], emit: Callable[[Any], None]) -> None:
    _drain(method(*args, **kwargs), emit)


def _drain(generator: Any, emit: Any) -> None:
    """Send what a sync generator yields; on a worker thread, wait while the
    stream's window is full (an event loop's thread is never blocked)."""
    window = getattr(emit, "window", None)
    try:
        asyncio.get_running_loop()
        window = None
    except RuntimeError:
        pass
    try:
        for item in generator:
            emit(item)
            if window is not None and not window.has_room():
                window.wait()
    finally:
        generator.close()


async def pump_async(generator: Any, emit: Callable[[Any], None]) -> None:
    """Send what an async generator yields, waiting while the stream's window is full."""
    window = getattr(emit, "window", None)
    try:
        async for item in generator:
            emit(item)
            if window is not None and not window.has_room():
                await window.wait_async()
    finally:
        await generator.aclose()


def method_kind(method: Any) -> str:
    """How a replica runs a method: ``"sync"``, ``"gen"``, ``"async"``, ``"agen"``,
    or what a wrapper says of itself (``__corral_kind__``: ``@serve.batch``)."""
    marked = getattr(method, "__corral_kind__", None)
    if marked is not None:
        return str(marked)
    if inspect.isasyncgenfunction(method):
        return "agen"
    if inspect.isgeneratorfunction(method):
        return "gen"
    return "async" if inspect.iscoroutinefunction(method) else "sync"
