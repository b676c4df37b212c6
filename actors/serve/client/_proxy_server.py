"""The HTTP proxy actor: a uvicorn server on its own thread and event loop,
serving :class:`ProxyApp` (uvloop and httptools where installed). From the
first HTTP request it serves, that loop also does the process's ZeroMQ I/O
(``hand_io_to``): a request goes out and its answer comes back on the loop's
thread, with no second thread contending for the GIL.

Not before: until HTTP comes, the process's own threads (a script calling
handles) are served by the I/O thread, which looks again without sleeping
after a busy round; a loop that sleeps between its HTTP requests cost them
7-29% more CPU per request in alternating runs. And never during the spawn: the
system holds its spawn lock while ``__init__`` waits for uvicorn to start, and
the I/O driver takes that lock (a peer's watch of a local actor), so a loop
that did the I/O then could wait on the spawn that waits on it."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from typing import Any

from protocol import RoutesChanged

from ..._actor import Actor
from ..._config import HttpOptions
from ._proxy import ProxyApp

log = logging.getLogger("corral.serve")

PROXY_ACTOR = "http-proxy"


def listen(options: HttpOptions, share_port: bool) -> socket.socket:
    """The proxy's listening socket.

    Raises:
        RuntimeError: the address cannot be bound (the message says which option to change).
    """
    family = socket.AF_INET6 if ":" in options.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if share_port and hasattr(socket, "SO_REUSEPORT"):  # EveryNode on one machine: the kernel spreads connections
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((options.host, options.port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise RuntimeError(
            f"the HTTP proxy cannot listen on {options.host}:{options.port}: {exc}; choose another "
            "http_options port (0: any free one) or proxy_location='Disabled'"
        ) from None
    sock.set_inheritable(False)
    return sock


class HttpProxy(Actor):
    """Serves HTTP on ``http_options.host:port`` for this process's session.

    Args:
        session: this process's session.
        options: the HTTP settings.
        node_id: where it runs (``"head"`` or the worker's node id).
        share_port: bind with SO_REUSEPORT (several proxies on one machine).

    Raises (from spawn):
        RuntimeError: the port cannot be bound, or the server did not start.
    """

    def __init__(self, session: Any, options: HttpOptions, node_id: str, share_port: bool = False) -> None:
        super().__init__()
        self.app = ProxyApp(session, options, node_id)
        self.options = options
        self.sock = listen(options, share_port)
        host, port = self.sock.getsockname()[:2]
        self.app.url = f"http://{host}:{port}"
        self.server: Any = None
        self.thread: threading.Thread | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._routes_stop: asyncio.Event | None = None
        self._io: Any = None  # the loop's I/O driver once it took the process's sockets
        self._served = False  # the loop's server ended: it must not take the sockets any more
        self._serve()  # here, not in on_start: a proxy that cannot serve fails its spawn

    def _serve(self) -> None:
        import uvicorn

        config = uvicorn.Config(
            self.app,
            loop="none",  # the loop is ours (_new_loop)
            http=_best("httptools", "h11"),
            lifespan="off",
            log_level="warning",
            access_log=False,
            timeout_keep_alive=self.options.keep_alive_timeout_s,
            server_header=False,
            proxy_headers=False,  # clients connect directly; no X-Forwarded-* rewriting per request
            backlog=2048,
        )
        self.server = uvicorn.Server(config)
        ready = threading.Event()
        failed: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, args=(ready, failed), name="http-proxy", daemon=True)
        self.thread.start()
        if not ready.wait(30) or failed:
            self.sock.close()
            raise RuntimeError(f"the HTTP proxy did not start: {failed[0] if failed else 'no answer in 30s'}")

    def _run(self, ready: threading.Event, failed: list[BaseException]) -> None:
        loop = _new_loop()
        self.loop = loop
        asyncio.set_event_loop(loop)

        async def main() -> None:
            try:
                await serve()
            finally:
                self._served = True
                if self._io is not None:
                    self._io.detach()  # a new I/O thread takes the sockets before this loop closes

        async def serve() -> None:
            self._routes_stop = asyncio.Event()
            routes = asyncio.ensure_future(self.app.keep_routes(self._routes_stop))
            sweep = asyncio.ensure_future(self.app.sweep(self._routes_stop))
            serving = asyncio.ensure_future(self.server.serve(sockets=[self.sock]))
            for _ in range(6000):  # uvicorn says it started once it listens: within 30 s
                if self.server.started or serving.done():
                    break
                await asyncio.sleep(0.005)
            if serving.done() and serving.exception() is not None:
                failed.append(serving.exception())  # type: ignore[arg-type]
            ready.set()
            await serving
            self._routes_stop.set()
            await routes
            await sweep

        try:
            loop.run_until_complete(main())
        except BaseException as exc:  # noqa: BLE001 - reported to on_start or logged
            if not ready.is_set():
                failed.append(exc)
                ready.set()
            else:
                log.error("the HTTP proxy stopped: %s", exc)
        finally:
            loop.close()

    def on_stop(self) -> None:
        self._shutdown()

    def on_failure(self, *exc_info: Any) -> None:
        self._shutdown()

    def _shutdown(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(10)
        self.sock.close()

    def on_start(self) -> None:
        self.app.actor = f"{self.system.address}#{self.name}"
        self.app.on_first_request = self._take_io

    def _take_io(self) -> None:
        """On the loop, at its first HTTP request after the spawn: do the process's I/O here from now on."""
        if self._io is None and not self._served:
            try:
                self._io = self.system.hand_io_to(self.loop)
            except RuntimeError as exc:  # another loop has it: the I/O thread goes on serving this one's sends
                log.warning("the HTTP proxy keeps the I/O thread: %s", exc)

    def handlers(self) -> dict[type, Any]:
        return {RoutesChanged: self._routes_changed}

    def _routes_changed(self, message: RoutesChanged) -> None:
        loop = self.loop
        if loop is not None and message.revision != self.app.routes.revision:
            asyncio.run_coroutine_threadsafe(self.app.refresh_routes(), loop)

    @property
    def url(self) -> str:
        return self.app.url


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()  # type: ignore[no-any-return]


def _best(preferred: str, fallback: str) -> str:
    try:
        __import__(preferred)
    except ImportError:
        return fallback
    return preferred
