"""HTTP routes: which application serves which path (pure, no I/O).

An application's ``route_prefix`` is ``"/"`` by default, any path starting
with ``/`` (no trailing ``/`` except the root, no ``?``/``#``/whitespace),
or None (not served over HTTP). A request goes to the longest prefix that is
the path itself or a whole leading segment run of it: ``/a`` serves ``/a``
and ``/a/b``, never ``/ab``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


def check_route_prefix(value: Any, where: str = "route_prefix") -> str | None:
    """The prefix, validated.

    Raises:
        ValueError: it is not None or a string starting with ``/`` (the message names ``where``).
    """
    if value is None:
        return None
    if not isinstance(value, str) or not value.startswith("/"):
        raise ValueError(f"{where}: expected None or a string starting with '/', got {value!r}")
    if value != "/" and value.endswith("/"):
        raise ValueError(f"{where}: {value!r} must not end with '/' (use {value.rstrip('/') or '/'!r})")
    if any(c in value for c in "?#{}") or any(c.isspace() for c in value):
        raise ValueError(f"{where}: {value!r} must be a plain path (no '?', '#', braces or whitespace)")
    return value


@dataclass(frozen=True)
class Route:
    """Where one prefix leads."""

    prefix: str
    app: str
    ingress: str


class RouteTable:
    """The routes a proxy knows, at one revision of the controller's table.

    Args:
        routes: ``{prefix: (app, ingress)}``.
        revision: the controller's route revision they come from (-1: none yet).
    """

    def __init__(self, routes: dict[str, tuple[str, str]] | None = None, revision: int = -1) -> None:
        self.revision = revision
        self._by_prefix = {p: Route(p, a, i) for p, (a, i) in (routes or {}).items()}

    def __len__(self) -> int:
        return len(self._by_prefix)

    def match(self, path: str) -> Route | None:
        """The route of the longest prefix that covers ``path``, or None. O(path depth)."""
        by_prefix = self._by_prefix
        candidate = path.rstrip("/") or "/"
        while True:
            route = by_prefix.get(candidate)
            if route is not None:
                return route
            if candidate == "/":
                return None
            cut = candidate.rfind("/")
            candidate = candidate[:cut] or "/"

    def as_dict(self) -> dict[str, str]:
        """``{prefix: app}``, as ``GET /-/routes`` shows it."""
        return {p: r.app for p, r in sorted(self._by_prefix.items())}
