"""What every bench shares: arguments, statistics, the table and the JSON file."""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence

ROOT = Path(__file__).resolve().parent.parent


def parse_args(
    description: str, argv: Sequence[str] | None = None, extra: Sequence[tuple[str, str]] = ()
) -> argparse.Namespace:
    """The flags every bench takes: ``--quick`` (under 60 s) and ``--json FILE``,
    plus the bench's own on/off flags (``extra``: ``(flag, help)`` pairs)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="a short run, under 60 seconds")
    parser.add_argument("--json", metavar="FILE", help="write the figures as one flat JSON object")
    for flag, help_text in extra:
        parser.add_argument(flag, action="store_true", help=help_text)
    return parser.parse_args(argv)


def wait_until(condition: Callable[[], Any], timeout: float, what: str = "the condition", poll_s: float = 0.005) -> Any:
    """Poll ``condition`` until it returns something truthy (returned), for at most ``timeout`` seconds.

    Raises:
        TimeoutError: naming ``what``, when the deadline passes first.
    """
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout}s")
        pause.wait(poll_s)


def sequential(one: Callable[[], Any], n: int) -> list[float]:
    """Call ``one`` n times in a row; the seconds each call took."""
    out = []
    for _ in range(n):
        start = time.perf_counter()
        one()
        out.append(time.perf_counter() - start)
    return out


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) of samples, nearest rank."""
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Print an aligned plain-text table."""
    cells = [list(map(str, header))] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    print(f"\n{title}")
    for n, row in enumerate(cells):
        print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))))
        if n == 0:
            print("  ".join("-" * w for w in widths))


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


def write_json(path: str | None, figures: dict[str, float | int | str]) -> None:
    """Write the flat figures object, if a path was given."""
    if path:
        Path(path).write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
        print(f"\nfigures written to {path}")


class Child:
    """A helper process started with a pipe on stdin; it ends when the pipe closes."""

    def __init__(self, args: Sequence[str], ready: str = "ADDRESS", timeout: float = 120.0) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT
        )
        box: list[str] = []
        reader = threading.Thread(target=lambda: box.append(self.proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(timeout)
        if not box or not box[0].startswith(ready):
            self.close()
            raise RuntimeError(f"helper {args} did not start: {box!r}")
        parts = box[0].split()
        self.address = parts[1] if len(parts) > 1 else ""

    def close(self) -> None:
        if self.proc.stdin and not self.proc.stdin.closed:
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        if self.proc.stdout:
            self.proc.stdout.close()

    def __enter__(self) -> "Child":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
