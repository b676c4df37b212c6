"""Actors the benchmarks host in helper processes."""

from __future__ import annotations

from typing import Any

from actors import Actor


class Echo(Actor):
    """Answers with the message."""

    def receive(self, message: Any) -> Any:
        return message
