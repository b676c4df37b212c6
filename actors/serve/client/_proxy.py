"""The HTTP proxy's ASGI app: routes a request by prefix to its application's
ingress, sends it through this process's router and writes back what the
replica answers (see ``worker/_http.py`` for the pieces that travel)."""

from __future__ import annotations

import asyncio
import bisect
import json
import logging
import os
import threading
import time
from collections import Counter, deque
from typing import Any, Callable

from protocol import LATENCY_BUCKETS_S, GetRoutes, HandleRequest

from ..._config import HttpOptions
from ..._errors import AskCancelled
from .._errors import BackPressureError, DeploymentNotFoundError
from .._names import HTTP_METHOD
from .._routes import Route, RouteTable
from ..._future import wake_threadsafe
from ..._window import CREDIT_EVERY
from ._router import Call

log = logging.getLogger("corral.serve")

class _Exchange:
    """One proxied request's response pieces, pushed by the runtime (through
    the router, which may send the request again) and awaited on the proxy's
    loop without a task or a Stream of its own. A timer or the client's
    disconnection ends it with :meth:`end`."""

    __slots__ = ("loop", "items", "error", "ended", "started", "call", "_waiter", "deadline", "watch_at", "receive", "credit", "taken")

    def __init__(self, loop: asyncio.AbstractEventLoop, deadline: float, receive: Any) -> None:
        self.loop = loop
        self.deadline = deadline  # monotonic: past it, the sweep ends the request with 408
        self.watch_at = time.monotonic() + _WATCH_AFTER_S  # still open then: watch for the client going away
        self.receive = receive
        self.items: deque[Any] = deque()
        self.error: BaseException | None = None
        self.ended = False
        self.started = False  # the response head went to the client
        self.call: Any = None  # the router's call (its attempt in flight can be cancelled)
        self._waiter: asyncio.Future[None] | None = None
        self.credit: Any = None  # set by the runtime (through the attempt): tells the replica what was sent on
        self.taken = 0

    def _signal(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            wake_threadsafe(self.loop, waiter)

    # ---- the router's side (any thread) --------------------------------------------------

    def push(self, item: Any) -> None:
        self.items.append(item)
        self._signal()

    def finish(self, error: BaseException | None = None) -> bool:
        if self.ended:
            return False
        self.error, self.ended = error, True
        self._signal()
        return True

    def set_exception(self, error: BaseException) -> bool:
        return self.finish(error)

    def done(self) -> bool:
        return self.ended

    # ---- the proxy's side (its loop) -----------------------------------------------------

    def end(self, error: BaseException, why: str) -> None:
        """Stop waiting (a timeout, the client gone) and stop the replica's work
        (also when the ask's own deadline ended the exchange a moment before)."""
        self.finish(error)
        current = None if self.call is None else self.call.current
        if current is not None:
            current.cancel(AskCancelled(why))

    async def next(self) -> Any:
        """The next piece.

        Raises:
            StopAsyncIteration: the response ended.
            Exception: it failed (the router's error, a timeout, a disconnection).
        """
        while True:
            if self.items:
                self.taken += 1
                if self.credit is not None and self.taken % CREDIT_EVERY == 0:
                    self.credit(self.taken)
                return self.items.popleft()
            if self.ended:
                if self.error is not None:
                    raise self.error
                raise StopAsyncIteration
            self._waiter = self.loop.create_future()
            if not (self.items or self.ended):
                await self._waiter
            self._waiter = None


class ProxyApp:
    """The ASGI app of one HTTP proxy.

    Args:
        session: this process's session (routers, the controller).
        options: the HTTP settings.
        node_id: where the proxy runs (``"head"`` or a worker's node id).
    """

    def __init__(self, session: Any, options: HttpOptions, node_id: str) -> None:
        self.session = session
        self.options = options
        self.node_id = node_id
        self.url = ""
        self.actor = ""  # address#name of the proxy's actor: where the controller says the routes changed
        self.on_first_request: Callable[[], None] | None = None  # called on the loop, once, by the next HTTP request
        self.routes = RouteTable()
        self.routers: dict[tuple[str, str], Any] = {}
        self.by_route: dict[str, _RouteStats] = {}  # "" for no route; written on the proxy's loop only
        self.requests = 0
        self.open: set[_Exchange] = set()  # requests waiting for or streaming their answer (the sweep's)
        self._refresh: asyncio.Task[Any] | None = None
        self._miss: asyncio.Task[Any] | None = None  # the refresh a path with no route started
        self._miss_started = 0.0
        self._lock = threading.Lock()

    # ---- routes --------------------------------------------------------------------------

    async def keep_routes(self, stop: asyncio.Event) -> None:
        """Ask the controller for the routes every ``routes_refresh_s`` until ``stop``."""
        while not stop.is_set():
            await self.refresh_routes()
            try:
                await asyncio.wait_for(stop.wait(), self.options.routes_refresh_s)
            except asyncio.TimeoutError:
                pass

    async def refresh_routes(self) -> None:
        """One ask for the routes (concurrent callers share it); the old routes stay if the controller does not answer."""
        if self._refresh is None or self._refresh.done():
            self._refresh = asyncio.ensure_future(self._ask_routes())
        await asyncio.shield(self._refresh)

    async def _ask_routes(self) -> None:
        message = GetRoutes(self.routes.revision, self.statistics())
        try:
            answer = await self.session.controller.ask(message, timeout=min(5.0, self.session.config.serve.control_timeout_s))
        except Exception as exc:  # the controller is restarting: keep the routes known
            log.debug("proxy %s: routes not refreshed: %s", self.node_id, exc)
            return
        if "routes" in answer:
            table = RouteTable({p: (a, i) for p, (a, i) in answer["routes"].items()}, answer["revision"])
            live = {(r.app, r.ingress) for r in (table.match(p) for p in answer["routes"]) if r is not None}
            self.routes = table
            self.routers = {k: v for k, v in self.routers.items() if k in live}

    async def _route_after_refresh(self, path: str) -> Route | None:
        """A path no route covers: the app may have been deployed a moment ago,
        so ask the controller with an ask started after this miss (misses
        within ``_MISS_REFRESH_S`` of each other share one: a flood of 404s
        asks at most 10 times a second)."""
        task = self._miss
        if task is None or (task.done() and time.monotonic() - self._miss_started >= _MISS_REFRESH_S):
            self._miss_started = time.monotonic()
            task = self._miss = asyncio.ensure_future(self._fresh_routes())
        await asyncio.shield(task)
        return self.routes.match(path)

    async def _fresh_routes(self) -> None:
        if self._refresh is not None and not self._refresh.done():
            await asyncio.shield(self._refresh)  # it may have been asked before the deploy
        await self.refresh_routes()

    async def _router(self, route: Route) -> Any:
        key = (route.app, route.ingress)
        router = self.routers.get(key)
        if router is None:  # the first request: subscribing asks the controller, off the loop
            router = await asyncio.get_running_loop().run_in_executor(None, self.session.router, route.app, route.ingress)
            self.routers[key] = router
        return router

    # ---- requests --------------------------------------------------------------------------

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":  # websockets are not served: refused before the handshake (403)
            await send({"type": "websocket.close", "code": 1003})
            return
        if self.on_first_request is not None:
            first, self.on_first_request = self.on_first_request, None
            first()
        started = time.perf_counter()
        path = scope["path"]
        label = path if path in ("/-/healthz", "/-/routes") else ""
        status = 500
        try:
            if path == "/-/healthz":
                ok = self.routes.revision >= 0
                status = await _reply(send, 200 if ok else 503, b"success" if ok else b"no routes from the controller yet")
            elif path == "/-/routes":
                status = await _reply(send, 200, json.dumps(self.routes.as_dict()).encode(), b"application/json")
            else:
                route = self.routes.match(path)
                if route is None:
                    route = await self._route_after_refresh(path)
                label = route.prefix if route is not None else ""
                status = await (self._forward(route, scope, receive, send) if route is not None
                                else _reply(send, 404, f"no application serves {path!r}; see /-/routes".encode()))
        finally:
            stats = self.by_route.get(label)
            if stats is None:
                with self._lock:
                    stats = self.by_route[label] = _RouteStats()
            stats.add(status, time.perf_counter() - started)
            self.requests += 1

    async def _forward(self, route: Route, scope: dict[str, Any], receive: Any, send: Any) -> int:
        body = await _read_body(scope, receive, self.options.max_body_bytes)
        if isinstance(body, int):
            return await _reply(send, body, _BODY_ERRORS[body])
        timeout = self.options.request_timeout_s or self.session.config.serve.request_timeout_s
        deadline = time.monotonic() + timeout
        exchange = _Exchange(asyncio.get_running_loop(), deadline, receive)
        try:
            router = self.routers.get((route.app, route.ingress)) or await self._router(route)
            # the ask's own deadline comes a little later: the sweep ends it first, with 408 and a cancel
            request = HandleRequest(HTTP_METHOD, [wire_request(scope, route.prefix), body], {}, _model_id(scope))
            exchange.call = Call(request, True, deadline + _ASK_GRACE_S, exchange)
            router.submit(exchange.call)
        except BackPressureError as exc:
            return await _reply(send, 503, str(exc).encode(), extra=[(b"retry-after", b"1")])
        except DeploymentNotFoundError as exc:
            return await _reply(send, 404, str(exc).encode())
        except Exception as exc:  # DEPLOY_FAILED, or the controller unreachable for a first subscription
            log.warning("proxy %s: %s not routable: %s", self.node_id, route.prefix, exc)
            return await _reply(send, 503, f"{type(exc).__name__}: {exc}".encode(), extra=[(b"retry-after", b"1")])
        self.open.add(exchange)
        try:
            return await self._respond(exchange, send)
        except _TimedOut:
            if exchange.started:  # mid-stream: the connection is closed, not answered
                raise TimeoutError(f"request to {route.prefix!r} timed out after {timeout}s mid-response") from None
            return await _reply(send, 408, f"request timed out after {timeout}s".encode())
        except _ClientGone:
            return 499
        except BaseException:
            exchange.end(_ClientGone(), "the proxy failed the request")
            raise
        finally:
            self.open.discard(exchange)
            exchange.set_exception(_ClientGone())  # late pieces wake nobody; a watcher still running ends

    async def sweep(self, stop: asyncio.Event) -> None:
        """Every ``_WATCH_AFTER_S`` until ``stop``: end the requests past their
        deadline (408), and watch for the client going away on those still
        open after a moment (the quick requests never cost a timer or a task)."""
        while not stop.is_set():
            now = time.monotonic()
            for exchange in list(self.open):
                if now >= exchange.deadline:
                    exchange.end(_TimedOut(), "the request timed out")
                elif exchange.receive is not None and now >= exchange.watch_at:
                    receive, exchange.receive = exchange.receive, None
                    asyncio.ensure_future(_watch_disconnect(exchange, receive))
            try:
                await asyncio.wait_for(stop.wait(), _WATCH_AFTER_S)
            except asyncio.TimeoutError:
                pass

    async def _respond(self, exchange: _Exchange, send: Any) -> int:
        try:
            first = await exchange.next()
        except (_TimedOut, _ClientGone):
            raise
        except TimeoutError:  # waited at the handle past the deadline, or the ask's own deadline came first
            exchange.end(_TimedOut(), "the request timed out")
            raise _TimedOut() from None
        except StopAsyncIteration:
            log.warning("proxy %s: the replica ended a response without sending it", self.node_id)
            return await _reply(send, 500, b"Internal Server Error")
        except BackPressureError as exc:
            return await _reply(send, 503, str(exc).encode(), extra=[(b"retry-after", b"1")])
        except DeploymentNotFoundError as exc:
            return await _reply(send, 404, str(exc).encode())
        except Exception as exc:
            log.warning("proxy %s: request failed: %s", self.node_id, exc)
            return await _reply(send, 500, b"Internal Server Error")
        status = int(first[0])
        exchange.started = True
        await send({"type": "http.response.start", "status": status, "headers": first[1]})
        if len(first) == 4:
            await send({"type": "http.response.body", "body": bytes(first[2])})
            return status
        await send({"type": "http.response.body", "body": bytes(first[2]), "more_body": True})
        while True:  # streaming: a timeout or a disconnection ends the exchange, so the loop ends
            try:
                piece = await exchange.next()
            except StopAsyncIteration:
                break
            await send({"type": "http.response.body", "body": bytes(piece[0]), "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return status

    def statistics(self) -> dict[str, Any]:
        """Requests served, and per route ("" for paths no route covers):
        counts by status code and a latency histogram (``LATENCY_BUCKETS_S``)."""
        with self._lock:  # another thread may read while the loop adds a route
            routes = list(self.by_route.items())
        return {"node": self.node_id, "url": self.url, "actor": self.actor, "pid": os.getpid(), "refresh_s": self.options.routes_refresh_s,
                "requests": self.requests, "http": {route: stats.snapshot() for route, stats in routes}}


class _RouteStats:
    """One route's requests at one proxy: counts by status, latency histogram."""

    __slots__ = ("statuses", "buckets", "latency_sum_s")

    def __init__(self) -> None:
        self.statuses: Counter[int] = Counter()
        self.buckets = [0] * (len(LATENCY_BUCKETS_S) + 1)
        self.latency_sum_s = 0.0

    def add(self, status: int, seconds: float) -> None:
        self.statuses[status] += 1
        self.buckets[bisect.bisect_left(LATENCY_BUCKETS_S, seconds)] += 1
        self.latency_sum_s += seconds

    def snapshot(self) -> dict[str, Any]:
        return {"statuses": {str(k): v for k, v in self.statuses.items()}, "latency_buckets": list(self.buckets),
                "latency_sum_s": self.latency_sum_s}


def wire_request(scope: dict[str, Any], prefix: str) -> list[Any]:
    """What a replica needs to rebuild the request's ASGI scope (msgpack values
    only; positions as ``worker/_http.py``'s ``scope_of`` reads them)."""
    server = scope.get("server")
    client = scope.get("client")
    return [
        scope["method"], scope.get("scheme", "http"), scope.get("http_version", "1.1"), scope["path"],
        scope.get("raw_path") or scope["path"].encode(), "" if prefix == "/" else prefix,
        scope.get("query_string", b""), [[name, value] for name, value in scope.get("headers", ())],
        list(client) if client else None, [server[0], server[1]] if server and server[1] is not None else None,
    ]


def _model_id(scope: dict[str, Any]) -> str:
    """The multiplexed model a request asks for (header ``serve_multiplexed_model_id``, as Ray Serve's)."""
    for name, value in scope.get("headers", ()):
        if name == b"serve_multiplexed_model_id":
            return value.decode("latin-1")
    return ""


async def _read_body(scope: dict[str, Any], receive: Any, limit: int) -> bytes | int:
    """The whole body; 413 past ``limit``, 499 when the client went away."""
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                if int(value) > limit:
                    return 413
            except ValueError:
                return 400
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return 499
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return 413
        parts.append(chunk)
        if not message.get("more_body", False):
            return parts[0] if len(parts) == 1 else b"".join(parts)


_WATCH_AFTER_S = 0.05
_BODY_ERRORS = {400: b"invalid content-length", 413: b"request body too large", 499: b"client went away"}
_MISS_REFRESH_S = 0.1
_ASK_GRACE_S = 1.0


class _TimedOut(Exception):
    """The proxied request passed its timeout."""


class _ClientGone(Exception):
    """The HTTP client disconnected before the response ended."""


async def _watch_disconnect(exchange: _Exchange, receive: Any) -> None:
    while not exchange.ended:
        message = await receive()
        if message["type"] == "http.disconnect":
            if not exchange.ended:  # (after a complete response, receive says "disconnect" too)
                exchange.end(_ClientGone(), "the HTTP client went away")
            return


async def _reply(send: Any, status: int, body: bytes, content_type: bytes = b"text/plain; charset=utf-8",
                 extra: list[tuple[bytes, bytes]] | None = None) -> int:
    headers = [(b"content-type", content_type), *(extra or [])]
    try:
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
    except Exception:  # the client is gone
        pass
    return status


async def _lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
