"""The packages of shipped code (``runtime_env``) the head keeps for its
workers, by digest: checked on upload, bounded in total size (the least
recently used go first), counted for the statistics."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from .._packages import digest_of

MAX_STORE_BYTES = 2 * 1024 * 1024 * 1024


class PackageStore:
    """Args:
        max_bytes: the most the packages may take together.
    """

    def __init__(self, max_bytes: int = MAX_STORE_BYTES) -> None:
        self.max_bytes = max_bytes
        self._packages: OrderedDict[str, bytes] = OrderedDict()
        self.uploads = 0
        self.uploaded_bytes = 0
        self.fetches = 0
        self.refused = 0

    def has(self, digest: str) -> bool:
        return digest in self._packages

    def put(self, digest: str, data: bytes) -> str:
        """Keep a package; returns its digest.

        Raises:
            ValueError: its bytes do not hash to ``digest`` (refused), or it is larger than the store.
        """
        if digest_of(data) != digest:
            self.refused += 1
            raise ValueError(f"package {digest} refused: its bytes hash to {digest_of(data)}")
        if len(data) > self.max_bytes:
            raise ValueError(f"package {digest} of {len(data)} bytes is larger than the head's store ({self.max_bytes} bytes)")
        self.uploads += 1
        self.uploaded_bytes += len(data)
        self._packages[digest] = data
        self._packages.move_to_end(digest)
        while sum(len(d) for d in self._packages.values()) > self.max_bytes:
            self._packages.popitem(last=False)
        return digest

    def get(self, digest: str) -> bytes:
        """A package's bytes, for a worker.

        Raises:
            KeyError: the head has no such package (it restarted, or it was never uploaded).
        """
        data = self._packages.get(digest)
        if data is None:
            raise KeyError(f"the head has no package {digest} (deploy the application again to upload it)")
        self._packages.move_to_end(digest)
        self.fetches += 1
        return data

    def statistics(self) -> dict[str, Any]:
        return {"count": len(self._packages), "bytes": sum(len(d) for d in self._packages.values()),
                "uploads": self.uploads, "uploaded_bytes": self.uploaded_bytes, "fetches": self.fetches, "refused": self.refused}
