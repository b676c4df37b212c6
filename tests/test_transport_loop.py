"""A transport handed to an asyncio loop: the loop's thread sends, receives,
watches peers and closes; letting go gives the sockets back to a new I/O
thread. Real processes and real ZeroMQ sockets."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from typing import Any, Iterator

import pytest

from actors import ActorSystem
from actors import ActorStopped
from tests.conftest import fast_config
from tests.helpers import wait_for
from transport import ipc_path


class LoopThread:
    """An asyncio loop running on its own thread until :meth:`stop`."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="test-loop", daemon=True)
        self.thread.start()

    def run(self, coro: Any, timeout: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Any, timeout: float = 10.0) -> Any:
        async def on_loop() -> Any:
            return fn()
        return self.run(on_loop(), timeout)

    def stop(self) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        if not self.loop.is_running():
            self.loop.close()


@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    runner = LoopThread()
    yield runner
    runner.stop()


@pytest.fixture
def handed(loop_thread: LoopThread) -> Iterator[tuple[ActorSystem, Any]]:
    """A system whose I/O ``loop_thread`` does (given back before the loop stops)."""
    system = ActorSystem(fast_config())
    driver = system.hand_io_to(loop_thread.loop)
    try:
        wait_for(lambda: driver.attached, 5, "the loop to take the sockets")
        yield system, driver
    finally:
        if driver.attached:
            loop_thread.call(driver.detach)
        system.shutdown()


def test_asks_sent_from_the_loop_are_answered_on_the_loop_thread_that_does_the_io(handed: Any, loop_thread: LoopThread, peer: Any) -> None:
    system, _ = handed
    echo = system.ref(peer().address, "echo")

    async def ask_many() -> tuple[list[Any], bool]:
        answers = await asyncio.gather(*(echo.ask({"n": i}, timeout=5) for i in range(50)))
        return list(answers), system._transport.is_io_thread()

    answers, on_io_thread = loop_thread.run(ask_many())
    assert answers == [{"n": i} for i in range(50)]
    assert on_io_thread
    assert not system._transport.is_io_thread()


def test_asks_from_other_threads_still_go_out_while_a_loop_does_the_io(handed: Any, peer: Any) -> None:
    system, _ = handed
    echo = system.ref(peer().address, "echo")
    results: list[Any] = []

    def ask_some(base: int) -> None:
        results.extend(echo.ask(base + i, timeout=5).get(5) for i in range(100))

    threads = [threading.Thread(target=ask_some, args=(k * 1000,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) == sorted(k * 1000 + i for k in range(3) for i in range(100))


def test_a_peer_killed_while_a_loop_does_the_io_fails_the_ask_waiting_on_it(handed: Any, peer: Any) -> None:
    system, _ = handed
    p = peer({"echo": "tests.helpers:Echo", "sleepy": "tests.helpers:Sleeper"})
    ref = system.ref(p.address, "echo")
    assert ref.ask("up", timeout=5).get(5) == "up"
    died: list[str] = []
    system.watch(ref, lambda _ref, reason: died.append(reason))
    in_flight = system.ref(p.address, "sleepy").ask(30)
    p.kill()
    wait_for(lambda: died, 5, "the watch to report the dead peer")
    assert "no heartbeat" in died[0] or "nothing listens" in died[0]
    with pytest.raises(ActorStopped, match="is gone"):
        in_flight.get(timeout=5)


def test_a_loop_that_lets_go_gives_the_sockets_to_a_new_io_thread(handed: Any, loop_thread: LoopThread, peer: Any) -> None:
    system, driver = handed
    echo = system.ref(peer().address, "echo")
    assert echo.ask(1, timeout=5).get(5) == 1
    loop_thread.call(driver.detach)
    assert not driver.attached
    assert echo.ask(2, timeout=5).get(5) == 2
    io = system._transport.io_ident
    assert io not in (None, loop_thread.thread.ident, threading.get_ident())


def test_shutdown_while_a_loop_does_the_io_closes_every_socket_and_the_loop_goes_on(handed: Any, loop_thread: LoopThread) -> None:
    system, driver = handed
    path = ipc_path(system.address)
    assert path is not None and os.path.exists(path)
    system.shutdown()
    assert not os.path.exists(path)
    assert not driver.attached
    assert loop_thread.call(lambda: "still running") == "still running"


def test_a_shutdown_called_on_the_loop_that_does_the_io_closes_at_once(handed: Any, loop_thread: LoopThread, peer: Any) -> None:
    system, driver = handed
    echo = system.ref(peer().address, "echo")
    assert echo.ask("hello", timeout=5).get(5) == "hello"
    path = ipc_path(system.address)
    loop_thread.call(lambda: system._transport.close(timeout=5))
    assert not driver.attached
    assert path is not None and not os.path.exists(path)


def test_handing_the_io_to_a_second_loop_is_refused(handed: Any) -> None:
    system, _ = handed
    other = asyncio.new_event_loop()
    try:
        with pytest.raises(RuntimeError, match="already handed"):
            system.hand_io_to(other)
    finally:
        other.close()


def test_an_ask_to_an_address_nothing_listens_at_fails_saying_so_while_a_loop_does_the_io(handed: Any, tmp_path: Any) -> None:
    system, _ = handed
    reasons = []
    for n in range(20):  # each a fresh socket whose monitor the loop registers after its first event
        path = str(tmp_path / f"dead-{n}.sock")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as gone:
            gone.bind(path)  # its file stays, nothing accepts on it: a process that was killed
        with pytest.raises(ActorStopped) as failed:
            system.ref(f"ipc://{path}", "node").ask("anyone?", timeout=5).get(5)
        reasons.append(str(failed.value))
    assert all("nothing listens" in reason and "no heartbeat" not in reason for reason in reasons), reasons
