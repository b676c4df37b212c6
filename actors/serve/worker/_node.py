"""The node agent: starts and stops Replica actors in its worker process."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

from protocol import ListReplicas, NodeHello, RegisterNode, StartReplica, StopReplica

from ..._actor import Actor
from ..._future import Future
from ..._ref import ActorRef
from ..._ticker import Ticker
from .._context import GangContext, ReplicaContext
from ..client._session import Session
from ._replica import Replica, drain_message

log = logging.getLogger("corral.serve")


class _Hello:
    """Time to say hello to the controller."""


@dataclass(frozen=True)
class _HelloAnswer:
    """The controller answered a hello (None: it could not be asked)."""

    answer: Any


@dataclass(frozen=True)
class _Forget:
    """A replica's actor stopped: forget it."""

    replica_id: str


class NodeAgent(Actor):
    """One per worker process, named ``"node"``.

    Once per ``hello_interval_s`` it tells the controller which replicas it
    runs. Replicas the controller does not know (replaced while this worker
    was cut off) are stopped; if the controller does not know this worker any
    more, every replica is stopped and the worker registers again, so nothing
    is counted twice.

    Args:
        node_id: this worker's id.
        session: this process's session: its replicas' handles and metrics go through it.
        controller: the controller (None: no hellos).
        resources: what this worker declared, for registering again.
        hello_interval_s: time between hellos.
    """

    def __init__(
        self,
        node_id: str,
        session: Session,
        controller: ActorRef | None = None,
        resources: dict[str, float] | None = None,
        hello_interval_s: float = 5.0,
    ) -> None:
        super().__init__()
        self.node_id = node_id
        self.session = session
        self.controller = controller
        self.resources = dict(resources or {})
        self.hello_interval_s = hello_interval_s
        self.replicas: dict[str, ActorRef] = {}
        self.ready: dict[str, Future[bool]] = {}
        self._ticker: Ticker | None = None
        self._hello_pending = False

    def on_start(self) -> None:
        if self.controller is not None:
            self._ticker = Ticker(self.actor_ref, _Hello, self.hello_interval_s, "node-hello").start()

    def on_stop(self) -> None:
        if self._ticker is not None:
            self._ticker.stop()

    def on_failure(self, *exc_info: Any) -> None:
        self.on_stop()

    def handlers(self) -> dict[type, Callable[[Any], Any]]:
        return {
            _Hello: self._on_hello_due,
            _HelloAnswer: lambda m: self._on_hello_answer(m.answer),
            StartReplica: self._start_replica,
            StopReplica: self._stop_replica,
            ListReplicas: self._list_replicas,
            _Forget: self._forget,
        }

    def _on_hello_due(self, _message: _Hello) -> None:
        if self._ticker is not None:
            self._ticker.handled()
        self._say_hello()

    def _list_replicas(self, message: ListReplicas) -> Any:
        if message.states:
            return {rid: "running" if self._is_ready(rid) else "starting" for rid in self.replicas}
        return sorted(self.replicas)

    def _forget(self, message: _Forget) -> None:
        self.replicas.pop(message.replica_id, None)
        self.ready.pop(message.replica_id, None)

    def _say_hello(self) -> None:
        if self._hello_pending or self.controller is None:
            return
        me = self.actor_ref
        try:
            future = self.controller.ask(NodeHello(self.node_id, self.system.address, sorted(self.replicas)), timeout=self.hello_interval_s)
        except Exception as exc:  # the controller is unreachable now: try again next time
            log.debug("hello to the controller not sent: %s", exc)
            return
        self._hello_pending = True

        def answered(done: Future[Any]) -> None:
            try:
                answer = done.get(0)
            except Exception:
                answer = None
            _tell_quietly(me, _HelloAnswer(answer))

        future.add_done_callback(answered)

    def _on_hello_answer(self, answer: Any) -> None:
        self._hello_pending = False
        if not isinstance(answer, dict):
            return
        if answer.get("known"):
            stale = [rid for rid in answer.get("stop", []) if rid in self.replicas]
        else:
            stale = list(self.replicas)
        for rid in stale:
            log.warning("stopping replica %s: the controller replaced it while this worker was cut off", rid)
            self.ready.pop(rid, None)
            self.system.stop(self.replicas.pop(rid), wait=False)
        if not answer.get("known") and self.controller is not None:
            log.warning("worker %s was given up by the controller: registering again", self.node_id)
            try:
                self.controller.ask(RegisterNode(self.node_id, self.system.address, self.resources), timeout=self.hello_interval_s)
            except Exception as exc:
                log.debug("registering again failed, the next hello retries: %s", exc)

    def _is_ready(self, replica_id: str) -> bool:
        ready = self.ready.get(replica_id)
        if ready is None or not ready.done():
            return False
        try:
            return bool(ready.get(0))
        except Exception:
            return False

    def _start_replica(self, message: StartReplica) -> Future[bool]:
        if message.replica_id in self.replicas:
            # asked again (by a controller that restarted): answer from the replica we have
            return self.ready[message.replica_id]
        spec = message.spec
        gang = GangContext(**message.gang) if message.gang else None
        context = ReplicaContext(message.replica_id, spec.name, spec.app, self.node_id, gang)
        ready: Future[bool] = Future(f"start of replica {message.replica_id}")
        ref = self.system.spawn(Replica, spec, context, ready, self.session, name=f"replica/{message.replica_id}")
        self.replicas[message.replica_id] = ref
        self.ready[message.replica_id] = ready
        me = self.actor_ref
        self.system.watch(ref, lambda _ref, _why: _tell_quietly(me, _Forget(message.replica_id)))
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
