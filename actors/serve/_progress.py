"""Progress of long work on a terminal (``serve.run``, ``corral deploy`` and
``corral run``): per deployment, running/target replicas, the time since it
began and its current message, redrawn in place (rich's live view). Off when
standard output is not a terminal or with ``--quiet``: then nothing is drawn."""

from __future__ import annotations

import contextlib
import sys
import time
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

_STYLES = {"HEALTHY": "green", "DEPLOY_FAILED": "red", "UNHEALTHY": "red"}


def wanted(quiet: bool) -> bool:
    """Progress is drawn on a terminal, unless asked to be quiet."""
    return not quiet and sys.stdout.isatty()


def table(status: Any, names: set[str], started: float, now: float | None = None) -> Table:
    """The progress table of the applications ``names`` (pure: a status in, a table out)."""
    elapsed = (time.monotonic() if now is None else now) - started
    view = Table(box=None, pad_edge=False, header_style="bold", padding=(0, 2, 0, 0))
    for column in ("DEPLOYMENT", "STATUS", "RUNNING / TARGET", "ELAPSED", "MESSAGE"):
        view.add_column(column, no_wrap=column != "MESSAGE", overflow="fold")
    for name in sorted(names):
        app = status.applications.get(name)
        if app is None:
            view.add_row(name, "waiting", "-", f"{elapsed:.0f}s", "not known to the controller yet")
            continue
        for dname, d in sorted(app.deployments.items()):
            view.add_row(f"{name}/{dname}", Text(d.status, style=_STYLES.get(d.status, "yellow")),
                         f"{d.replica_states.get('RUNNING', 0)} / {d.target_replicas}", f"{elapsed:.0f}s", d.message)
    return view


class Progress:
    """A live progress table, or nothing (``enabled`` False). Use as a context manager."""

    def __init__(self, enabled: bool, started: float | None = None, transient: bool = False) -> None:
        self.started = time.monotonic() if started is None else started
        self._live = Live(Table(), console=Console(), refresh_per_second=4, transient=transient) if enabled else None

    def __enter__(self) -> Progress:
        if self._live is not None:
            self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)

    def show(self, status: Any, names: set[str]) -> None:
        if self._live is not None:
            self._live.update(table(status, names, self.started))


def spinner(enabled: bool, what: str) -> Any:
    """A spinner with ``what`` on a terminal while a step runs; nothing otherwise. A context manager."""
    return Console().status(what) if enabled else contextlib.nullcontext()
