"""Every actor's message handler fed random and mutated messages through the
real transport: nothing crashes or hangs, and the cluster keeps serving."""

from __future__ import annotations

from typing import Any, Iterator

import msgpack
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors import ActorError, ActorSystem, AskTimeout, serve
from actors.serve._api import current_session
from protocol import registered_kinds
from tests import serve_apps
from tests.conftest import fast_config, fast_serve_config
from tests.test_protocol import instances_of, msgpack_values

ACTORS_IN_HEAD = ["controller", "scheduler", "gang-coordinator", "serve-membership", "serve-metrics", ""]


@pytest.fixture(scope="module")
def fuzz_cluster() -> Iterator[dict[str, Any]]:
    serve.start(workers=1, config=fast_serve_config(), http_options={"port": 0})
    client = ActorSystem(fast_config())
    try:
        handle = serve.run(serve_apps.Echo.options(num_replicas=1).bind("ok:"), name="fuzzed-app", route_prefix=None)
        assert handle.remote(1).result(timeout_s=10) == "ok:1"
        session = current_session()
        node = serve.status().nodes[0]
        replica = session.router("fuzzed-app", "Echo")._replicas[0]
        targets = [client.ref(session.system.address, name) if name else None for name in ACTORS_IN_HEAD]
        targets += [client.ref(node.address, "node"), client.ref(replica.address, replica.actor)]
        yield {"client": client, "handle": handle, "targets": targets, "head": session.system.address, "worker": node.address}
    finally:
        client.shutdown()
        serve.shutdown()


any_message = st.sampled_from(sorted(registered_kinds().items())).flatmap(lambda item: instances_of(item[1])) | msgpack_values


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(message=any_message, which=st.integers(min_value=0, max_value=7))
def test_random_messages_to_every_actor_are_answered_and_nothing_breaks(fuzz_cluster: dict[str, Any], message: Any, which: int) -> None:
    target = fuzz_cluster["targets"][which]
    if target is None:
        return
    try:
        target.ask(message, timeout=5).get()
    except AskTimeout:
        pytest.fail(f"{target} did not answer {message!r} within 5s")
    except (ActorError, Exception):
        pass  # an error answer is the right answer to nonsense


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frame=st.binary(max_size=300), seed_kind=st.sampled_from(sorted(registered_kinds())), flips=st.lists(st.integers(0, 255), max_size=4))
def test_mutated_frames_into_head_and_worker_endpoints_leave_them_serving(fuzz_cluster: dict[str, Any], frame: bytes, seed_kind: str, flips: list[int]) -> None:
    base = bytearray(msgpack.packb([1, seed_kind, 9, None, "ipc://fuzz", "controller", None, 1, [frame]]))
    for i, value in enumerate(flips):
        base[(i * 7919) % len(base)] = value
    ctx = zmq.Context()
    try:
        for address in (fuzz_cluster["head"], fuzz_cluster["worker"]):
            sock = ctx.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(address)
            sock.send(bytes(base))
            sock.send(frame)
            sock.close()
    finally:
        ctx.term()


@pytest.mark.parametrize(
    ("node_id", "address", "resources", "text"),
    [
        ("n1", "not an address", {"CPU": 1.0}, "address must be"),
        ("", "tcp://127.0.0.1:9", {"CPU": 1.0}, "node id must be"),
        ("n2", "tcp://127.0.0.1:9", {"CPU": -1.0}, "must be a number >= 0"),
        ("n3", "tcp://127.0.0.1:9", {"CPU": float("nan")}, "must be a number >= 0"),
    ],
)
def test_a_malformed_node_registration_is_refused_and_registers_nothing(
    fuzz_cluster: dict[str, Any], node_id: str, address: str, resources: dict[str, float], text: str
) -> None:
    from protocol import RegisterNode

    controller = fuzz_cluster["targets"][0]
    with pytest.raises(ValueError, match=text):
        controller.ask(RegisterNode(node_id, address, resources), timeout=5).get()
    assert [n.address for n in serve.status().nodes] == [fuzz_cluster["worker"]]


def test_after_the_fuzzing_the_cluster_still_serves(fuzz_cluster: dict[str, Any]) -> None:
    assert fuzz_cluster["handle"].remote(2).result(timeout_s=10) == "ok:2"
    status = serve.status()
    assert status.applications["fuzzed-app"].deployments["Echo"].replica_states == {"RUNNING": 1}
    assert [n.address for n in status.nodes] == [fuzz_cluster["worker"]], "no bogus node was registered"
