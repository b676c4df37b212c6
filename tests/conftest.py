"""Fixtures: actor systems and real peer processes, always cleaned up."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Callable, Iterator

import pytest

from actors import ActorSystem, Config
from transport import TransportConfig

ROOT = Path(__file__).resolve().parent.parent

_RUN_TMP = pytest.StashKey[tuple[str, "str | None"]]()


def pytest_configure(config: pytest.Config) -> None:
    """Every temporary file of the run goes under one directory removed at its
    end: pytest's, ours, and our child processes' (which inherit TMPDIR), even
    those of processes a test killed (multiprocessing's pymp-* folders, ipc sockets)."""
    run_tmp = tempfile.mkdtemp(prefix="corral-tests-")
    config.stash[_RUN_TMP] = (run_tmp, os.environ.get("TMPDIR"))
    os.environ["TMPDIR"] = run_tmp
    tempfile.tempdir = None  # gettempdir() reads TMPDIR again


def pytest_unconfigure(config: pytest.Config) -> None:
    if _RUN_TMP not in config.stash:
        return
    run_tmp, before = config.stash[_RUN_TMP]
    if before is None:
        os.environ.pop("TMPDIR", None)
    else:
        os.environ["TMPDIR"] = before
    tempfile.tempdir = None
    shutil.rmtree(run_tmp, ignore_errors=True)


FAST = {"heartbeat_interval_s": 0.05, "heartbeat_liveness": 6, "tick_s": 0.02}


def fast_config(**overrides: object) -> Config:
    """A config with quick heartbeats so that deaths are seen within ~0.3s."""
    return Config(transport=TransportConfig(**{**FAST, **overrides}), ask_timeout_s=10.0)


class Peer:
    """A real OS process hosting actors (``python -m actors.host``)."""

    def __init__(self, actors: dict[str, str], transport: dict[str, object]) -> None:
        args = [sys.executable, "-m", "actors.host", "--config", json.dumps(transport)]
        for name, path in actors.items():
            args += ["--actor", f"{name}={path}"]
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.proc = subprocess.Popen(
            args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT
        )
        self.address = self._read_address(timeout=20.0)

    def _read_address(self, timeout: float) -> str:
        box: list[str] = []
        reader = threading.Thread(target=lambda: box.append(self.proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(timeout)
        line = box[0] if box else ""
        if not line.startswith("ADDRESS "):
            self.kill()
            raise RuntimeError(f"peer process did not start (printed {line!r})")
        return line.split()[1]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self, timeout: float = 10.0) -> int:
        """Close its stdin (its signal to stop cleanly) and wait."""
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()  # type: ignore[union-attr]
            except BrokenPipeError:
                pass
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None and not stream.closed:
                try:
                    stream.close()
                except BrokenPipeError:
                    pass


@pytest.fixture
def system() -> Iterator[ActorSystem]:
    sys_ = ActorSystem(fast_config())
    yield sys_
    sys_.shutdown()


@pytest.fixture
def make_system() -> Iterator[Callable[..., ActorSystem]]:
    made: list[ActorSystem] = []

    def make(**transport: object) -> ActorSystem:
        made.append(ActorSystem(fast_config(**transport)))
        return made[-1]

    yield make
    for sys_ in made:
        sys_.shutdown()


@pytest.fixture
def peer() -> Iterator[Callable[..., Peer]]:
    started: list[Peer] = []

    def start(actors: dict[str, str] | None = None, **transport: object) -> Peer:
        started.append(Peer(actors or {"echo": "tests.helpers:Echo"}, {**FAST, **transport}))
        return started[-1]

    yield start
    for p in started:
        p.stop(timeout=5)
        p.kill()


def fast_serve_config() -> Config:
    from actors import ServeSettings

    return Config(
        transport=TransportConfig(**FAST),
        ask_timeout_s=10.0,
        serve=ServeSettings(reconcile_interval_s=0.05, run_timeout_s=60.0, request_timeout_s=30.0),
    )


@pytest.fixture
def serve_cluster() -> Iterator[object]:
    """An embedded head with two worker processes, shut down after the test."""
    from actors import serve

    serve.start(workers=2, config=fast_serve_config(), http_options={"port": 0})
    try:
        yield serve
    finally:
        serve.shutdown()


def autoscaling_serve_config(**serve_overrides: object) -> Config:
    from actors import ServeSettings

    settings = dict(
        reconcile_interval_s=0.05,
        run_timeout_s=60.0,
        request_timeout_s=30.0,
        metrics_record_interval_s=0.05,
        metrics_push_interval_s=0.2,
    )
    settings.update(serve_overrides)
    return Config(transport=TransportConfig(**FAST), ask_timeout_s=10.0, serve=ServeSettings(**settings))  # type: ignore[arg-type]


@pytest.fixture
def autoscaling_cluster() -> Iterator[object]:
    """An embedded head and two workers with short metrics intervals."""
    from actors import serve

    serve.start(workers=2, config=autoscaling_serve_config(), http_options={"port": 0})
    try:
        yield serve
    finally:
        serve.shutdown()


@pytest.fixture
def gang_cluster() -> Iterator[object]:
    """An embedded head and two workers of 1 CPU each."""
    from actors import serve

    serve.start(workers=[{"CPU": 1}, {"CPU": 1}], config=fast_serve_config(), http_options={"port": 0})
    try:
        yield serve
    finally:
        serve.shutdown()


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """A new event loop, not running (a test runs it), closed afterwards."""
    made = asyncio.new_event_loop()
    yield made
    made.close()
