"""What a long-running corral process waits on before it shuts down."""

from __future__ import annotations

import signal
import sys
import threading


def stop_event(watch_stdin: bool = True) -> threading.Event:
    """An event set on SIGTERM or SIGINT, and (with ``watch_stdin``) when
    standard input reaches end of file, so a child never outlives the parent
    holding its pipe. Call from the main thread."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    if watch_stdin:
        threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), name="stdin-watch", daemon=True).start()
    return stop
