"""Code shipped to the cluster (``runtime_env``): folders packed into
content-addressed zip files, one per ``working_dir`` or ``py_modules`` entry.

    serve.run(app, runtime_env={"working_dir": "./my_project", "py_modules": ["../shared/utils"],
                                "excludes": ["data/", "*.ckpt"]})

Packing is deterministic (sorted names, fixed timestamps), so an unchanged
folder gives the same digest and is not uploaded again. ``.gitignore`` files
(the folder's own, at its top) and ``excludes`` (gitignore patterns) leave
files out; ``.git`` never goes. The head keeps the packages; a worker fetches
one on first use, checks its SHA-256, unpacks it into its cache and puts it
first on its replicas' import path.
"""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pathspec

MAX_PACKAGE_BYTES = 100 * 1024 * 1024
_KEYS = ("working_dir", "py_modules", "excludes")
_NOT_TAKEN = {
    "pip": "install packages into the workers' environment (or the container image)",
    "conda": "install packages into the workers' environment (or the container image)",
    "env_vars": "not supported; read settings in the deployment's constructor or user_config",
    "container": "not supported; run the workers in the image you need",
}


class PackageError(ValueError):
    """A ``runtime_env`` that cannot be shipped (one line naming why)."""


@dataclass(frozen=True)
class Package:
    """One packed folder: its digest (``sha256:...``), bytes, and where it came from."""

    digest: str
    data: bytes
    source: str


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def check_runtime_env(runtime_env: Any) -> dict[str, Any]:
    """Validate a ``runtime_env`` (None gives ``{}``).

    Raises:
        PackageError: not a dict, an unknown or unsupported key, or a value of the wrong type.
    """
    if runtime_env is None:
        return {}
    if not isinstance(runtime_env, dict):
        raise PackageError(f"runtime_env must be a dict, got {type(runtime_env).__name__}")
    for key in runtime_env:
        if key in _NOT_TAKEN:
            raise PackageError(f"runtime_env: {key!r} is not supported by corral: {_NOT_TAKEN[key]}")
        if key not in _KEYS:
            raise PackageError(f"runtime_env: unknown key {key!r}; corral takes {', '.join(_KEYS)}")
    if "working_dir" in runtime_env and not isinstance(runtime_env["working_dir"], (str, os.PathLike)):
        raise PackageError("runtime_env: working_dir must be a path")
    for key in ("py_modules", "excludes"):
        value = runtime_env.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, (str, os.PathLike)) for v in value):
            raise PackageError(f"runtime_env: {key} must be a list of {'paths' if key == 'py_modules' else 'patterns'}")
    return dict(runtime_env)


def pack_runtime_env(runtime_env: dict[str, Any], max_bytes: int = MAX_PACKAGE_BYTES) -> list[Package]:
    """The packages of a checked ``runtime_env``: the working_dir's contents, then
    each py_module as a folder of its own name.

    Raises:
        PackageError: a path that does not exist or is not a folder, a file that
            cannot be read, or a package over ``max_bytes``.
    """
    excludes = [str(p) for p in runtime_env.get("excludes", [])]
    out = []
    if "working_dir" in runtime_env:
        out.append(pack_folder(Path(runtime_env["working_dir"]), excludes, max_bytes))
    for module in runtime_env.get("py_modules", []):
        out.append(pack_folder(Path(module), excludes, max_bytes, as_module=True))
    return out


def pack_folder(folder: Path, excludes: list[str], max_bytes: int, as_module: bool = False) -> Package:
    """Zip ``folder`` deterministically (``as_module``: under its own name).

    Raises:
        PackageError: see :func:`pack_runtime_env`.
    """
    folder = folder.expanduser()
    if not folder.exists():
        raise PackageError(f"runtime_env: {folder} does not exist")
    if not folder.is_dir():
        raise PackageError(f"runtime_env: {folder} is not a folder")
    root = folder.resolve()
    patterns = list(excludes)
    ignore_file = root / ".gitignore"
    if ignore_file.is_file():
        patterns += ignore_file.read_text(errors="replace").splitlines()
    spec = pathspec.PathSpec.from_lines("gitignore", patterns)
    prefix = f"{root.name}/" if as_module else ""
    buffer = io.BytesIO()
    total = 0
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(_files(root)):
            relative = path.relative_to(root).as_posix()
            if relative.split("/")[0] == ".git" or spec.match_file(relative):
                continue
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise PackageError(f"runtime_env: cannot read {path}: {exc.strerror or exc}") from None
            total += len(data)
            if total > max_bytes:
                raise PackageError(f"runtime_env: {folder} is over the {max_bytes // 2**20} MiB limit "
                                   "(leave large files out with excludes or .gitignore)")
            info = zipfile.ZipInfo(prefix + relative, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = (0o644 if not os.access(path, os.X_OK) else 0o755) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    data = buffer.getvalue()
    if len(data) > max_bytes:
        raise PackageError(f"runtime_env: {folder} packs to over the {max_bytes // 2**20} MiB limit")
    return Package(digest_of(data), data, str(folder))


def _files(root: Path) -> list[Path]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = [d for d in dirnames if d not in (".git", "__pycache__")]
        out += [Path(dirpath) / name for name in filenames if not name.endswith(".pyc")]
    return out


def unpack(data: bytes, digest: str, cache: Path) -> Path:
    """Check ``data`` against ``digest`` and unpack it into ``cache/<hex>`` (once).

    Raises:
        PackageError: the data does not match its digest (refused), or is not a zip file.
    """
    if digest_of(data) != digest:
        raise PackageError(f"package {digest} failed its hash check (it hashes to {digest_of(data)}): refused")
    target = cache / digest.split(":", 1)[-1]
    if target.is_dir():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    staging = cache / f".{target.name}.{os.getpid()}"
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for member in archive.namelist():
                if member.startswith("/") or ".." in Path(member).parts:
                    raise PackageError(f"package {digest} holds an unsafe path {member!r}: refused")
            archive.extractall(staging)
    except zipfile.BadZipFile as exc:
        raise PackageError(f"package {digest} is not a zip file: {exc}") from None
    try:
        os.rename(staging, target)
    except OSError:  # another replica unpacked it first
        _remove(staging)
    return target


def _remove(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
