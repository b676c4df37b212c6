"""The actor runtime across real OS processes and real ZeroMQ sockets."""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any, Callable

import pytest

from actors import ActorNotFound, ActorStopped, ActorSystem, AskTimeout, Config, RemoteError
from tests.conftest import Peer
from transport import PeerUnavailable, TransportConfig
from tests.helpers import child_pids, wait_for

PeerFactory = Callable[..., Peer]


def test_ask_reaches_an_actor_in_another_process_and_returns_its_answer(system: ActorSystem, peer: PeerFactory) -> None:
    host = peer()
    ref = system.ref(host.address, "echo")
    assert ref.ask({"nested": [1, 2.5, "x", b"\x00", None, True]}).get(timeout=10) == {
        "nested": [1, 2.5, "x", b"\x00", None, True]
    }


def test_a_remote_builtin_exception_is_raised_with_its_type_message_and_traceback(system: ActorSystem, peer: PeerFactory) -> None:
    ref = system.ref(peer().address, "echo")
    with pytest.raises(ValueError, match="not a number") as info:
        ref.ask({"raise": "ValueError", "text": "not a number"}).get(timeout=10)
    err = info.value
    assert isinstance(err, RemoteError)
    assert err.type_name == "ValueError"
    assert "raise_named" in err.remote_traceback and "helpers.py" in err.remote_traceback
    assert err.origin == str(ref)


def test_a_remote_user_defined_exception_keeps_its_qualified_type_name(system: ActorSystem, peer: PeerFactory) -> None:
    ref = system.ref(peer().address, "echo")
    with pytest.raises(RemoteError, match="mine") as info:
        ref.ask({"raise": "Custom", "text": "mine"}).get(timeout=10)
    assert info.value.type_name == "tests.helpers.CustomFailure"


def test_an_answer_that_cannot_be_encoded_is_reported_and_the_actor_keeps_serving(system: ActorSystem, peer: PeerFactory) -> None:
    ref = system.ref(peer().address, "echo")
    with pytest.raises(TypeError, match="answer of actor 'echo' cannot be encoded"):
        ref.ask({"unencodable": True}).get(timeout=10)
    assert ref.ask(5).get(timeout=10) == 5


def test_a_message_that_cannot_be_encoded_raises_type_error_at_the_call(system: ActorSystem, peer: PeerFactory) -> None:
    ref = system.ref(peer().address, "echo")
    with pytest.raises(TypeError, match="cannot encode message 'data'"):
        ref.ask(object())
    assert system.statistics().pending_asks == 0


def test_asking_an_unknown_actor_in_a_live_process_fails_fast(system: ActorSystem, peer: PeerFactory) -> None:
    ref = system.ref(peer().address, "nobody")
    started = time.monotonic()
    with pytest.raises(ActorNotFound, match="no actor named 'nobody'"):
        ref.ask(1).get(timeout=10)
    assert time.monotonic() - started < 2


def test_asking_an_address_where_no_process_listens_fails_fast(system: ActorSystem, tmp_path: object) -> None:
    ref = system.ref(f"ipc://{tmp_path}/nobody.sock", "echo")
    with pytest.raises((ActorStopped, PeerUnavailable), match="no process listens"):
        ref.ask(1).get(timeout=2)
    with pytest.raises(PeerUnavailable, match="found dead recently"):
        ref.ask(1)


def test_a_tcp_peer_that_never_answers_is_declared_dead_within_the_liveness_window(make_system: Callable[..., ActorSystem]) -> None:
    client = make_system(host="127.0.0.1")
    ref = client.ref("tcp://127.0.0.1:9", "echo")
    started = time.monotonic()
    # a refused connection is known at once; a silent one by the heartbeats
    with pytest.raises(ActorStopped, match="no heartbeat|nothing listens"):
        ref.ask(1, timeout=10).get()
    assert time.monotonic() - started < 0.05 * 6 + 1.0


def test_tells_from_two_sender_processes_arrive_in_each_senders_order(system: ActorSystem, peer: PeerFactory) -> None:
    target = peer({"rec": "tests.helpers:Recorder"})
    senders = [peer({"send": "tests.helpers:Sender"}) for _ in range(2)]
    rec = system.ref(target.address, "rec")
    futures = [
        system.ref(s.address, "send").ask({"to": str(rec), "tag": f"s{i}", "count": 500})
        for i, s in enumerate(senders)
    ]
    assert [f.get(timeout=20) for f in futures] == [500, 500]
    wait_for(lambda: len(rec.ask("dump").get(timeout=10)) == 1000, 20, "all 1000 tells to arrive")
    seen = rec.ask("dump").get(timeout=10)
    for tag in ("s0", "s1"):
        assert [seq for t, seq in seen if t == tag] == list(range(500))


def test_tells_from_many_threads_of_one_process_keep_each_threads_order(system: ActorSystem, peer: PeerFactory) -> None:
    # a sending thread writes to the socket itself when nothing waits in the hand-off queue and
    # hands off otherwise: both ways at once must never reorder one thread's messages
    rec = system.ref(peer({"rec": "tests.helpers:Recorder"}).address, "rec")
    rec.ask("dump").get(timeout=10)  # the connection is open: direct sends are possible from now on

    def send(tag: str) -> None:
        for seq in range(400):
            rec.tell([tag, seq])

    threads = [threading.Thread(target=send, args=(f"t{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    wait_for(lambda: len(rec.ask("dump").get(timeout=10)) == 1600, 20, "all 1600 tells to arrive")
    seen = rec.ask("dump").get(timeout=10)
    for i in range(4):
        assert [seq for t, seq in seen if t == f"t{i}"] == list(range(400))


def test_many_asks_in_flight_from_many_threads_all_get_their_own_answer(system: ActorSystem, peer: PeerFactory) -> None:
    ref = system.ref(peer().address, "echo")
    errors: list[BaseException] = []

    def worker(base: int) -> None:
        try:
            futures = [(i, ref.ask(base + i)) for i in range(300)]
            for i, future in futures:
                assert future.get(timeout=20) == base + i
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k * 1000,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []


def test_a_remote_ask_times_out_by_its_deadline(system: ActorSystem, peer: PeerFactory) -> None:
    ref = system.ref(peer({"sleepy": "tests.helpers:Sleeper"}).address, "sleepy")
    started = time.monotonic()
    with pytest.raises(AskTimeout):
        ref.ask(2.0, timeout=0.3).get()
    assert time.monotonic() - started < 1.5


def test_a_sigkilled_process_is_detected_and_its_actors_watchers_are_told(system: ActorSystem, peer: PeerFactory) -> None:
    host = peer({"echo": "tests.helpers:Echo", "sleepy": "tests.helpers:Sleeper"})
    echo = system.ref(host.address, "echo")
    assert echo.ask(1).get(timeout=10) == 1
    seen: list[str] = []
    system.watch(echo, lambda r, why: seen.append(why))
    in_flight = system.ref(host.address, "sleepy").ask(30)
    os.kill(host.pid, signal.SIGKILL)
    killed = time.monotonic()
    wait_for(lambda: seen, 5, "death notice")
    assert time.monotonic() - killed < 0.05 * 6 + 1.0
    assert "no heartbeat" in seen[0] or "nothing listens" in seen[0]
    with pytest.raises(ActorStopped, match="is gone"):
        in_flight.get(timeout=5)


def test_a_remote_actor_that_stops_is_reported_to_its_watcher(system: ActorSystem, peer: PeerFactory) -> None:
    host = peer()
    echo = system.ref(host.address, "echo")
    echo.ask(0).get(timeout=10)
    seen: list[str] = []
    system.watch(echo, lambda r, why: seen.append(why))
    wait_for(lambda: system.statistics().transport.peers_watched >= 1, 5, "the watch to be set up")
    echo.tell({"raise": "ValueError", "text": "die"})
    wait_for(lambda: seen, 5, "death notice")
    assert "ValueError: die" in seen[0]


def test_watching_an_unknown_remote_actor_is_answered_at_once(system: ActorSystem, peer: PeerFactory) -> None:
    seen: list[str] = []
    system.watch(system.ref(peer().address, "ghost"), lambda r, why: seen.append(why))
    wait_for(lambda: seen, 5, "death notice")
    assert "no actor named 'ghost'" in seen[0]


def test_a_clean_stop_is_seen_at_once_and_the_process_leaves_no_ipc_file(system: ActorSystem, peer: PeerFactory) -> None:
    host = peer()
    echo = system.ref(host.address, "echo")
    echo.ask(0).get(timeout=10)
    seen: list[str] = []
    system.watch(echo, lambda r, why: seen.append(why))
    wait_for(lambda: system.statistics().transport.peers_watched >= 1, 5, "the watch to be set up")
    assert host.stop(timeout=10) == 0
    wait_for(lambda: seen, 5, "death notice")
    assert not os.path.exists(host.address[len("ipc://"):])


def test_the_host_process_exits_when_its_parent_closes_the_pipe_and_leaves_no_children(peer: PeerFactory) -> None:
    host = peer()
    assert host.pid in child_pids()
    assert host.stop(timeout=10) == 0
    assert host.pid not in child_pids()


def test_a_peer_restarted_at_the_same_tcp_address_is_reachable_again(make_system: Callable[..., ActorSystem], peer: PeerFactory) -> None:
    client = make_system(host="127.0.0.1")
    first = peer(host="127.0.0.1")
    port = int(first.address.rsplit(":", 1)[1])
    ref = client.ref(first.address, "echo")
    assert ref.ask(1).get(timeout=10) == 1
    first.stop()
    wait_for(lambda: client.statistics().transport.peers_lost >= 1, 5, "the goodbye")
    second = peer(host="127.0.0.1", port=port)
    assert second.address == first.address
    assert wait_for(lambda: _try_ask(ref), 10, "the restarted peer to answer") == 2


def _try_ask(ref: object) -> int | None:
    try:
        return ref.ask(2, timeout=1).get()  # type: ignore[attr-defined, no-any-return]
    except (ActorStopped, PeerUnavailable, AskTimeout):
        return None


def test_corral_error_types_keep_their_class_across_processes_and_others_are_not_imported() -> None:
    import sys

    from actors._errors import rebuild_error
    from actors.serve import ReplicaDiedError
    from protocol import ErrorReply

    err = rebuild_error(ErrorReply("user", "actors.serve._errors.ReplicaDiedError", "replica r died", "tb"), "x#y")
    assert isinstance(err, ReplicaDiedError) and isinstance(err, RemoteError) and str(err) == "replica r died"
    sys.modules.pop("this_module_must_not_be_imported", None)
    other = rebuild_error(ErrorReply("user", "this_module_must_not_be_imported.Boom", "b", ""), "x#y")
    assert type(other) is RemoteError and "this_module_must_not_be_imported" not in sys.modules


def test_asks_pending_when_the_callers_own_system_shuts_down_say_so(peer: PeerFactory) -> None:
    from actors import ActorSystemShutDown
    from tests.conftest import fast_config

    caller = ActorSystem(fast_config())
    pending = caller.ref(peer({"sleepy": "tests.helpers:Sleeper"}).address, "sleepy").ask(2.0)
    caller.shutdown()
    with pytest.raises(ActorSystemShutDown, match="shut down before an answer came"):
        pending.get(timeout=5)


def test_a_peer_restarted_at_its_address_faster_than_the_liveness_window_is_seen_as_a_new_process(peer: PeerFactory) -> None:
    from scripts._cluster_files import free_port

    port = free_port()
    slow = {"heartbeat_interval_s": 0.05, "heartbeat_liveness": 200}  # silence alone would take 10 s to notice
    first = peer({"echo": "tests.helpers:Echo"}, host="127.0.0.1", port=port, **slow)
    caller = ActorSystem(Config(transport=TransportConfig(**slow), ask_timeout_s=10.0))
    try:
        ref = caller.ref(first.address, "echo")
        assert ref.ask("hi").get(5) == "hi"
        died = threading.Event()
        reasons: list[str] = []
        caller.watch(ref, lambda _ref, why: (reasons.append(why), died.set()))
        first.kill()
        second = peer({"echo": "tests.helpers:Echo"}, host="127.0.0.1", port=port, **slow)
        assert second.address == first.address
        assert died.wait(5), "the watcher was not told"
        # the old process's death is seen at once (refused reconnect) or by the new incarnation
        assert "restarted" in reasons[0] or "nothing listens" in reasons[0]
        assert wait_for(lambda: _ask_quietly(ref) == "again", 5, "the new process to answer")
    finally:
        caller.shutdown()


def _ask_quietly(ref: Any) -> Any:
    try:
        return ref.ask("again").get(1)
    except Exception:
        return None
