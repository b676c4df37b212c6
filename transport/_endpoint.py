"""Endpoint addresses: where a process binds and how peers reach it."""

from __future__ import annotations

import os
import re
import secrets
import stat
import tempfile


def private_ipc_dir(path: str | None) -> str:
    """Return a directory for ipc sockets that only this user can open.

    Args:
        path: the directory to use, or None for ``<tempdir>/corral-<uid>``.

    Raises:
        PermissionError: if the directory exists but is owned by someone else
            or is open to other users.
    """
    directory = path or os.path.join(tempfile.gettempdir(), f"corral-{os.getuid()}")
    os.makedirs(directory, mode=0o700, exist_ok=True)
    info = os.stat(directory)
    if info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) & 0o077:
        raise PermissionError(
            f"ipc directory {directory} must be owned by uid {os.getuid()} with mode 0700 "
            f"(found uid {info.st_uid}, mode {oct(stat.S_IMODE(info.st_mode))})"
        )
    return directory


_STALE = re.compile(r"^(\d+)-[0-9a-f]{8}\.sock$")


def sweep_stale_ipc(directory: str, limit: int = 500) -> int:
    """Remove up to ``limit`` ipc socket files of processes that are gone (one
    killed cannot remove its own); returns how many were removed."""
    removed = 0
    try:
        names = os.listdir(directory)
    except OSError:
        return 0
    for name in names:
        match = _STALE.match(name)
        if match is None or removed >= limit:
            continue
        try:
            os.kill(int(match.group(1)), 0)
            continue  # alive (or reused by another process): keep it
        except ProcessLookupError:
            pass
        except (PermissionError, OverflowError):
            continue
        try:
            os.unlink(os.path.join(directory, name))
            removed += 1
        except OSError:
            pass
    return removed


def new_ipc_endpoint(directory: str) -> str:
    """A fresh, unused ipc endpoint in ``directory``."""
    return f"ipc://{directory}/{os.getpid()}-{secrets.token_hex(4)}.sock"


def ipc_path(endpoint: str) -> str | None:
    """The filesystem path of an ``ipc://`` endpoint, or None for other schemes."""
    if endpoint.startswith("ipc://"):
        return endpoint[len("ipc://") :]
    return None


def check_endpoint(endpoint: str) -> str:
    """Validate the form of a peer address.

    Raises:
        ValueError: if it is not ``ipc://PATH`` or ``tcp://HOST:PORT``.
    """
    if not isinstance(endpoint, str):
        raise ValueError(f"address must be a string like 'tcp://host:port' or 'ipc://path', got {endpoint!r}")
    if endpoint.startswith("ipc://") and len(endpoint) > len("ipc://"):
        return endpoint
    if endpoint.startswith("tcp://"):
        host, sep, port = endpoint[len("tcp://") :].rpartition(":")
        if sep and host and port.isdigit() and 0 < int(port) < 65536:
            return endpoint
    raise ValueError(f"address must be 'tcp://host:port' or 'ipc://path', got {endpoint!r}")
