"""A local base image with Python and pip, for building corral's Dockerfile
where no image registry is reachable (``--build-arg BASE=...``).

It is the test root filesystem (the shared libraries this machine's Python
loads) with this machine's Python installation copied in at its own path
(its standard library without site-packages or the test suite), pip
bootstrapped by ``ensurepip``, and the host's CA bundle so that pip reaches
PyPI from inside a build.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

from ._docker_cluster import image as rootfs_image
from ._docker_cluster import imported_image

CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def python_base(client: Any) -> str:
    """The tag of the base image, built when missing.

    Raises:
        RuntimeError: the build failed (its log's last lines are in the message).
    """
    rootfs = rootfs_image(client)
    prefix = Path(sys.base_prefix).resolve()
    digest = hashlib.sha256(f"{rootfs}|{prefix}|{sys.version}".encode()).hexdigest()[:12]
    tag = f"corral-python-base:{digest}"
    try:
        client.images.get(tag)
        return tag
    except Exception:
        pass
    python = f"{prefix}/bin/python{sys.version_info.major}.{sys.version_info.minor}"
    dockerfile = "\n".join([
        f"FROM {rootfs}",
        f"COPY python {prefix}",
        f"COPY ca-certificates.crt {CA_BUNDLE}",
        f"ENV PATH={prefix}/bin:/usr/local/bin:/usr/bin:/bin SSL_CERT_FILE={CA_BUNDLE} PIP_CERT={CA_BUNDLE}",
        f'RUN ["{python}", "-m", "ensurepip", "--default-pip"]',
        "",
    ])
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        _add_bytes(tar, "Dockerfile", dockerfile.encode())
        _add_bytes(tar, "ca-certificates.crt", CA_BUNDLE.read_bytes())
        stdlib = f"lib/python{sys.version_info.major}.{sys.version_info.minor}"
        for item in prefix.iterdir():
            if item.name == "lib":
                for sub in item.iterdir():
                    if sub.name == stdlib.split("/")[1]:
                        tar.add(str(sub), arcname=f"python/lib/{sub.name}", filter=_without_extras)
                    elif sub.name.startswith("libpython"):
                        tar.add(str(sub), arcname=f"python/lib/{sub.name}")
            elif item.name == "bin":
                for binary in item.iterdir():
                    if binary.name.startswith(("python", "pip")):
                        tar.add(str(binary), arcname=f"python/bin/{binary.name}")
            elif item.name == "include":
                continue
    buffer.seek(0)
    try:
        client.images.build(fileobj=buffer, custom_context=True, tag=tag, rm=True, forcerm=True)
    except Exception as exc:
        log = "".join(str(line.get("stream", line)) for line in getattr(exc, "build_log", []) or [])[-3000:]
        raise RuntimeError(f"building {tag} failed: {exc}\n{log}") from None
    return tag


def _without_extras(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    parts = info.name.split("/")
    if len(parts) > 3 and parts[3] in ("site-packages", "test", "idlelib", "tkinter", "turtledemo"):
        return None
    return info


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def redis_image(client: Any) -> str:
    """A local Redis image (this machine's ``redis-server`` and the libraries it
    loads), standing in for ``redis:7`` where no registry is reachable.

    Raises:
        RuntimeError: no ``redis-server`` here.
    """
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("no redis-server on this machine (Debian package redis-server)")
    out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    libraries = sorted({Path(p) for line in out.splitlines() for p in line.split() if p.startswith("/") and Path(p).exists()})
    digest = hashlib.sha256("\n".join(map(str, [binary, *libraries])).encode()).hexdigest()[:12]
    changes = ['CMD ["/usr/bin/redis-server", "--bind", "0.0.0.0", "--protected-mode", "no", "--dir", "/data"]']
    return imported_image(client, "corral-test-redis", digest, (("tmp", 0o1777), ("data", 0o777), ("etc", 0o755)),
                          [Path(binary), *libraries], changes)
