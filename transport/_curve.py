"""CurveZMQ keys of a cluster, and the ZAP rule that admits only its members.

Every member of a cluster holds the same two key pairs: the server pair (its
ROUTER proves it is the cluster) and the client pair (its DEALERs prove they
belong). A process without them completes no handshake: nothing in, nothing out.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

import zmq
from zmq.utils import z85

_FILES = ("server.key", "client.key")


@dataclass(frozen=True)
class CurveKeys:
    """A cluster's CurveZMQ keys (z85 text, 40 characters each)."""

    server_public: str
    server_secret: str
    client_public: str
    client_secret: str

    def __post_init__(self) -> None:
        for name in ("server_public", "server_secret", "client_public", "client_secret"):
            value = getattr(self, name)
            if not isinstance(value, str) or len(value) != 40:
                raise ValueError(f"CurveKeys.{name}: expected a 40-character z85 key")

    def client_key_bytes(self) -> bytes:
        """The client public key as the 32 bytes a ZAP request carries."""
        return z85.decode(self.client_public.encode())


def generate_keys(directory: str | Path) -> CurveKeys:
    """Make new keys and write them to ``directory`` in files of mode 0600."""
    server_public, server_secret = zmq.curve_keypair()
    client_public, client_secret = zmq.curve_keypair()
    folder = Path(directory)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    for filename, (public, secret) in zip(_FILES, ((server_public, server_secret), (client_public, client_secret))):
        path = folder / filename
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(f"{public.decode()}\n{secret.decode()}\n")
        os.chmod(path, 0o600)
    return load_keys(folder)


def load_keys(directory: str | Path) -> CurveKeys:
    """Read keys written by :func:`generate_keys`.

    Raises:
        FileNotFoundError: the key files are missing.
        PermissionError: a key file can be read by other users.
        ValueError: a key file is malformed.
    """
    pairs = []
    for filename in _FILES:
        path = Path(directory) / filename
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise PermissionError(f"{path} must be readable by its owner only (mode 0600), found {oct(mode)}")
        lines = path.read_text().split()
        if len(lines) != 2:
            raise ValueError(f"{path}: expected two lines, a public and a secret key")
        pairs.append(lines)
    return CurveKeys(pairs[0][0], pairs[0][1], pairs[1][0], pairs[1][1])
