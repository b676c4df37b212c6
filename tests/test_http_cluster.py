"""HTTP across a cluster: proxies on every node, a worker killed under HTTP load, the head down."""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from actors import Config, HttpOptions, ServeSettings, serve
from scripts._local_cluster import LocalCluster
from transport import TransportConfig

from . import http_apps
from .conftest import FAST, fast_serve_config
from .helpers import Traffic, wait_for
from .test_recovery import SETTINGS, recovered


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def every_node() -> Iterator[str]:
    port = free_port()
    http = HttpOptions(port=port, proxy_location="EveryNode", routes_refresh_s=0.2)
    serve.start(workers=2, config=dataclasses.replace(fast_serve_config(), http=http))
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()


@pytest.fixture
def head_only() -> Iterator[str]:
    http = HttpOptions(port=0, routes_refresh_s=0.2)
    serve.start(workers=2, config=dataclasses.replace(fast_serve_config(), http=http))
    try:
        yield wait_for(lambda: serve.status().proxies, 10, "the proxy")[0].url
    finally:
        serve.shutdown()


def test_every_node_runs_a_proxy_and_each_one_serves(every_node: str) -> None:
    serve.run(http_apps.SyncPlain.bind(), name="default")
    nodes = wait_for(lambda: sorted(p.node_id for p in serve.status().proxies) == ["head", "worker-0", "worker-1"]
                     and serve.status().proxies, 10, "a proxy on the head and on both workers")
    assert {p.url for p in nodes} == {every_node}, "on one machine they share the port"
    assert len({p.pid for p in nodes}) == 3
    for _ in range(90):  # new connections: the kernel spreads them over the three listeners
        with httpx.Client(base_url=every_node, timeout=10) as c:
            assert c.get("/x").text == "sync GET /x"
    wait_for(lambda: all(p.requests > 0 for p in serve.status().proxies), 10, "every proxy to have served requests")


def test_a_worker_killed_under_http_load_leaves_no_request_unanswered(head_only: str) -> None:
    from actors.serve._api import current_session

    serve.run(http_apps.SyncPlain.options(num_replicas=4).bind(), name="default")
    statuses: list[int] = []

    def one() -> int:
        with httpx.Client(base_url=head_only, timeout=30) as c:
            code = c.get("/load").status_code
        statuses.append(code)
        return code

    with Traffic(one, threads=3) as traffic:
        wait_for(lambda: len(traffic.answers) >= 30, 20, "traffic before the kill")
        victim = current_session().workers[0]
        os.kill(victim.proc.pid, signal.SIGKILL)
        wait_for(lambda: [n.node_id for n in serve.status().nodes] == ["worker-1"], 20, "the dead worker to be noticed")
        before = len(traffic.answers)
        wait_for(lambda: len(traffic.answers) >= before + 30, 30, "traffic after the kill")
    assert traffic.failures == [], "every request got an HTTP answer"
    # a request running on a replica of the killed worker fails (500), as a handle's does; none hangs
    assert set(statuses) <= {200, 500}
    assert statuses[-20:] == [200] * 20, "the survivors serve everything afterwards"


def test_worker_proxies_keep_serving_while_the_head_is_down_and_after_it_recovers(tmp_path: Path) -> None:
    port = free_port()
    local = LocalCluster(tmp_path, settings=SETTINGS, transport=dict(FAST),
                         http={"port": port, "proxy_location": "EveryNode", "routes_refresh_s": 0.2})
    url = f"http://127.0.0.1:{port}/x"

    def fresh_get() -> int:
        with httpx.Client(timeout=10) as c:  # a new connection each time: any of the proxies may take it
            return c.get(url).status_code

    try:
        local.start_head()
        for node in ("w0", "w1"):
            local.start_worker(node)
        serve.start(address=local.address, config=Config(transport=TransportConfig(**FAST), serve=ServeSettings(**SETTINGS)))
        serve.run(http_apps.SyncPlain.options(num_replicas=2).bind(), name="default")
        wait_for(lambda: len(serve.status().proxies) == 3, 10, "a proxy on the head and on both workers")
        wait_for(lambda: all(fresh_get() == 200 for _ in range(30)), 20, "every proxy to know the route")
        local.kill_head()
        assert [fresh_get() for _ in range(60)] == [200] * 60, "the workers' proxies serve without the head"
        local.start_head(recovery="required")
        wait_for(recovered, 30, "the recovery")
        assert [fresh_get() for _ in range(30)] == [200] * 30
    finally:
        serve.shutdown()
        local.close()


def test_proxies_are_told_when_routes_change_instead_of_waiting_for_their_next_ask() -> None:
    http = HttpOptions(port=0, routes_refresh_s=60.0)  # the periodic ask would come only after a minute
    serve.start(workers=1, config=dataclasses.replace(fast_serve_config(), http=http))
    try:
        url = wait_for(lambda: serve.status().proxies, 10, "the proxy")[0].url
        with httpx.Client(base_url=url, timeout=10) as c:
            serve.run(http_apps.SyncPlain.bind(), name="moving", route_prefix="/a")
            assert c.get("/a/x").text == "sync GET /a/x"
            serve.run(http_apps.SyncPlain.bind(), name="moving", route_prefix="/b")
            wait_for(lambda: c.get("/a/x").status_code == 404, 3, "the old prefix to go (told, not asked)")
            assert c.get("/b/x").text == "sync GET /b/x"
    finally:
        serve.shutdown()
