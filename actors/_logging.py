"""How corral's processes log: one line per record with its time, level and
component (``head``, ``worker worker-0``, ``replica app.Deployment.id``), as
text or as JSON objects (``Config.log_format``), to standard error, which the
process that started them points at a file."""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import IO, Any

LOG_FORMATS = ("text", "json")
_TEXT = "%(asctime)s %(levelname)s [%(component)s] %(name)s: %(message)s"


class _Component(logging.Filter):
    def __init__(self, component: str) -> None:
        super().__init__()
        self.component = component

    def filter(self, record: logging.LogRecord) -> bool:
        record.component = self.component
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, component, logger, message (and the traceback)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}",
            "level": record.levelname,
            "component": getattr(record, "component", ""),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["traceback"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class _Bounded(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to a stream that a file takes (standard error pointed at it), and
    keeps that file under ``max_bytes``: past it, its last half moves to
    ``FILE.1`` and the file is emptied (every writer appends, so all go on at its start)."""

    CHECK_EVERY = 200

    def __init__(self, stream: IO[str], path: str, max_bytes: int) -> None:
        super().__init__(stream)
        self.path, self.max_bytes, self._count = path, max_bytes, 0

    def emit(self, record: logging.LogRecord) -> None:
        super().emit(record)
        self._count += 1
        if self._count % self.CHECK_EVERY == 0:
            rotate_file(self.path, self.max_bytes)


def rotate_file(path: str, max_bytes: int) -> bool:
    """Copy and truncate ``path`` if it is over ``max_bytes``. Returns True if it did."""
    try:
        if os.path.getsize(path) <= max_bytes:
            return False
        with open(path, "rb") as src, open(f"{path}.1", "wb") as dst:
            src.seek(-(max_bytes // 2), os.SEEK_END)
            dst.write(src.read())
        os.truncate(path, 0)
        return True
    except OSError:
        return False


def configure_logging(component: str, log_format: str = "text", stream: IO[str] | None = None, level: int = logging.INFO,
                      bounded_file: str | None = None, max_bytes: int = 16 * 1024 * 1024) -> None:
    """Make the root logger write ``component``'s records to ``stream`` (standard error).

    Args:
        bounded_file: the file the stream goes to, kept under ``max_bytes`` (see ``_Bounded``).

    Raises:
        ValueError: ``log_format`` is not ``"text"`` or ``"json"``.
    """
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, got {log_format!r}")
    out = stream or sys.stderr
    handler = _Bounded(out, bounded_file, max_bytes) if bounded_file else logging.StreamHandler(out)
    handler.addFilter(_Component(component))
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(_TEXT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
