"""The process's Membership actor: one controller subscription per process.

It receives every replica-set update for every deployment any handle in the
process uses, and hands each to that deployment's router.
"""

from __future__ import annotations

from typing import Any, Callable

from protocol import ReplicaSet

from ..._actor import Actor


class Membership(Actor):
    """Receives replica-set pushes for this process.

    Args:
        on_update: called with every pushed :class:`ReplicaSet`.
    """

    def __init__(self, on_update: Callable[[ReplicaSet], None]) -> None:
        super().__init__()
        self.on_update = on_update

    def handlers(self) -> dict[type, Callable[[Any], Any]]:
        return {ReplicaSet: self.on_update}
