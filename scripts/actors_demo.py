"""corral's demo: a second process hosts actors; this one talks to them.

Shows what the foundation does: a remote ask and its answer, a remote
exception with its type and traceback, per-sender ordering, a timeout, and
death watch noticing a process killed with SIGKILL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from actors import Actor, ActorSystem, AskTimeout, Config  # noqa: E402
from transport import TransportConfig  # noqa: E402


class Echo(Actor):
    """Answers with the message, or raises the error a message asks for."""

    def receive(self, message: Any) -> Any:
        if isinstance(message, dict) and "raise" in message:
            raise ValueError(message["raise"])
        return message


class Recorder(Actor):
    """Keeps every tell; an ask of "dump" returns them."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[Any] = []

    def receive(self, message: Any) -> Any:
        if message == "dump":
            return self.seen
        self.seen.append(message)
        return None


class Sleeper(Actor):
    """Busy for the given seconds, then answers."""

    def receive(self, message: Any) -> Any:
        threading.Event().wait(float(message))
        return "done"


def say(text: str) -> None:
    print(text, flush=True)


def start_host() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "actors.host",
            "--actor", "echo=scripts.actors_demo:Echo",
            "--actor", "recorder=scripts.actors_demo:Recorder",
            "--actor", "sleeper=scripts.actors_demo:Sleeper",
            "--config", '{"heartbeat_interval_s": 0.2, "heartbeat_liveness": 5}',
        ],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    line = proc.stdout.readline()  # type: ignore[union-attr]
    if not line.startswith("ADDRESS "):
        proc.kill()
        raise SystemExit(f"the host process did not start: {line!r}")
    return proc, line.split()[1]


def main() -> int:
    threads_before = set(threading.enumerate())
    config = Config(transport=TransportConfig(heartbeat_interval_s=0.2, heartbeat_liveness=5))
    proc, address = start_host()
    say(f"1. started a second process (pid {proc.pid}) hosting actors at {address}")
    try:
        with ActorSystem(config) as system:
            say(f"   this process's actor system listens at {system.address}")
            echo = system.ref(address, "echo")
            start = time.perf_counter()
            answer = echo.ask({"hello": "world", "n": [1, 2, 3]}).get(timeout=10)
            say(f"2. ask -> {answer!r} in {(time.perf_counter() - start) * 1e3:.2f} ms (first call connects)")
            samples = []
            for i in range(2000):
                start = time.perf_counter()
                echo.ask(i).get(timeout=10)
                samples.append(time.perf_counter() - start)
            samples.sort()
            say(f"   2000 more asks: p50 {samples[1000] * 1e6:.0f} us, p99 {samples[1980] * 1e6:.0f} us")
            try:
                echo.ask({"raise": "that input is not allowed"}).get(timeout=10)
            except ValueError as err:
                last = err.remote_traceback.strip().splitlines()[-1]  # type: ignore[attr-defined]
                say(f"3. the remote actor raised; caught here as ValueError: {err} (remote traceback ends: {last!r})")
            recorder = system.ref(address, "recorder")
            for seq in range(100):
                recorder.tell(["demo", seq])
            seen = recorder.ask("dump").get(timeout=10)
            say(f"4. sent 100 tells then an ask: received {len(seen)}, in order: {[s for _, s in seen] == list(range(100))}")
            try:
                system.ref(address, "sleeper").ask(5, timeout=0.3).get()
            except AskTimeout as err:
                say(f"5. an ask with a 0.3 s deadline to a busy actor: {type(err).__name__}: {err}")
            died = threading.Event()
            reasons: list[str] = []
            system.watch(echo, lambda ref, why: (reasons.append(why), died.set()))
            os.kill(proc.pid, signal.SIGKILL)
            killed = time.monotonic()
            if died.wait(10):
                say(f"6. killed the host with SIGKILL; death watch fired after {time.monotonic() - killed:.2f} s: {reasons[0]}")
            else:
                say("6. killed the host with SIGKILL; death watch did NOT fire within 10 s")
                return 1
            own_socket = system.address[len("ipc://"):]
            stats = system.statistics()
            say(f"7. statistics: sent {stats.transport.sent} frames, received {stats.transport.received}, "
                f"bad frames {sum(stats.transport.bad_frames.values())}, pending asks {stats.pending_asks}")
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        if proc.stdout:
            proc.stdout.close()
        if proc.stdin:
            proc.stdin.close()
    leftover = [t.name for t in set(threading.enumerate()) - threads_before]
    if leftover or os.path.exists(own_socket):
        say(f"8. shutdown left things behind: threads {leftover}, ipc file present: {os.path.exists(own_socket)}")
        return 1
    say("8. shut down: checked that no thread of ours is left and our ipc socket file is gone")
    return 0


if __name__ == "__main__":
    sys.exit(main())
