"""The Docker Compose deployment, end to end: the image built from the
Dockerfile (on a locally made base: no registry here), `deploy/compose.yaml`
brought up with Debian's docker-compose and two workers, an app deployed from
the host with its code shipped, a worker container killed and its replicas
replaced, the head killed and its replicas re-adopted, and everything brought
down."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest

from scripts._docker_cluster import NoDocker, docker_client, stop_dockerd
from tests.helpers import wait_for
from tests.test_cli import ROOT, corral, free_port

COMPOSE = shutil.which("docker-compose")
pytestmark = pytest.mark.skipif(COMPOSE is None, reason="no docker-compose here (Debian package docker-compose)")

APP = """
applications:
  - name: shipped
    import_path: shipped_greeter:Greeter
    route_prefix: null
    runtime_env: {working_dir: code}
    deployments:
      - name: Greeter
        num_replicas: 2
"""

GREETER = """
from actors import serve


@serve.deployment
class Greeter:
    def __call__(self) -> str:
        return "from compose"
"""


class Compose:
    """A compose project of ``deploy/compose.yaml`` (see the module docstring)."""

    def __init__(self, client: Any, folder: Path, store: str) -> None:
        from scripts._docker_base import python_base, redis_image
        from transport import generate_keys

        self.client = client
        self.project = f"corraltest{secrets.token_hex(3)}"
        image = f"corral:test-{self.project}"
        client.images.build(path=str(ROOT), buildargs={"BASE": python_base(client)}, tag=image, rm=True, forcerm=True)
        generate_keys(folder / "keys")
        self.keys = str(folder / "keys")
        self.env = {**os.environ, "CORRAL_IMAGE": image, "CORRAL_KEYS": self.keys, "CORRAL_PORT": str(free_port()),
                    "CORRAL_HTTP_PORT": str(free_port()), "CORRAL_DASHBOARD_PORT": str(free_port()),
                    "CORRAL_METRICS_PORT": str(free_port())}
        self.profiles: list[str] = []
        if store == "redis":  # the checkpoint in the Redis service (a local stand-in for redis:7)
            self.env.update(CORRAL_REDIS_IMAGE=redis_image(client), CORRAL_STORE="redis://redis:6379/0")
            self.profiles = ["--profile", "redis"]
        self.image = image

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run([COMPOSE, "-f", str(ROOT / "deploy" / "compose.yaml"), "-p", self.project, *self.profiles, *args],  # type: ignore[list-item]
                              capture_output=True, text=True, timeout=timeout, env=self.env)

    def container(self, service: str, index: int = 1) -> Any:
        return self.client.containers.get(f"{self.project}_{service}_{index}")

    def address(self) -> str:
        networks = self.container("head").attrs["NetworkSettings"]["Networks"]
        return f"tcp://{next(iter(networks.values()))['IPAddress']}:6390"

    def corral(self, *args: str) -> subprocess.CompletedProcess[str]:
        return corral(*args, "--address", self.address(), "--keys", self.keys)

    def status(self) -> dict[str, Any]:
        out = self.corral("status", "--json")
        return json.loads(out.stdout) if out.returncode == 0 else {}

    def kill(self, service: str, index: int = 1) -> None:
        """SIGKILL the container's PID 1 from the host: a crash, which its restart policy answers."""
        container = self.container(service, index)
        container.reload()
        os.kill(int(container.attrs["State"]["Pid"]), signal.SIGKILL)


@pytest.fixture(params=["volume", "redis"])
def compose(request: Any, tmp_path: Path) -> Iterator[Compose]:
    try:
        client, started = docker_client()
    except NoDocker as exc:
        pytest.skip(str(exc))
    project = None
    try:
        if request.param == "redis" and shutil.which("redis-server") is None:
            pytest.skip("no redis-server here to make a local Redis image from (Debian package redis-server)")
        project = Compose(client, tmp_path, request.param)
        up = project.run("up", "-d", "--scale", "worker=2")
        assert up.returncode == 0, up.stderr[-3000:]
        yield project
    finally:
        if project is not None:
            logs = project.run("logs", "--tail", "40").stdout
            down = project.run("down", "-v", "--timeout", "10")
            try:
                client.images.remove(project.image, force=True)
            except Exception:
                pass
            if down.returncode != 0:
                print(logs)
        stop_dockerd(started)


@pytest.mark.timeout(900)
def test_compose_serves_shipped_code_replaces_a_killed_worker_and_re_adopts_after_a_head_restart(
        compose: Compose, tmp_path: Path) -> None:
    wait_for(lambda: len(compose.status().get("nodes", [])) == 2, 90, "the head and both workers up")
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "shipped_greeter.py").write_text(GREETER)
    (tmp_path / "app.yaml").write_text(APP)
    deployed = compose.corral("deploy", str(tmp_path / "app.yaml"))
    assert deployed.returncode == 0, deployed.stderr
    assert compose.corral("call", "shipped").stdout.strip() == '"from compose"'

    def replicas() -> dict[str, str]:
        app = compose.status().get("applications", {}).get("shipped")
        rows = app["deployments"]["Greeter"]["replicas"] if app else []
        return {r["replica_id"]: r["node_id"] for r in rows if r["state"] == "RUNNING"}

    before = replicas()
    hosts = {compose.container("worker", i).attrs["Config"]["Hostname"]: i for i in (1, 2)}
    victim = hosts[next(iter(before.values()))]  # a worker that runs a replica
    doomed = {rid for rid, node in before.items() if hosts.get(node) == victim}
    assert doomed
    compose.kill("worker", victim)
    wait_for(lambda: len(r := replicas()) == 2 and not doomed & set(r), 120, "the killed worker's replicas replaced")
    assert compose.corral("call", "shipped").stdout.strip() == '"from compose"'
    wait_for(lambda: (c := compose.container("worker", victim)).reload() or c.attrs["RestartCount"] >= 1, 60,
             "the killed worker container started again by its restart policy")

    adopted = replicas()
    compose.kill("head")
    wait_for(lambda: replicas() == adopted, 120, "the restarted head to re-adopt the same replicas")
    assert compose.corral("call", "shipped").stdout.strip() == '"from compose"'
    assert compose.status()["controller"]["epoch"] >= 1, "the head recovered from its checkpoint"
