"""Fresh ids for replicas and gangs: random, short, and never one already in use.

Eight random hex digits collide by chance: among 16,384 replicas of one
deployment, in about one deployment of 30. A collision used to stop the
controller's reconcile loop (the replica table refuses an id it tracks), so
each id is drawn again while it is taken, a bounded number of times.
"""

from __future__ import annotations

import secrets
from typing import Callable

_TRIES = 16


def fresh_id(prefix: str, taken: Callable[[str], bool], draw: Callable[[int], str] | None = None) -> str:
    """``prefix`` and eight random hex digits, drawn again while ``taken`` says the id is in use.

    Args:
        prefix: what the id starts with (``app.deployment.``).
        taken: whether an id is in use.
        draw: random hex digits of a number of bytes (None: ``secrets.token_hex``).

    Returns:
        An id ``taken`` refused not; after ``_TRIES`` refusals, one with 32 random
        hex digits (128 bits), which nothing in use can be expected to share.
    """
    draw = draw or secrets.token_hex
    for _ in range(_TRIES):
        candidate = prefix + draw(4)
        if not taken(candidate):
            return candidate
    return prefix + draw(16)
