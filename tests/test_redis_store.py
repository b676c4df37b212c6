"""The Redis checkpoint store against a real redis-server, and a head that recovers from it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from actors import Config, ServeSettings, serve
from actors.serve.head._store import RedisStore, StoreError, open_store
from scripts._cluster_files import free_port
from scripts._local_cluster import LocalCluster
from transport import TransportConfig

from .conftest import FAST
from .helpers import wait_for
from .serve_apps import Echo
from .test_recovery import SETTINGS, recovered, replicas_by_id


class RedisServer:
    """A redis-server of its own on a loopback port; can be stopped and started again."""

    def __init__(self, binary: str, folder: Path) -> None:
        self.binary, self.folder, self.port = binary, folder, free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.folder)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

        def up() -> bool:
            try:
                open_store(self.url).close()
                return True
            except StoreError:
                return False

        wait_for(up, 10, "redis-server to accept connections")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """Skipped where redis-server is not installed."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    server = RedisServer(binary, tmp_path)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


def test_the_redis_store_saves_loads_and_clears_under_its_key(redis_url: str) -> None:
    store = open_store(f"{redis_url}?key=cluster-a")
    other = open_store(f"{redis_url}?key=cluster-b")
    try:
        assert isinstance(store, RedisStore) and store.load() is None
        store.save(b"\x00one")
        store.save(b"\x00two")
        assert store.load() == b"\x00two" and other.load() is None
        store.clear()
        assert store.load() is None
    finally:
        store.close()
        other.close()


def test_a_redis_store_that_does_not_answer_is_a_clear_error() -> None:
    with pytest.raises(StoreError, match="cannot open the checkpoint store redis://127.0.0.1:1/0"):
        open_store("redis://127.0.0.1:1/0")


def test_without_the_redis_extra_a_redis_store_is_refused_saying_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)  # import redis raises ImportError
    with pytest.raises(StoreError, match=r"pip install 'corral\[redis\]'") as refused:
        open_store("redis://user:secret@127.0.0.1:1/0")
    assert "secret" not in str(refused.value)


def test_a_head_recovers_from_redis(redis_url: str, tmp_path: Path) -> None:
    local = LocalCluster(tmp_path, settings=SETTINGS, transport=dict(FAST), store=redis_url)
    try:
        local.start_head()
        local.start_worker("w0")
        serve.start(address=local.address, config=Config(transport=TransportConfig(**FAST), serve=ServeSettings(**SETTINGS)))
        serve.run(Echo.bind(), name="default")
        before = replicas_by_id()
        local.kill_head()
        (tmp_path / "checkpoint.sqlite").unlink(missing_ok=True)
        local.start_head(recovery="required")
        after = wait_for(recovered, 30, "the recovery to finish")
        assert after["recovery"]["adopted"] == 2
        assert after["recovery"]["checkpoint_location"].startswith("redis://127.0.0.1:")
        assert replicas_by_id() == before
    finally:
        serve.shutdown()
        local.close()


def test_a_store_that_goes_away_is_retried_every_tick_while_serving_goes_on(redis_server: RedisServer) -> None:
    settings = ServeSettings(checkpoint_store=redis_server.url, reconcile_interval_s=0.05)
    serve.start(workers=1, config=Config(transport=TransportConfig(**FAST), serve=settings), http_options={"port": 0})
    try:
        handle = serve.run(Echo.options(num_replicas=1).bind(), name="default")
        assert serve.controller_stats()["recovery"]["checkpoint_writes"] >= 1
        redis_server.stop()
        serve.run(Echo.options(num_replicas=1).bind(), name="second", route_prefix=None)  # a change to write, with the store away
        assert handle.remote("still").result(10) == "still"
        failing = wait_for(lambda: (r := serve.controller_stats()["recovery"])["checkpoint_failures"] >= 2 and r, 20, "failed writes, retried")
        redis_server.start()  # empty: the key comes back only with a new write
        wait_for(lambda: serve.controller_stats()["recovery"]["checkpoint_writes"] > failing["checkpoint_writes"], 20,
                 "the write to succeed once the store is back")
        store = open_store(redis_server.url)
        try:
            blob = store.load()
        finally:
            store.close()
        assert blob is not None and b"second" in blob
    finally:
        serve.shutdown()
