"""Actors the benchmarks host in helper processes."""

from __future__ import annotations

from typing import Any

from actors import Actor


class Echo(Actor):
    """Answers with the message, on the receiving thread when idle (``inline_asks``)."""

    inline_asks = True

    def receive(self, message: Any) -> Any:
        return message


class EchoOnThread(Actor):
    """Answers with the message, always on its own thread (pykka's default)."""

    def receive(self, message: Any) -> Any:
        return message
