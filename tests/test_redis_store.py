"""The Redis checkpoint store against a real redis-server, and a head that recovers from it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from actors import Config, ServeSettings, serve
from actors.serve._store import RedisStore, StoreError, open_store
from scripts._local_cluster import LocalCluster
from transport import TransportConfig

from .conftest import FAST
from .helpers import wait_for
from .serve_apps import Echo
from .test_recovery import SETTINGS, free_port, recovered, replicas_by_id


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A redis-server of its own on a free loopback port (skipped where none is installed)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        url = f"redis://127.0.0.1:{port}/0"

        def up() -> bool:
            try:
                open_store(url).close()
                return True
            except StoreError:
                return False

        wait_for(up, 10, "redis-server to accept connections")
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


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


def test_a_head_recovers_from_redis(redis_url: str, tmp_path: Path) -> None:
    local = LocalCluster(tmp_path, free_port(), settings=SETTINGS, transport=dict(FAST), store=redis_url)
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
