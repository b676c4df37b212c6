"""How a replica serves an HTTP request a proxy forwarded: it runs the class's
ASGI app (``@serve.ingress``) or its ``__call__(request)``, and hands back the
response as one piece, or as chunks while they are produced.

What travels back to the proxy (msgpack lists):

- a whole response, as the request's answer: ``[status, headers, body, True]``;
- a streamed one, as stream items: ``[status, headers, first_chunk]`` then
  ``[chunk]``... (the answer that ends it is None).
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import json
import logging
import traceback
from typing import Any, Awaitable, Callable

from .._ingress import ASGI_APP_ATTR, current_instance

log = logging.getLogger("corral.serve")

RunSync = Callable[..., Awaitable[Any]]


def scope_of(wire: list[Any]) -> dict[str, Any]:
    """The ASGI scope of a forwarded request: ``[method, scheme, http_version,
    path, raw_path, root_path, query_string, headers, client, server]`` (the
    proxy's ``wire_request``).

    Raises:
        ValueError: ``wire`` does not have that shape.
    """
    if not isinstance(wire, list) or len(wire) != 10:
        raise ValueError(f"a forwarded HTTP request is a list of 10 fields, got {type(wire).__name__}")
    method, scheme, version, path, raw_path, root_path, query, headers, client, server = wire
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": version,
        "method": method,
        "scheme": scheme,
        "path": path,
        "raw_path": raw_path,
        "root_path": root_path,
        "query_string": query,
        "headers": [(k, v) for k, v in headers],
        "client": tuple(client) if client else None,
        "server": tuple(server) if server else None,
        "state": {},
    }


class _Writer:
    """Collects what an ASGI app sends: one piece, or chunks emitted as they come."""

    def __init__(self, emit: Callable[[Any], None]) -> None:
        self.emit = emit
        self.status = 0
        self.headers: list[list[bytes]] = []
        self.started = False  # the head was emitted: the response streams
        self.whole: list[Any] | None = None
        self.ended = False

    async def send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self.status = int(message["status"])
            self.headers = [[bytes(k), bytes(v)] for k, v in message.get("headers", [])]
        elif kind == "http.response.body" and not self.ended:
            body = bytes(message.get("body", b""))
            more = bool(message.get("more_body", False))
            if not self.started and not more:
                self.whole = [self.status, self.headers, body, True]
                self.ended = True
            elif not self.started:
                self.started = True
                self.emit([self.status, self.headers, body])
            else:
                if body:
                    self.emit([body])
                self.ended = not more
            window = getattr(self.emit, "window", None)  # a slow client slows the app (the stream's window)
            if window is not None and not window.has_room():
                await window.wait_async()


class HttpServer:
    """Serves one replica's HTTP requests.

    Args:
        instance: the user's object.
        deployment: its deployment's name (for logs).
        run_sync: runs a blocking callable off the event loop (the replica's pool).
        show_tracebacks: put the traceback in a 500's body (else only in the replica's log).
    """

    def __init__(self, instance: Any, deployment: str, run_sync: RunSync, show_tracebacks: bool = False) -> None:
        self.instance = instance
        self.deployment = deployment
        self.run_sync = run_sync
        self.show_tracebacks = show_tracebacks
        self.app = getattr(type(instance), ASGI_APP_ATTR, None) or self._call_app

    async def serve(self, wire: list[Any], body: bytes, emit: Callable[[Any], None]) -> list[Any] | None:
        """Run one request; the whole response, or None once a streamed one ended.

        Raises:
            Exception: the app failed after its response had started streaming.
        """
        scope = scope_of(wire)
        writer = _Writer(emit)
        delivered = False
        disconnected = asyncio.Event()

        async def receive() -> dict[str, Any]:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            await disconnected.wait()  # the proxy cancels the task when its client goes
            return {"type": "http.disconnect"}

        token = current_instance.set(self.instance)
        try:
            await self.app(scope, receive, writer.send)
        except Exception as exc:
            if writer.started:
                raise
            log.error("HTTP %s %s in deployment %r failed:\n%s", scope["method"], scope["path"], self.deployment,
                      "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
            text = traceback.format_exc() if self.show_tracebacks else "Internal Server Error"
            return [500, [[b"content-type", b"text/plain; charset=utf-8"]], text.encode(), True]
        finally:
            current_instance.reset(token)
        if writer.whole is not None:
            return writer.whole
        if not writer.started:  # the app returned without a response
            log.error("HTTP %s %s in deployment %r: the app sent no response", scope["method"], scope["path"], self.deployment)
            return [500, [[b"content-type", b"text/plain; charset=utf-8"]], b"Internal Server Error", True]
        return None

    async def _call_app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """A plain deployment: ``__call__(request)``; its result becomes a response."""
        from starlette.requests import Request

        method = getattr(self.instance, "__call__", None)
        if method is None:
            raise TypeError(f"deployment {self.deployment!r} has no __call__ to serve HTTP requests with")
        request = Request(scope, receive)
        if inspect.iscoroutinefunction(method) or getattr(method, "__corral_kind__", None) == "async":
            result = await method(request)
        elif inspect.isasyncgenfunction(method) or inspect.isgeneratorfunction(method):
            result = method(request)
        else:
            result = await self.run_sync(method, request)
        await response_of(result)(scope, receive, send)


def response_of(result: Any) -> Any:
    """The Starlette response for what a deployment returned: a Response as it
    is; a generator streamed chunk by chunk; str as text; bytes as octets;
    anything else as JSON."""
    from starlette.responses import PlainTextResponse, Response, StreamingResponse

    if isinstance(result, Response):
        return result
    if inspect.isasyncgen(result) or inspect.isgenerator(result):
        return StreamingResponse(_chunks(result), media_type="text/plain; charset=utf-8")
    if isinstance(result, str):
        return PlainTextResponse(result)
    if isinstance(result, (bytes, bytearray, memoryview)):
        return Response(bytes(result), media_type="application/octet-stream")
    body = json.dumps(result, default=_json_default, ensure_ascii=False, separators=(",", ":")).encode()
    return Response(body, media_type="application/json")


def _chunks(result: Any) -> Any:
    if inspect.isasyncgen(result):
        async def agen() -> Any:
            async for item in result:
                yield _chunk(item)
        return agen()
    return (_chunk(item) for item in result)


def _chunk(item: Any) -> bytes:
    if isinstance(item, (bytes, bytearray, memoryview)):
        return bytes(item)
    if isinstance(item, str):
        return item.encode()
    return json.dumps(item, default=_json_default).encode()


def _json_default(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    dump = getattr(value, "model_dump", None)  # a pydantic model
    if callable(dump):
        return dump(mode="json")
    tolist = getattr(value, "tolist", None)  # a numpy array or scalar
    if callable(tolist):
        return tolist()
    raise TypeError(f"a {type(value).__name__} cannot be sent as JSON")
