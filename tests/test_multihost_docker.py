"""Real multi-host runs: a head and workers in Docker containers with their own IP addresses.

Skipped with a one-line reason where no Docker engine runs or can be started.
This process is the client, on the Docker network's gateway address; every
endpoint uses CurveZMQ with the cluster's keys.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest

from actors import Config, ServeSettings, serve
from transport import TransportConfig

from scripts._docker_cluster import DockerCluster, NoDocker, docker_client, stop_dockerd
from .helpers import Traffic, wait_for
from .serve_apps import Echo
from .test_recovery import distinct_answers, recovered

TRANSPORT = {"heartbeat_interval_s": 0.1, "heartbeat_liveness": 5}
SETTINGS = {"reconcile_interval_s": 0.05, "recovery_retry_s": 0.2, "recovery_timeout_s": 15.0, "control_timeout_s": 10.0}


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    try:
        engine, started = docker_client()
    except NoDocker as exc:
        pytest.skip(str(exc))
    try:
        yield engine
    finally:
        stop_dockerd(started)


@pytest.fixture
def hosts(client: Any, tmp_path: Path) -> Iterator[DockerCluster]:
    """A head and two workers, three containers; this process connected as a client."""
    cluster = DockerCluster(client, tmp_path)
    try:
        cluster.start_head(SETTINGS, TRANSPORT)
        cluster.start_worker("w0", SETTINGS, TRANSPORT)
        cluster.start_worker("w1", SETTINGS, TRANSPORT)
        transport = TransportConfig(**TRANSPORT, host=cluster.gateway, curve=cluster.keys)
        serve.start(address=cluster.head_address, config=Config(transport=transport, serve=ServeSettings(**SETTINGS)))
        yield cluster
    finally:
        serve.shutdown()
        cluster.close()


def nodes() -> dict[str, str]:
    try:
        return {n.node_id: n.address for n in serve.status().nodes}
    except Exception:  # the head is being restarted
        return {}


def whoami_all() -> dict[str, dict[str, Any]]:
    handle = serve.get_app_handle("default")
    return distinct_answers(lambda: handle.whoami.remote().result(10), "replica_id", 2)


def running(n: int) -> bool:
    try:
        return serve.status().applications["default"].deployments["Echo"].replica_states == {"RUNNING": n}
    except Exception:
        return False


def test_replicas_are_deployed_across_hosts_at_their_own_addresses(hosts: DockerCluster) -> None:
    serve.run(Echo.bind("hi "), name="default")
    placed = {w["node"] for w in whoami_all().values()}
    assert placed == {"w0", "w1"}
    assert nodes() == {name: f"tcp://{hosts.ips[name]}:" + nodes()[name].rsplit(":", 1)[1] for name in ("w0", "w1")}
    assert len({hosts.ips[n] for n in ("head", "w0", "w1")}) == 3
    assert serve.get_app_handle("default").remote("there").result(10) == "hi there"


def test_a_killed_worker_container_is_replaced_on_the_other_host(hosts: DockerCluster) -> None:
    handle = serve.run(Echo.bind(), name="default")
    whoami_all()
    hosts.kill("w1")
    wait_for(lambda: set(nodes()) == {"w0"}, 20, "the dead host to be noticed")
    wait_for(lambda: running(2), 30, "two replicas again")
    assert {w["node"] for w in whoami_all().values()} == {"w0"}
    assert handle.remote("x").result(10) == "x"


def test_a_partitioned_worker_is_replaced_and_rejoins_cleanly_when_healed(hosts: DockerCluster) -> None:
    serve.run(Echo.bind(), name="default")
    before = whoami_all()
    hosts.disconnect("w1")
    wait_for(lambda: set(nodes()) == {"w0"}, 20, "the cut-off host to be given up")
    wait_for(lambda: running(2), 30, "two replicas on the other host")
    hosts.reconnect("w1")
    wait_for(lambda: set(nodes()) == {"w0", "w1"}, 30, "the healed host to register again")
    assert running(2), "the stale replica on the healed host is stopped, not counted twice"
    stale = {rid for rid, w in before.items() if w["node"] == "w1"}
    assert not stale & set(whoami_all()), "its old replica no longer serves"


def test_a_head_container_killed_and_restarted_recovers_from_its_persisted_store(hosts: DockerCluster) -> None:
    # a clean slate: a replica the previous test stopped must not be mistaken for one of these
    serve.delete("default")
    handle = serve.run(Echo.bind(), name="default")
    before = whoami_all()
    hosts.kill("head")
    with Traffic(lambda: handle.remote("y").result(10), threads=2) as traffic:
        wait_for(lambda: len(traffic.answers) >= 100, 30, "answers while the head is down")
    assert traffic.failures == []
    hosts.restart_killed("head", "head.ready")
    after = wait_for(recovered, 30, "the recovery")
    assert after["recovery"]["epoch"] == 1 and after["recovery"]["adopted"] == 2, hosts.logs("head")[-3000:]
    assert whoami_all() == before, "the same replicas in the same processes:\n" + hosts.logs("head")[-4000:]
