"""The node agent: starts and stops Replica actors in its worker process."""

from __future__ import annotations

from typing import Any, Callable

from protocol import ListReplicas, StartReplica, StopReplica

from .._actor import Actor
from .._future import Future
from .._ref import ActorRef
from ._context import GangContext, ReplicaContext
from ._replica import Replica, drain_message


class NodeAgent(Actor):
    """One per worker process, named ``"node"``.

    Args:
        node_id: this worker's id.
        resolve_args: turns handle markers in replica arguments into handles.
    """

    def __init__(self, node_id: str, resolve_args: Callable[[Any], Any]) -> None:
        super().__init__()
        self.node_id = node_id
        self.resolve_args = resolve_args
        self.replicas: dict[str, ActorRef] = {}

    def receive(self, message: Any) -> Any:
        if type(message) is StartReplica:
            return self._start_replica(message)
        if type(message) is StopReplica:
            return self._stop_replica(message)
        if type(message) is ListReplicas:
            return sorted(self.replicas)
        if isinstance(message, tuple) and message[0] == "forget":
            self.replicas.pop(message[1], None)
            return None
        raise TypeError(f"node agent got an unexpected message {type(message).__name__}")

    def _start_replica(self, message: StartReplica) -> Future[bool]:
        spec = message.spec
        gang = GangContext(**message.gang) if message.gang else None
        context = ReplicaContext(message.replica_id, spec.name, spec.app, self.node_id, gang)
        ready: Future[bool] = Future(f"start of replica {message.replica_id}")
        ref = self.system.spawn(Replica, spec, context, ready, self.resolve_args, name=f"replica/{message.replica_id}")
        self.replicas[message.replica_id] = ref
        me = self.actor_ref
        self.system.watch(ref, lambda _ref, _why: _tell_quietly(me, ("forget", message.replica_id)))
        return ready

    def _stop_replica(self, message: StopReplica) -> Any:
        ref = self.replicas.get(message.replica_id)
        if ref is None:
            return "not running"
        stopped: Future[str] = Future(f"stop of replica {message.replica_id}")
        self.system.watch(ref, lambda _ref, why: stopped.set_result("stopped"))
        try:
            ref.tell(drain_message(message.timeout_s))
        except Exception:
            stopped.set_result("stopped")
        return stopped


def _tell_quietly(ref: Any, message: Any) -> None:
    try:
        ref.tell(message)
    except Exception:
        pass  # the node agent itself is stopping
