"""The HTTP floor: a bare uvicorn + Starlette hello world, with the proxy's
settings (httptools, uvloop where installed, no access log). Prints
``ADDRESS http://host:port`` and serves until its stdin closes."""

from __future__ import annotations

import asyncio
import socket
import sys
import threading

import uvicorn
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route


async def hello(_request: object) -> PlainTextResponse:
    return PlainTextResponse("ok")


def main() -> None:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)
    app = Starlette(routes=[Route("/", hello)])
    config = uvicorn.Config(app, http="httptools", lifespan="off", log_level="warning", access_log=False, server_header=False)
    server = uvicorn.Server(config)
    print(f"ADDRESS http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    threading.Thread(target=lambda: (sys.stdin.read(), setattr(server, "should_exit", True)), daemon=True).start()
    try:
        import uvloop
        loop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()
    loop.run_until_complete(server.serve(sockets=[sock]))


if __name__ == "__main__":
    main()
