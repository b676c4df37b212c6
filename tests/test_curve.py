"""CurveZMQ: only holders of the cluster's keys get in; the rest get nothing."""

from __future__ import annotations

import dataclasses
import os
import stat
from pathlib import Path
from typing import Callable

import pytest

from actors import ActorStopped, ActorSystem, AskTimeout, Config
from tests.conftest import FAST, Peer
from transport import CurveKeys, TransportConfig, generate_keys, load_keys


def keyed_system(keys: CurveKeys | None, made: list[ActorSystem]) -> ActorSystem:
    system = ActorSystem(Config(transport=TransportConfig(host="127.0.0.1", curve=keys, **FAST), ask_timeout_s=10))
    made.append(system)
    return system


@pytest.fixture
def systems() -> object:
    made: list[ActorSystem] = []
    yield made
    for system in made:
        system.shutdown()


def test_generated_key_files_are_private_and_load_back(tmp_path: Path) -> None:
    keys = generate_keys(tmp_path / "keys")
    for name in ("server.key", "client.key"):
        assert stat.S_IMODE(os.stat(tmp_path / "keys" / name).st_mode) == 0o600
    assert load_keys(tmp_path / "keys") == keys
    os.chmod(tmp_path / "keys" / "client.key", 0o644)
    with pytest.raises(PermissionError, match="mode 0600"):
        load_keys(tmp_path / "keys")


def test_a_malformed_key_is_refused_naming_the_field() -> None:
    with pytest.raises(ValueError, match="CurveKeys.server_public"):
        CurveKeys("short", "x" * 40, "y" * 40, "z" * 40)


def test_only_holders_of_the_cluster_keys_are_served(
    tmp_path: Path, peer: Callable[..., Peer], systems: list[ActorSystem]
) -> None:
    keys = generate_keys(tmp_path / "keys")
    host = peer({"echo": "tests.helpers:Echo", "stats": "tests.helpers:Stats"}, host="127.0.0.1", curve=dataclasses.asdict(keys))
    member = keyed_system(keys, systems)
    assert member.ref(host.address, "echo").ask("hello", timeout=5).get() == "hello"

    stranger = keyed_system(None, systems)
    with pytest.raises((ActorStopped, AskTimeout)):
        stranger.ref(host.address, "echo").ask("let me in", timeout=3).get()

    other_keys = generate_keys(tmp_path / "other")
    impostor_keys = dataclasses.replace(other_keys, server_public=keys.server_public)
    impostor = keyed_system(impostor_keys, systems)
    with pytest.raises((ActorStopped, AskTimeout)):
        impostor.ref(host.address, "echo").ask("let me in too", timeout=3).get()

    stats = member.ref(host.address, "stats").ask(None, timeout=5).get()
    assert stats["transport"]["auth_failures"] >= 1
    assert member.ref(host.address, "echo").ask("still serving", timeout=5).get() == "still serving"


def test_a_process_with_the_keys_reaches_a_process_with_the_keys_both_ways(tmp_path: Path, systems: list[ActorSystem]) -> None:
    from tests.helpers import Echo

    keys = generate_keys(tmp_path / "keys")
    a, b = keyed_system(keys, systems), keyed_system(keys, systems)
    a.spawn(Echo, name="echo")
    b.spawn(Echo, name="echo")
    assert b.ref(a.address, "echo").ask(1, timeout=5).get() == 1
    assert a.ref(b.address, "echo").ask(2, timeout=5).get() == 2
