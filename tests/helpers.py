"""Actors that test peers host, and small waiting helpers. No sleeps as synchronisation."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import threading
import time
from typing import Any, Callable

import zmq

from actors import Actor
from actors.serve._context import ReplicaContext
from actors.serve.worker._replica_loop import ReplicaLoop


def wait_for(condition: Callable[[], Any], timeout: float, what: str = "condition") -> Any:
    """Poll ``condition`` until it returns something truthy, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    event = threading.Event()
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout}s")
        event.wait(0.01)


class Traffic:
    """Threads calling ``call`` in a loop until the block ends; keeps every
    failure and counts successes. Use as a context manager."""

    def __init__(self, call: Callable[[], Any], threads: int = 3) -> None:
        self.call = call
        self.failures: list[BaseException] = []
        self.answers: list[Any] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run) for _ in range(threads)]

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.answers.append(self.call())
            except BaseException as exc:  # noqa: BLE001 - reported to the test
                self.failures.append(exc)

    def __enter__(self) -> "Traffic":
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)


def child_pids() -> set[int]:
    """PIDs of this process's live (not yet reaped) children, from /proc."""
    pids: set[int] = set()
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/children") as fh:
                pids.update(int(p) for p in fh.read().split())
        except FileNotFoundError:
            continue
    return pids


class Echo(Actor):
    """Answers with the message; raises on request."""

    def receive(self, message: Any) -> Any:
        if isinstance(message, dict) and "raise" in message:
            raise_named(message["raise"], message.get("text", ""))
        if isinstance(message, dict) and "unencodable" in message:
            return object()
        return message


def raise_named(kind: str, text: str) -> None:
    if kind == "ValueError":
        raise ValueError(text)
    if kind == "KeyError":
        raise KeyError(text)
    raise CustomFailure(text)


class CustomFailure(Exception):
    """A user-defined exception type, not a built-in."""


class Recorder(Actor):
    """Records ``[sender, seq]`` tells; an ask of ``"dump"`` returns them."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[Any] = []

    def receive(self, message: Any) -> Any:
        if message == "dump":
            return self.seen
        self.seen.append(message)
        return None


class Sender(Actor):
    """On ``{"to": ref_string, "tag": str, "count": n}`` tells n numbered messages."""

    def receive(self, message: Any) -> Any:
        target = self.system.ref(message["to"])
        for seq in range(message["count"]):
            target.tell([message["tag"], seq])
        return message["count"]


class LoopLane(Actor):
    """Serves asks of ints as a replica serves ``async def`` methods, on a ``ReplicaLoop``
    (``actors/serve/worker/_replica_loop.py``); answers ``[the thread that read the ask,
    the thread that ran it, the int]``."""

    def on_start(self) -> None:
        self.lane = ReplicaLoop(ReplicaContext("lane", "LoopLane", "tests", "peer"), self.system.reader)
        self.system.serve_directly(self.name, (int,), self._accept)

    def on_stop(self) -> None:
        self.system.serve_directly(self.name, (), None)
        self.lane.stop()

    def _accept(self, request: Any) -> None:
        read_on = threading.current_thread().name
        self.lane.submit(lambda: self.lane.run(lambda finished: self._answer(request, read_on, finished), ("", 0)))

    async def _answer(self, request: Any, read_on: str, finished: Callable[[], None]) -> None:
        try:
            await asyncio.sleep(0)
            request.respond([read_on, threading.current_thread().name, request.payload], None, "")
        finally:
            finished()


class Sleeper(Actor):
    """Holds its thread for the given seconds (simulates slow work), then answers."""

    def receive(self, message: Any) -> Any:
        threading.Event().wait(float(message))
        return "slept"


class LastItem(Actor):
    """A streaming ask of n emits 0..n-1, then answers "last" (the stream's last item)."""

    def receive(self, message: Any) -> Any:
        emit = self.current_emitter()
        for i in range(int(message)):
            emit(i)  # type: ignore[misc]
        return "last"


class Stats(Actor):
    """Answers with its process's actor-system statistics."""

    def receive(self, message: Any) -> Any:
        stats = self.system.statistics()
        out = dataclasses.asdict(stats)
        return out


class Counter(Actor):
    """A streaming ask of n emits 0..n-1 from a helper thread, then answers
    None (the end); a negative n fails after emitting two items."""

    def receive(self, message: Any) -> Any:
        emit = self.current_emitter()
        if emit is None:
            return "not a stream"
        from actors import Future

        done: Future[None] = Future("count")

        def produce() -> None:
            count = abs(int(message))
            for i in range(count if message >= 0 else 2):
                emit(i)
            if message < 0:
                done.set_exception(ValueError("stream broke"))
            else:
                done.set_result(None)

        threading.Thread(target=produce, daemon=True).start()
        return done


def interruptible() -> None:
    """``preexec_fn`` of a child that a test stops with SIGINT (Ctrl-C): its
    disposition back to the default, which a shell's background job (a
    test run started with ``&``) would otherwise pass down as ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class RawSockets:
    """Bare ZeroMQ sockets standing in for a peer: a ROUTER bound at an ipc
    address in ``tmp`` (a transport sends to it), and a DEALER whose routing id
    is that address, connected to ``target`` when one is given."""

    def __init__(self, tmp: str, target: str | None = None) -> None:
        self.ctx = zmq.Context()
        self.inbox = self.ctx.socket(zmq.ROUTER)
        self.address = f"ipc://{tmp}/raw.sock"
        self.inbox.bind(self.address)
        self.out = self.ctx.socket(zmq.DEALER)
        self.out.setsockopt(zmq.ROUTING_ID, self.address.encode())
        self.out.setsockopt(zmq.LINGER, 0)
        if target is not None:
            self.out.connect(target)

    def messages(self, timeout_ms: int, quiet_ms: int = 50) -> list[list[bytes]]:
        """Every message received (its frames, without the routing id): the first
        within ``timeout_ms``, the rest until none came for ``quiet_ms``."""
        got = []
        while self.inbox.poll(timeout_ms):
            got.append(self.inbox.recv_multipart()[1:])
            timeout_ms = quiet_ms
        return got

    def close(self) -> None:
        self.inbox.close(linger=0)
        self.out.close(linger=0)
        self.ctx.term()


class InlineRecorder(Recorder):
    """A recorder whose asks are answered on the receiving thread when idle
    (``inline_asks``): it records ``[tag, seq]`` asks with the thread that ran
    them and answers with the message; ``{"wait": s}`` holds the thread s seconds."""

    inline_asks = True

    def receive(self, message: Any) -> Any:
        if isinstance(message, dict):
            threading.Event().wait(float(message["wait"]))
            return "waited"
        if message == "dump":
            return super().receive(message)
        super().receive([*message, threading.current_thread().name])
        return message


class Relay(Actor):
    """On ``{"to": "<address>#<name>", "message": m}`` asks that actor and answers with its answer."""

    def receive(self, message: Any) -> Any:
        return self.system.ref(message["to"]).ask(message["message"]).get(timeout=10)
