"""Which thread does the head's ZeroMQ I/O: its I/O thread until the HTTP proxy serves a request, then the proxy's loop."""

from __future__ import annotations

import threading
from typing import Iterator

import httpx
import pytest

from actors import serve

from . import http_apps, serve_apps
from .helpers import wait_for


@pytest.fixture
def head() -> Iterator[str]:
    serve.start(workers=1, http_options={"port": 0})
    try:
        yield wait_for(lambda: serve.status().proxies, 10, "the proxy to report")[0].url
    finally:
        serve.shutdown()


def test_handles_are_served_by_the_io_thread_until_the_proxy_gets_http_then_by_the_proxy_loop(head: str) -> None:
    from actors.serve._api import current_session

    transport = current_session().system._transport

    def io_thread_name() -> str:
        return {t.ident: t.name for t in threading.enumerate()}.get(transport.io_ident, "")

    echo = serve.run(serve_apps.Echo.bind("e:"), name="echo", route_prefix=None)
    serve.run(http_apps.Plain.bind(), name="io", route_prefix="/io")
    assert echo.remote(1).result(timeout_s=10) == "e:1"
    assert io_thread_name() == "corral-io", "no HTTP request yet: the I/O thread keeps the sockets"
    with httpx.Client(base_url=head, timeout=20) as client:
        assert client.get("/io/json").json() == {"json": True, "path": "/io/json"}
        wait_for(lambda: io_thread_name() == "http-proxy", 10, "the proxy's loop to take the sockets")
        assert client.get("/io/json").json() == {"json": True, "path": "/io/json"}
    assert echo.remote(2).result(timeout_s=10) == "e:2"
