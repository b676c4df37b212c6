"""A worker's cache of shipped code (``runtime_env``): each package fetched
from the head on first use, checked against its digest, unpacked once, and
removed once no replica of this worker has used it for ``keep_unused_s``."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable

from .._packages import PackageError, unpack

log = logging.getLogger("corral.serve")


def package_cache_dir(node_id: str) -> Path:
    """A worker's own cache folder (removed when the worker stops)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in node_id)
    return Path(tempfile.gettempdir()) / f"corral-{os.getuid()}" / f"packages-{safe}-{os.getpid()}"


class PackageCache:
    """Args:
        root: this worker's own cache folder.
        fetch: the bytes of a package, by digest (asked of the head).
        keep_unused_s: how long an unused package stays unpacked.
    """

    def __init__(self, root: Path, fetch: Callable[[str], bytes], keep_unused_s: float = 600.0) -> None:
        self.root = root
        self.fetch = fetch
        self.keep_unused_s = keep_unused_s
        self._used: dict[str, float] = {}  # digest -> last time a replica started with it
        self.fetched_bytes = 0

    def folders(self, digests: list[str]) -> list[str]:
        """The unpacked folders of ``digests``, in order (fetched and checked when new here).

        Raises:
            PackageError: a package the head does not have, or that fails its hash check (refused, and logged).
        """
        out = []
        for digest in digests:
            target = self.root / digest.split(":", 1)[-1]
            if not target.is_dir():
                try:
                    data = self.fetch(digest)
                except Exception as exc:
                    raise PackageError(f"package {digest} could not be fetched from the head: {exc}") from None
                self.fetched_bytes += len(data)
                try:
                    target = unpack(data, digest, self.root)
                except PackageError as exc:
                    log.error("%s", exc)
                    raise
            self._used[digest] = time.monotonic()
            out.append(str(target))
        return out

    def clean(self, in_use: set[str]) -> list[str]:
        """Remove packages no replica here uses that were last used over ``keep_unused_s`` ago; returns their digests."""
        now = time.monotonic()
        gone = [d for d, at in self._used.items() if d not in in_use and now - at > self.keep_unused_s]
        for digest in gone:
            shutil.rmtree(self.root / digest.split(":", 1)[-1], ignore_errors=True)
            del self._used[digest]
        return gone
