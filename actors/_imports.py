"""Finding an object by its import path, ``module:Qualified.Name``."""

from __future__ import annotations

import importlib
from typing import Any


def import_object(path: str) -> Any:
    """Import ``module:attribute`` (the attribute may be dotted).

    Raises:
        ValueError: the path is not of the form ``module:attribute``.
        ImportError: the module or the attribute cannot be found.
    """
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"expected 'module:attribute', got {path!r}")
    obj: Any = importlib.import_module(module_name)
    try:
        for part in attr.split("."):
            obj = getattr(obj, part)
    except AttributeError:
        raise ImportError(f"{attr!r} not found in module {module_name!r}") from None
    return obj
