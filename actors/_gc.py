"""Short full garbage collections in a process whose state is large and
long-lived (the controller's: a record per replica).

CPython's full (generation 2) collection walks every tracked object: about
75 ms at 16,384 replicas on this machine, a pause every few seconds once the
control loop allocates steadily. After each full collection, what survived
it is frozen (``gc.freeze``), so the next one walks only what was made since.
Objects freed by reference counting are freed as always; only a reference
cycle among frozen objects waits, until the periodic sweep thaws everything
and collects once (one long pause per ``sweep_s`` instead of one every few
seconds).
"""

from __future__ import annotations

import gc
import time
from typing import Any, Callable


class FrozenSurvivors:
    """Freezes what survives each full collection; thaws and sweeps every ``sweep_s``.

    Args:
        sweep_s: seconds between full sweeps of the frozen objects.
        clock: monotonic seconds (tests pass their own).

    Raises:
        ValueError: ``sweep_s`` is not positive.
    """

    def __init__(self, sweep_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        if not sweep_s > 0:
            raise ValueError(f"sweep_s must be positive, got {sweep_s!r}")
        self.sweep_s = sweep_s
        self._clock = clock
        self._last_sweep = clock()
        self.sweeps = 0
        self.freezes = 0

    def install(self) -> None:
        """Freeze after every full collection in this process from now on."""
        if self._on_gc not in gc.callbacks:
            gc.callbacks.append(self._on_gc)

    def uninstall(self) -> None:
        """Stop freezing, and thaw what was frozen (the collector sees it again)."""
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)
            gc.unfreeze()

    def sweep_if_due(self) -> bool:
        """Thaw and collect everything once when ``sweep_s`` passed since the last
        sweep (call it from a periodic tick); True when it swept."""
        now = self._clock()
        if now - self._last_sweep < self.sweep_s:
            return False
        self._last_sweep = now
        gc.unfreeze()
        gc.collect()  # its end freezes the survivors again (the callback)
        self.sweeps += 1
        return True

    def statistics(self) -> dict[str, Any]:
        """Freezes and sweeps so far, and the objects frozen now."""
        return {"freezes": self.freezes, "sweeps": self.sweeps, "frozen": gc.get_freeze_count()}

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "stop" and info.get("generation") == 2:
            gc.freeze()
            self.freezes += 1
