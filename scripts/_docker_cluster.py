"""Heads and workers in Docker containers, each with its own IP address, via testcontainers.

No image registry is reachable here, so the image is built locally: a
minimal root filesystem holding only the shared libraries this machine's
Python and the project's compiled modules load. The Python installation, the
project and its virtualenv are mounted read-only at their own paths, so the
containers run exactly the code under test.
"""

from __future__ import annotations

import hashlib
import io
import ipaddress
import json
import os
import random
import shutil
import subprocess
import sys
import tarfile
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from actors.serve.worker._args import worker_args

from ._head import head_args

ROOT = Path(__file__).resolve().parent.parent
# read-only, at their own paths: the Python installation, the virtualenv, the project
MOUNTED = list(dict.fromkeys([Path(sys.base_prefix).resolve(), Path(sys.prefix), ROOT]))
PORT = 6390


class NoDocker(Exception):
    """No Docker engine can be used here; the message is the one-line reason."""


def docker_client() -> tuple[Any, subprocess.Popen[bytes] | None]:
    """A client of a running engine, starting ``dockerd`` (as root) when none runs.

    Returns:
        The client, and the dockerd this call started (None if one was running).

    Raises:
        NoDocker: no engine runs and none can be started.
    """
    os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")
    try:
        import docker
    except ImportError:
        raise NoDocker("the docker Python package is not installed") from None
    try:
        client = docker.from_env(timeout=30)
        client.ping()
        return client, None
    except Exception:
        pass
    dockerd = shutil.which("dockerd")
    if dockerd is None or os.geteuid() != 0:
        raise NoDocker("no Docker engine runs and dockerd cannot be started here (needs root and docker.io)")
    with open(Path("/tmp") / "corral-tests-dockerd.log", "ab") as log:
        proc = subprocess.Popen([dockerd], stdout=log, stderr=log, start_new_session=True)
    deadline = time.monotonic() + 60
    pause = threading.Event()
    while time.monotonic() < deadline:
        try:
            client = docker.from_env(timeout=30)
            client.ping()
            return client, proc
        except Exception:
            pause.wait(0.5)
    stop_dockerd(proc)
    raise NoDocker("dockerd was started but did not answer within 60 s (see /tmp/corral-tests-dockerd.log)")


def _outermost(paths: list[Path]) -> list[Path]:
    """The paths that are not inside another one of them."""
    return [p for p in paths if not any(p != q and p.is_relative_to(q) for q in paths)]


def stop_dockerd(proc: subprocess.Popen[bytes] | None) -> None:
    """Stop a dockerd that :func:`docker_client` started (SIGTERM, then SIGKILL after 30 s)."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def _libraries() -> set[Path]:
    """Every shared library Python and the compiled modules it may load need, outside the mounts."""
    binaries = [Path(sys.executable).resolve()]
    for base in _outermost(MOUNTED):
        binaries += [p for p in base.rglob("*.so*") if p.is_file() and ".so" in p.name]
    found: set[Path] = set()
    for chunk in range(0, len(binaries), 200):
        out = subprocess.run(["ldd", *map(str, binaries[chunk:chunk + 200])], capture_output=True, text=True).stdout
        for line in out.splitlines():
            parts = line.split()
            path = next((Path(p) for p in parts if p.startswith("/")), None)
            if path is not None and path.exists() and not any(path.is_relative_to(m) for m in MOUNTED):
                found.add(path)
    return found


def image(client: Any) -> str:
    """The tag of the local test image, built (``docker import``) when missing."""
    libraries = sorted(_libraries())
    digest = hashlib.sha256("\n".join(map(str, libraries)).encode()).hexdigest()[:12]
    dirs = (("tmp", 0o1777), ("etc", 0o755), ("proc", 0o555), ("sys", 0o555), ("dev", 0o755))
    return imported_image(client, "corral-test-rootfs", digest, dirs, libraries)


def imported_image(client: Any, repository: str, digest: str, dirs: tuple[tuple[str, int], ...], files: list[Path],
                   changes: list[str] | None = None) -> str:
    """``repository:digest``, made (``docker import``) when missing: the folders
    ``dirs`` (name, mode), a root user, and ``files`` at their own paths."""
    tag = f"{repository}:{digest}"
    try:
        client.images.get(tag)
        return tag
    except Exception:
        pass
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, mode in dirs:
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, mode
            tar.addfile(info)
        for name, text in (("etc/passwd", "root:x:0:0:root:/root:/bin/false\n"), ("etc/group", "root:x:0:\n")):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for path in files:
            tar.add(str(path.resolve()), arcname=str(path).lstrip("/"), recursive=False)
    client.api.import_image_from_data(buffer.getvalue(), repository=repository, tag=digest, changes=changes)
    return tag


class DockerCluster:
    """A Docker network with a head container and worker containers at fixed addresses.

    Args:
        client: the Docker client.
        folder: a host directory mounted at its own path (ready files, keys,
            the checkpoint, whatever the test shares with the containers).
    """

    def __init__(self, client: Any, folder: Path) -> None:
        from docker.types import IPAMConfig, IPAMPool
        from testcontainers.core.network import Network

        from transport import generate_keys

        self.client = client
        self.folder = folder
        self.image = image(client)
        self.containers: dict[str, Any] = {}
        self.ips: dict[str, str] = {}
        self.keys = generate_keys(folder / "keys")
        for _ in range(20):  # a free /24 among the engine's networks
            subnet = ipaddress.ip_network(f"172.{random.randint(20, 30)}.{random.randint(0, 255)}.0/24")
            pool = IPAMPool(subnet=str(subnet), gateway=str(subnet[1]))
            try:
                self.network = Network(docker_network_kw={"ipam": IPAMConfig(pool_configs=[pool])}).create()
                break
            except Exception:
                continue
        else:
            raise NoDocker("no free subnet for a test network")
        self.subnet = subnet
        self.gateway = str(subnet[1])
        self._next_ip = 10

    @property
    def head_address(self) -> str:
        return f"tcp://{self.ips['head']}:{PORT}"

    def _run(self, name: str, args: list[str], ready: str, timeout: float = 60.0) -> Any:
        from docker.types import EndpointConfig
        from testcontainers.core.container import DockerContainer

        ip = self._ip_for(name)
        (self.folder / ready).unlink(missing_ok=True)
        container = DockerContainer(
            self.image,
            command=[sys.executable, *args],  # type: ignore[arg-type]  # docker accepts a list
            env={"PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"},
            network=self.network,
            networking_config={self.network.name: EndpointConfig(self.client.api._version, ipv4_address=ip)},
            working_dir=str(ROOT),
        )
        for path in _outermost(MOUNTED):
            container.with_volume_mapping(str(path), str(path), "ro")
        container.with_volume_mapping(str(self.folder), str(self.folder), "rw")
        self.containers[name] = container.start()
        self.wait_ready(name, ready, timeout)
        return container

    def wait_ready(self, name: str, ready: str, timeout: float = 60.0) -> str:
        """Wait for a container's ready file; its contents."""
        path = self.folder / ready
        deadline = time.monotonic() + timeout
        pause = threading.Event()
        while not path.exists():
            wrapped = self.containers[name].get_wrapped_container()
            wrapped.reload()
            if wrapped.status == "exited" or time.monotonic() > deadline:
                raise RuntimeError(f"container {name} is not ready ({wrapped.status}); its log:\n{self.logs(name)[-3000:]}")
            pause.wait(0.1)
        return path.read_text()

    def start_head(self, settings: dict[str, Any], transport: dict[str, Any]) -> None:
        self._run("head", head_args(
            PORT, f"{self.folder}/head.ready", self._ip_for("head"), f"sqlite:///{self.folder}/checkpoint.sqlite",
            settings=json.dumps(settings), transport=json.dumps(transport), keys=f"{self.folder}/keys",
        ), "head.ready")

    def start_worker(self, name: str, settings: dict[str, Any], transport: dict[str, Any]) -> None:
        config = {"transport": {**transport, "host": self._ip_for(name), "curve": asdict(self.keys)}, "serve": settings}
        self._run(name, worker_args(
            f"{self.head_address}#controller", name, json.dumps({"CPU": 4}), json.dumps(config),
            f"{self.folder}/{name}.ready", detached=True,
        ), f"{name}.ready")

    def _ip_for(self, name: str) -> str:
        if name not in self.ips:
            self.ips[name] = str(self.subnet[self._next_ip])
            self._next_ip += 1
        return self.ips[name]

    def kill(self, name: str) -> None:
        """SIGKILL the container's process (the container stays, stopped)."""
        self.containers[name].get_wrapped_container().kill()

    def restart_killed(self, name: str, ready: str) -> None:
        """Start a killed container again: same command, same address, same mounts."""
        (self.folder / ready).unlink(missing_ok=True)
        self.containers[name].get_wrapped_container().start()
        self.wait_ready(name, ready)

    def pause(self, name: str) -> None:
        """Freeze every process of the container (the cgroup freezer)."""
        self.containers[name].get_wrapped_container().pause()

    def unpause(self, name: str) -> None:
        self.containers[name].get_wrapped_container().unpause()

    def disconnect(self, name: str) -> None:
        """Cut the container off the network."""
        self.client.networks.get(self.network.id).disconnect(self.containers[name].get_wrapped_container().id)

    def reconnect(self, name: str) -> None:
        """Put it back on the network at its old address."""
        self.client.networks.get(self.network.id).connect(
            self.containers[name].get_wrapped_container().id, ipv4_address=self.ips[name]
        )

    def logs(self, name: str) -> str:
        try:
            out = self.containers[name].get_wrapped_container().logs()
            return out.decode(errors="replace") if isinstance(out, bytes) else str(out)
        except Exception as exc:
            return f"(no logs: {exc})"

    def close(self) -> None:
        """Remove every container, then the network."""
        for container in self.containers.values():
            try:
                container.stop()
            except Exception:
                pass
        try:
            self.network.remove()
        except Exception:
            pass
