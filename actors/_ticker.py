"""A helper thread that tells an actor a message at a fixed interval."""

from __future__ import annotations

import threading
from typing import Any, Callable


class Ticker:
    """Tells ``ref`` a message every ``interval_s``, never piling up.

    A tick is skipped while the previous one has not been handled; the actor
    calls :meth:`handled` when it takes one. With ``urgent``, setting that
    event ticks at once with ``make_urgent()``, even if a tick is pending.

    Args:
        ref: the actor (any object with ``tell``).
        make: builds the periodic message.
        interval_s: the period.
        name: the thread's name.
        urgent: an event that asks for an immediate tick.
        make_urgent: builds the immediate message (default: ``make``).
    """

    def __init__(
        self,
        ref: Any,
        make: Callable[[], Any],
        interval_s: float,
        name: str,
        urgent: threading.Event | None = None,
        make_urgent: Callable[[], Any] | None = None,
    ) -> None:
        self._ref = ref
        self._make = make
        self._make_urgent = make_urgent or make
        self._interval = interval_s
        self._urgent = urgent
        self._halt = threading.Event()
        self._pending = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> Ticker:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop ticking (the thread ends within one interval)."""
        self._halt.set()

    def handled(self) -> None:
        """The actor took the last tick: the next one may be sent."""
        self._pending.clear()

    def _run(self) -> None:
        while not self._halt.is_set():
            urgent = False
            if self._urgent is not None:
                urgent = self._urgent.wait(self._interval)
                if urgent:
                    self._urgent.clear()
            else:
                self._halt.wait(self._interval)
            if self._halt.is_set():
                return
            if self._pending.is_set() and not urgent:
                continue  # the last tick is still waiting: do not pile up
            self._pending.set()
            try:
                self._ref.tell(self._make_urgent() if urgent else self._make())
            except Exception:
                return  # the actor is gone
