"""What a long-running corral process waits on before it shuts down."""

from __future__ import annotations

import os
import signal
import sys
import threading


def stop_event(watch_stdin: bool = True) -> threading.Event:
    """An event set on SIGTERM or SIGINT, and (with ``watch_stdin``) when
    standard input reaches end of file, so a child never outlives the parent
    holding its pipe. Call from the main thread.

    The signal handlers do not set the event themselves: a handler runs on the
    main thread between two bytecodes, possibly inside ``Event.wait`` while it
    holds the event's lock, and setting the event there deadlocks. Python's
    wakeup fd carries the signal to a watcher thread, which sets it.
    """
    stop = threading.Event()
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)

    def watch_signals() -> None:
        while True:
            data = os.read(read_fd, 64)
            if not data or any(b in (signal.SIGTERM, signal.SIGINT) for b in data):
                stop.set()
                return

    threading.Thread(target=watch_signals, name="signal-watch", daemon=True).start()
    if watch_stdin:

        def watch_stdin_closed() -> None:
            sys.stdin.read()
            stop.set()

        threading.Thread(target=watch_stdin_closed, name="stdin-watch", daemon=True).start()
    return stop
