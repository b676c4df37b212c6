"""How corral's processes log: one line per record with its time, level and
component (``head``, ``worker worker-0``, ``replica app.Deployment.id``), as
text or as JSON objects (``Config.log_format``), to standard error, which the
process that started them points at a file."""

from __future__ import annotations

import json
import logging
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


def configure_logging(component: str, log_format: str = "text", stream: IO[str] | None = None, level: int = logging.INFO) -> None:
    """Make the root logger write ``component``'s records to ``stream`` (standard error).

    Raises:
        ValueError: ``log_format`` is not ``"text"`` or ``"json"``.
    """
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, got {log_format!r}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(_Component(component))
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(_TEXT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
