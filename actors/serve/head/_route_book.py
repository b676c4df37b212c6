"""The controller's HTTP routes and the proxies that ask for them (pure).

Routes are derived from the applications (each one's ``route_prefix``, unless
it is None or the app is being deleted). A proxy asks for them every
``routes_refresh_s``; its ask also says it is alive, so ``serve.status()``
lists the proxies heard from within three of their refresh intervals.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from protocol import RoutesChanged

from .._routes import check_route_prefix
from ._effects import Tell


class RouteBook:
    """Args:
        emit: adds an effect for the controller to carry out (the tells to proxies).
    """

    def __init__(self, emit: Callable[[Any], None]) -> None:
        self.emit = emit
        self.revision = 0
        self._last: dict[str, list[str]] = {}
        self._proxies: dict[tuple[str, str], tuple[dict[str, Any], float]] = {}  # by (node, url): (what it said, when)

    @staticmethod
    def check(apps: Iterable[Any], name: str, prefix: Any) -> str | None:
        """The validated prefix of app ``name``.

        Raises:
            ValueError: the prefix is malformed, or another application serves it.
        """
        prefix = check_route_prefix(prefix, f"route_prefix of application {name!r}")
        if prefix is None:
            return None
        for app in apps:
            if app.name != name and not app.deleting and app.route_prefix == prefix:
                raise ValueError(
                    f"route_prefix {prefix!r} of application {name!r} is already served by application {app.name!r}; "
                    "give one of them another prefix (or delete it first)"
                )
        return prefix

    def routes(self, apps: Iterable[Any]) -> dict[str, list[str]]:
        """``{prefix: [app, ingress]}`` now; the revision moves when it changed."""
        current = {a.route_prefix: [a.name, a.ingress] for a in apps if a.route_prefix is not None and not a.deleting}
        if current != self._last:
            self._last = current
            self.revision += 1
        return current

    def announce(self, apps: Iterable[Any]) -> None:
        """After a deploy or a delete: if the routes changed, tell every proxy
        heard from lately, so none serves a stale table until its next ask."""
        before = self.revision
        self.routes(apps)
        if self.revision == before:
            return
        for info, _seen in self._proxies.values():
            address, _, actor = str(info.get("actor", "")).partition("#")
            if address and actor:
                self.emit(Tell(address, actor, RoutesChanged(self.revision)))

    def answer(self, apps: Iterable[Any], known: int, proxy: dict[str, Any], now: float) -> dict[str, Any]:
        """A proxy's ask: the routes, unless it has this revision already."""
        routes = self.routes(apps)
        url = proxy.get("url")
        if isinstance(url, str) and url:  # proxies of one machine may share a url: told apart by node
            self._proxies[(str(proxy.get("node", "")), url)] = (dict(proxy), now)
        if known == self.revision:
            return {"revision": self.revision}
        return {"revision": self.revision, "routes": routes}

    def proxies(self, now: float) -> list[dict[str, Any]]:
        """The proxies heard from lately (the others are forgotten)."""
        alive = []
        for key, (info, seen) in list(self._proxies.items()):
            refresh = info.get("refresh_s", 1.0)
            if now - seen > 3 * (refresh if isinstance(refresh, (int, float)) and refresh > 0 else 1.0) + 1.0:
                del self._proxies[key]
            else:
                alive.append({**info, "seen_s_ago": round(now - seen, 3)})
        return sorted(alive, key=lambda p: (str(p.get("node")), str(p.get("url"))))
