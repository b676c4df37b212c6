"""Which GPU ids each replica process of a worker sees. Pure: no I/O.

A replica asking for whole GPUs gets that many ids nobody else holds; one
asking for a fraction (``num_gpus=0.5``) shares one id with other fractional
replicas as long as their shares add up to at most 1, as Ray does.
"""

from __future__ import annotations

import math


class DeviceError(RuntimeError):
    """The worker does not have the GPUs a replica asked for."""


class GpuIds:
    """The GPU ids of one worker and who holds which share of each.

    Args:
        ids: the ids the worker declared, in order (e.g. ``["0", "1"]``).
    """

    def __init__(self, ids: list[str]) -> None:
        self.ids = list(ids)
        self._used: dict[str, float] = {i: 0.0 for i in self.ids}
        self._held: dict[str, list[tuple[str, float]]] = {}

    def take(self, holder: str, amount: float) -> list[str]:
        """Give ``holder`` ``amount`` GPUs and return the ids it may see.

        Raises:
            DeviceError: not enough free GPUs; the message says how many there are.
            ValueError: ``amount`` is negative, or above 1 and not whole.
        """
        if amount < 0 or (amount > 1 and amount != math.floor(amount)):
            raise ValueError(f"num_gpus must be a fraction up to 1 or a whole number, got {amount!r}")
        if amount == 0:
            return []
        if holder in self._held:
            raise ValueError(f"{holder} already holds GPUs {self.ids_of(holder)}")
        if amount < 1:
            # pack fractions: the fullest id that still has room
            fits = [i for i in self.ids if self._used[i] + amount <= 1.0 + 1e-9]
            if not fits:
                raise DeviceError(self._shortage(holder, amount))
            chosen = max(fits, key=lambda i: (self._used[i], -self.ids.index(i)))
            shares = [(chosen, amount)]
        else:
            free = [i for i in self.ids if self._used[i] == 0.0]
            if len(free) < amount:
                raise DeviceError(self._shortage(holder, amount))
            shares = [(i, 1.0) for i in free[: int(amount)]]
        for device, share in shares:
            self._used[device] += share
        self._held[holder] = shares
        return [device for device, _ in shares]

    def release(self, holder: str) -> None:
        """Give back what ``holder`` took (nothing if it took nothing)."""
        for device, share in self._held.pop(holder, []):
            self._used[device] = max(0.0, self._used[device] - share)

    def ids_of(self, holder: str) -> list[str]:
        """The ids ``holder`` sees (empty if none)."""
        return [device for device, _ in self._held.get(holder, [])]

    def _shortage(self, holder: str, amount: float) -> str:
        free = sum(1.0 - used for used in self._used.values())
        return (
            f"replica {holder} asks for {amount:g} GPU(s) but this worker has {len(self.ids)} "
            f"({', '.join(self.ids) or 'none'}) with {free:g} free"
        )


def declared_gpu_ids(count: float, visible: str | None) -> list[str]:
    """The GPU ids a worker declaring ``count`` GPUs hands out: its own
    ``CUDA_VISIBLE_DEVICES`` when set (the first ``count`` of them), else 0..count-1.

    Raises:
        ValueError: ``CUDA_VISIBLE_DEVICES`` names fewer devices than declared.
    """
    n = int(count)
    if visible is None or visible.strip() == "":
        return [str(i) for i in range(n)]
    ids = [part.strip() for part in visible.split(",") if part.strip()]
    if len(ids) < n:
        raise ValueError(f"the worker declares {n} GPUs but CUDA_VISIBLE_DEVICES={visible!r} names only {len(ids)}")
    return ids[:n]
