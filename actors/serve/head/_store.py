"""Where the controller keeps its checkpoint: a small interface and two stores.

``sqlite:///path/to/file`` keeps it in an SQLite file (embedded, nothing to
install; the default of ``corral start``). ``redis://host:port/db`` keeps it
in Redis, for a head that must survive its host. The checkpoint is one
document under one key, replaced whole by each write.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qs, urlparse

from protocol import Checkpoint, CorruptCheckpoint, decode_checkpoint

from .._errors import CheckpointError, StoreError

log = logging.getLogger("corral.serve")

DEFAULT_KEY = "corral:checkpoint"



class CheckpointStore(Protocol):
    """The interface the controller uses.

    Attributes:
        location: where the checkpoint lives, for messages (no secrets).
    """

    location: str

    def load(self) -> bytes | None:
        """The stored checkpoint, or None when there is none.

        Raises:
            StoreError: the store cannot be read.
        """

    def save(self, blob: bytes) -> None:
        """Replace the stored checkpoint.

        Raises:
            StoreError: the store cannot be written.
        """

    def clear(self) -> None:
        """Remove the stored checkpoint (a missing one is fine).

        Raises:
            StoreError: the store cannot be written.
        """

    def close(self) -> None:
        """Release the connection; the store is not used afterwards."""


class SqliteStore:
    """A checkpoint in an SQLite file (created with mode 0600 if missing).

    Args:
        path: the database file.
        key: the row the checkpoint lives in.
    """

    def __init__(self, path: str | os.PathLike[str], key: str = DEFAULT_KEY) -> None:
        self.path = Path(path)
        self.key = key
        self.location = f"sqlite://{self.path}" if self.path.is_absolute() else f"sqlite:{self.path}"
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if not self.path.exists():
                self.path.touch(mode=0o600)
            # used by whichever thread runs the controller; the lock serialises access
            self._db = sqlite3.connect(str(self.path), timeout=5.0, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS checkpoint (key TEXT PRIMARY KEY, blob BLOB NOT NULL, written REAL NOT NULL)")
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open the checkpoint store {self.location}: {exc}") from None

    def load(self) -> bytes | None:
        with self._lock:
            try:
                row = self._db.execute("SELECT blob FROM checkpoint WHERE key = ?", (self.key,)).fetchone()
            except sqlite3.Error as exc:
                raise StoreError(f"cannot read the checkpoint store {self.location}: {exc}") from None
        return None if row is None else bytes(row[0])

    def save(self, blob: bytes) -> None:
        with self._lock:
            try:
                self._db.execute(
                    "INSERT OR REPLACE INTO checkpoint (key, blob, written) VALUES (?, ?, ?)", (self.key, blob, time.time())
                )
            except sqlite3.Error as exc:
                raise StoreError(f"cannot write the checkpoint store {self.location}: {exc}") from None

    def clear(self) -> None:
        with self._lock:
            try:
                self._db.execute("DELETE FROM checkpoint WHERE key = ?", (self.key,))
            except sqlite3.Error as exc:
                raise StoreError(f"cannot write the checkpoint store {self.location}: {exc}") from None

    def close(self) -> None:
        with self._lock:
            self._db.close()


class RedisStore:
    """A checkpoint under one key of a Redis server.

    Args:
        url: ``redis://[user:password@]host:port/db``; ``?key=NAME`` picks the key.
        timeout_s: the longest one command may take.
    """

    def __init__(self, url: str, timeout_s: float = 5.0) -> None:
        try:
            import redis
        except ImportError:  # an extra, not a requirement
            raise StoreError("a checkpoint store in Redis needs the 'redis' package: pip install 'corral[redis]'") from None
        parsed = urlparse(url)
        self.key = parse_qs(parsed.query).get("key", [DEFAULT_KEY])[0]
        self.location = f"{parsed.scheme}://{parsed.hostname}:{parsed.port or 6379}{parsed.path or '/0'} key {self.key}"
        plain = parsed._replace(query="").geturl()
        self._redis_error = redis.RedisError
        try:
            self._client = redis.Redis.from_url(plain, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
            self._client.ping()
        except (redis.RedisError, ValueError) as exc:
            raise StoreError(f"cannot open the checkpoint store {self.location}: {exc}") from None

    def load(self) -> bytes | None:
        try:
            value = self._client.get(self.key)
        except self._redis_error as exc:
            raise StoreError(f"cannot read the checkpoint store {self.location}: {exc}") from None
        if value is None:
            return None
        return value.encode() if isinstance(value, str) else bytes(value)

    def save(self, blob: bytes) -> None:
        try:
            self._client.set(self.key, blob)
        except self._redis_error as exc:
            raise StoreError(f"cannot write the checkpoint store {self.location}: {exc}") from None

    def clear(self) -> None:
        try:
            self._client.delete(self.key)
        except self._redis_error as exc:
            raise StoreError(f"cannot write the checkpoint store {self.location}: {exc}") from None

    def close(self) -> None:
        self._client.close()


def _not_a_database(path: Path) -> bool:
    """Whether an existing file is something other than an SQLite database."""
    try:
        with open(path, "rb") as fh:
            return fh.read(16) != b"SQLite format 3\x00"
    except OSError:
        return False


def open_store(url: str, fresh: bool = False) -> CheckpointStore:
    """Open the store a URL names.

    Args:
        url: ``sqlite:///absolute/path``, ``sqlite:relative/path``, or
            ``redis://host:port/db[?key=NAME]`` (``rediss://`` for TLS).
        fresh: the checkpoint will be discarded anyway: an SQLite file that is
            not a database is moved aside (kept, renamed) and a new one made.

    Raises:
        StoreError: an unknown scheme, or the store cannot be opened.
    """
    if url.startswith("sqlite:"):
        path = url[len("sqlite:"):]
        path = path[2:] if path.startswith("//") else path
        if not path:
            raise StoreError(f"checkpoint store {url!r}: no file named; use sqlite:///path/to/file")
        try:
            return SqliteStore(path)
        except StoreError:
            if not fresh or not _not_a_database(Path(path)):
                raise
        aside = Path(f"{path}.unreadable-{int(time.time())}")
        os.replace(path, aside)
        for suffix in ("-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        log.warning(
            "the checkpoint file %s is not an SQLite database; moved it to %s and starting empty (fresh start)", path, aside
        )
        return SqliteStore(path)
    if url.startswith(("redis://", "rediss://")):
        return RedisStore(url)
    raise StoreError(f"checkpoint store {url!r}: expected sqlite:///path or redis://host:port/db")


_FRESH_HINT = "start with --fresh (ServeSettings.checkpoint_recovery='fresh') to discard it and start empty"



def load_checkpoint(store: CheckpointStore | None, mode: str) -> Checkpoint | None:
    """Read the checkpoint a starting controller recovers from.

    Args:
        store: where it lives (None: nowhere; the controller starts empty).
        mode: ``"auto"``, ``"required"`` or ``"fresh"`` (see ``ServeSettings``).

    Returns:
        The checkpoint, or None to start empty.

    Raises:
        CheckpointError: the store cannot be read, the checkpoint is corrupt,
            or it is missing when ``mode`` is ``"required"``.
    """
    if store is None:
        if mode == "required":
            raise CheckpointError("a checkpoint is required but no checkpoint store is configured")
        return None
    try:
        if mode == "fresh":
            store.clear()
            log.warning("starting empty: any checkpoint in %s was discarded (fresh start)", store.location)
            return None
        blob = store.load()
    except StoreError as exc:
        raise CheckpointError(str(exc)) from None
    if blob is None:
        if mode == "required":
            raise CheckpointError(
                f"no checkpoint in {store.location}: the controller cannot recover the cluster's state; "
                "start with --fresh (ServeSettings.checkpoint_recovery='fresh') to start empty "
                "(every application must then be deployed again)"
            )
        return None
    try:
        return decode_checkpoint(blob)
    except CorruptCheckpoint as exc:
        raise CheckpointError(f"the checkpoint in {store.location} is corrupt ({exc}); {_FRESH_HINT}") from None
