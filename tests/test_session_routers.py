"""The routers of a process's serve session are read by the sweeper and the
I/O thread while callers add new ones: readers get a copy, never an error."""

from __future__ import annotations

import threading
from typing import Any

from actors import Config
from actors.serve.client._session import Session


class _Router:
    """Stands in for a router: the session keeps them by weak reference."""


def test_reading_the_routers_while_another_thread_adds_some_never_fails() -> None:
    session = Session(system=None, config=Config(), controller=None, own_system=False)  # type: ignore[arg-type]
    kept: list[Any] = []
    failures: list[BaseException] = []
    added = threading.Event()

    def add() -> None:
        for i in range(20_000):
            router = _Router()
            kept.append(router)
            with session._lock:  # as Session.router() adds one
                session.routers[("app", str(i))] = router  # type: ignore[assignment]
        added.set()

    adder = threading.Thread(target=add)
    adder.start()
    try:
        while not added.is_set():
            try:
                session.all_routers()
            except RuntimeError as exc:  # "dictionary changed size during iteration"
                failures.append(exc)
                break
    finally:
        adder.join(30)
    assert not failures
    assert len(session.all_routers()) == 20_000
