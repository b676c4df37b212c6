"""Streaming asks: many answers to one request, in order, then an end."""

from __future__ import annotations

import asyncio
from typing import Callable

import pytest

from actors import ActorSystem, AskTimeout
from tests.conftest import Peer
from tests.helpers import Counter, Sleeper


def test_a_local_stream_yields_every_item_in_order_then_ends(system: ActorSystem) -> None:
    ref = system.spawn(Counter, name="counter")
    assert list(ref.ask_stream(500)) == list(range(500))


def test_a_remote_stream_yields_every_item_in_order_then_ends(system: ActorSystem, peer: Callable[..., Peer]) -> None:
    ref = system.ref(peer({"counter": "tests.helpers:Counter"}).address, "counter")
    assert list(ref.ask_stream(2000)) == list(range(2000))


def test_a_stream_that_fails_raises_after_the_items_sent_before(system: ActorSystem, peer: Callable[..., Peer]) -> None:
    ref = system.ref(peer({"counter": "tests.helpers:Counter"}).address, "counter")
    stream = ref.ask_stream(-1)
    assert [next(stream), next(stream)] == [0, 1]
    with pytest.raises(ValueError, match="stream broke"):
        next(stream)


def test_a_stream_can_be_consumed_with_async_for(system: ActorSystem, peer: Callable[..., Peer]) -> None:
    ref = system.ref(peer({"counter": "tests.helpers:Counter"}).address, "counter")

    async def main() -> list[int]:
        return [item async for item in ref.ask_stream(300)]

    assert asyncio.run(main()) == list(range(300))


def test_a_stream_that_stalls_fails_by_its_deadline(system: ActorSystem) -> None:
    ref = system.spawn(Sleeper, name="sleepy")
    stream = ref.ask_stream(2.0, timeout=0.2)
    with pytest.raises(AskTimeout):
        next(stream)


def test_a_normal_ask_to_a_streaming_handler_gets_no_emitter(system: ActorSystem) -> None:
    ref = system.spawn(Counter, name="counter")
    assert ref.ask(3).get(timeout=5) == "not a stream"


def test_a_final_answer_other_than_none_is_the_streams_last_item(system: ActorSystem, peer: Callable[..., Peer]) -> None:
    ref = system.ref(peer({"last": "tests.helpers:LastItem"}).address, "last")
    assert list(ref.ask_stream(3)) == [0, 1, 2, "last"]


def test_a_cancelled_stream_ends_at_once_with_an_error_and_drops_later_items(system: ActorSystem, peer: Callable[..., Peer]) -> None:
    from actors import AskCancelled

    ref = system.ref(peer({"counter": "tests.helpers:Sleeper"}).address, "counter")
    stream = ref.ask_stream(1.0, timeout=10)
    assert stream.cancel()
    with pytest.raises(AskCancelled, match="cancelled by the caller"):
        next(stream)
    assert not stream.cancel(), "a second cancel does nothing"
