"""The log files of a worker's replica processes: one per replica
(``replica-<id>.log``: what it prints and its log records), read back by tail,
copied and truncated past a size, and the oldest removed past a count, so the
folder stays bounded."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

from .._names import HTTP_METHOD

ACCESS_LOG = logging.getLogger("corral.access")  # one INFO line per request, when INFO is on (replica processes with a log file)

MAX_TAIL_BYTES = 4 * 1024 * 1024
_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]+$")


class ReplicaLogs:
    """Args:
        folder: where the files are (created on demand).
        max_bytes: past this a file is rotated: its content moves to ``.1``.
        keep: files kept at most (the least recently written are removed).
    """

    def __init__(self, folder: str | Path, max_bytes: int = 16 * 1024 * 1024, keep: int = 200) -> None:
        self.folder = Path(folder)
        self.max_bytes = max_bytes
        self.keep = keep

    def path_for(self, replica_id: str) -> Path:
        """The file a replica writes (created, mode 0600).

        Raises:
            ValueError: an id that is not a plain name (it would leave the folder).
        """
        if not _SAFE_ID.match(replica_id):
            raise ValueError(f"not a replica id: {replica_id!r}")
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"replica-{replica_id}.log"
        if not path.exists():
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600))
        return path

    def tail(self, replica_id: str, lines: int) -> dict[str, Any]:
        """``{"lines": [...]}``: the last ``lines`` lines (of at most the last
        ``MAX_TAIL_BYTES``), or ``{"error": why}`` when there is no such log."""
        if not _SAFE_ID.match(replica_id):
            return {"error": f"not a replica id: {replica_id!r}"}
        path = self.folder / f"replica-{replica_id}.log"
        try:
            with open(path, "rb") as fh:
                size = fh.seek(0, os.SEEK_END)
                fh.seek(max(0, size - MAX_TAIL_BYTES))
                data = fh.read()
        except FileNotFoundError:
            return {"error": f"no log for replica {replica_id} on this worker (a thread-mode replica writes to its worker's log)"}
        except OSError as exc:
            return {"error": f"the log of replica {replica_id} cannot be read: {exc.strerror or exc}"}
        text = data.decode("utf-8", errors="replace").splitlines()
        return {"lines": text[-lines:] if lines > 0 else []}

    def rotate(self) -> None:
        """Rotate the files past ``max_bytes`` (copy to ``.1``, truncate: the
        writer appends, so it goes on at the start) and remove the oldest past ``keep``."""
        try:
            files = [p for p in self.folder.glob("replica-*.log*") if p.is_file()]
        except OSError:
            return
        for path in files:
            if path.suffix != ".log":
                continue
            try:
                if path.stat().st_size > self.max_bytes:
                    with open(path, "rb") as src, open(path.with_name(path.name + ".1"), "wb") as dst:
                        src.seek(-self.max_bytes // 2, os.SEEK_END)
                        dst.write(src.read())
                    os.truncate(path, 0)
            except OSError:
                continue
        files = [p for p in self.folder.glob("replica-*.log*") if p.is_file()]
        if len(files) > self.keep:
            by_age = sorted(files, key=lambda p: p.stat().st_mtime if p.exists() else 0.0)
            for path in by_age[: len(files) - self.keep]:
                path.unlink(missing_ok=True)


def log_access(request: Any, value: Any, error: BaseException | None, seconds: float) -> None:
    """One access line: the method (an HTTP request's method and path), how it ended, how long it took."""
    if request.method == HTTP_METHOD and request.args and isinstance(request.args[0], list) and len(request.args[0]) > 3:
        what = f"{request.args[0][0]} {request.args[0][3]}"
        outcome = str(value[0]) if error is None and isinstance(value, list) and value else "streamed" if error is None else "500"
    else:
        what, outcome = request.method, "ok"
    if error is not None:
        outcome = f"{outcome if request.method == HTTP_METHOD else 'error'} {type(error).__name__}"
    ACCESS_LOG.info("%s %s %.1fms", what, outcome, seconds * 1000)
