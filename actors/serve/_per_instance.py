"""The descriptor a method decorator (``@serve.batch``, ``@serve.multiplexed``)
leaves in a class: each instance gets its own object made from the bound
method, kept in the instance's ``__dict__`` under a slot of the decorator's."""

from __future__ import annotations

import functools
from typing import Any, Callable


class PerInstance:
    """Args:
        func: the decorated function.
        slot: the ``__dict__`` key of the decorator's objects (by method name).
        make: builds an instance's object from the bound method.
    """

    def __init__(self, func: Callable[..., Any], slot: str, make: Callable[[Callable[..., Any]], Any]) -> None:
        self.func = func
        self.slot = slot
        self.make = make
        self.name = func.__name__
        functools.update_wrapper(self, func)

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        made = instance.__dict__.setdefault(self.slot, {})
        bound = made.get(self.name)
        if bound is None:
            bound = made[self.name] = self.make(self.func.__get__(instance))
        return bound
