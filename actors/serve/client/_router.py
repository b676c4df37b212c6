"""The client-side router: one per (process, deployment), shared by every
handle to that deployment in the process.

It tracks the requests it has in flight on each replica itself (no extra
round trip per request), picks replicas by power of two choices among those
under ``max_ongoing_requests``, queues the rest, and refuses beyond
``max_queued_requests``. Requests that certainly never ran (the replica was
stopping, gone, or unknown) are sent again elsewhere; requests in flight on a
replica that dies fail with :class:`ReplicaDiedError`.

The fast path runs in the caller's thread under a lock: an actor hop per
request would add a thread wake-up to every request's latency.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from protocol import HandleRequest, ReplicaInfo, ReplicaSet
from transport import PeerUnavailable

from ..._errors import (
    ActorNotFound,
    ActorStopped,
    ActorSystemShutDown,
    MessageNotHandled,
    RemoteError,
)
from .._errors import (
    BackPressureError,
    DeployFailedError,
    DeploymentNotFoundError,
    ReplicaDiedError,
)
from ._attempts import Attempt


class RouterHost(Protocol):
    """What a router uses of its process's session."""

    system: Any
    metrics: Any

    def register_metrics(self, source: Any) -> int: ...


_MAX_ATTEMPTS = 4
_random = random.Random().random  # one C call per draw (randrange and _randbelow run Python code)
_router_ids = itertools.count(1)
_MAX_MODEL_HOMES = 4096  # multiplexed model ids a router remembers the replicas of






@dataclass(frozen=True)
class RouterStatistics:
    """What a router holds now, and its counters.

    Attributes:
        queued: requests waiting at the handle for a free replica.
        in_flight: requests sent and not answered, by replica id.
        sent: requests sent (re-sends included).
        resent: requests sent again after a replica refused or vanished.
        rejected: requests refused with BackPressureError.
    """

    queued: int
    in_flight: dict[str, int]
    sent: int
    resent: int
    rejected: int


class Call:
    """One request travelling through a router; the response holds it.

    ``sink`` is completed exactly once: a Future-like (``set_result`` /
    ``set_exception``) for a plain call, a Stream for a streaming call.
    """

    __slots__ = ("request", "stream", "deadline", "tried", "attempts", "sink", "on_sent", "current")

    def __init__(self, request: HandleRequest, stream: bool, deadline: float, sink: Any, on_sent: Callable[[Any], None] | None = None) -> None:
        self.request = request
        self.stream = stream
        self.deadline = deadline
        self.tried: set[str] = set()
        self.attempts = 0
        self.sink = sink
        self.on_sent = on_sent
        self.current: Any = None  # the attempt in flight (an ``Attempt``): what a cancel stops


class Router:
    """Routes one deployment's requests from this process."""

    def __init__(self, session: RouterHost, app: str, deployment: str) -> None:
        self.session = session
        self.key = (app, deployment)
        self._lock = threading.Lock()
        self._replicas: list[ReplicaInfo] = []  # those requests may go to: published and not known dead
        self._published: list[ReplicaInfo] = []
        self._dead: set[str] = set()
        self._by_id: dict[str, ReplicaInfo] = {}
        self._refs: dict[str, Any] = {}
        self._version = -2
        self._exists = True
        self._failed = ""
        self.pickle = False
        self._known = False
        self._max_queued = -1
        self._in_flight: dict[str, int] = {}
        self._queue: deque[Call] = deque()
        self._model_homes: OrderedDict[str, set[str]] = OrderedDict()  # multiplexed model id -> replicas sent it
        self._sent = 0
        self._resent = 0
        self._rejected = 0
        self.handle_id = f"{session.system.address}/{next(_router_ids)}"
        session.register_metrics(self)

    # ---- membership (from the process's Membership actor) -------------------------------

    def update(self, replica_set: ReplicaSet) -> None:
        """Adopt a pushed replica set (older versions are ignored) and send what waits."""
        with self._lock:
            if replica_set.unchanged or self._known and replica_set.exists and self._exists and replica_set.version <= self._version:
                return
            self._known = True
            self._version = replica_set.version
            self._exists = replica_set.exists
            self._failed = replica_set.failed
            self.pickle = replica_set.pickle
            self._max_queued = replica_set.max_queued_requests
            self._published = list(replica_set.replicas)
            self._dead.clear()  # the controller's newer word: it published these again
            self._replicas = list(self._published)
            self._by_id = {r.replica_id: r for r in self._replicas}
            system = self.session.system
            self._refs = {
                r.replica_id: self._refs.get(r.replica_id) or system.ref(r.address, r.actor) for r in self._replicas
            }
            for gone in set(self._in_flight) - set(self._by_id):
                del self._in_flight[gone]
            for homes in self._model_homes.values():
                homes.intersection_update(self._by_id)
            if not self._exists or (self._failed and not self._replicas):
                doomed, self._queue = list(self._queue), deque()
            else:
                doomed = []
                for call in self._queue:
                    call.tried.clear()  # a new replica set: every replica gets a fresh chance
        for call in doomed:
            call.sink.set_exception(self._not_found() if not self._exists else self._deploy_failed())
        self._pump()

    def peer_down(self, address: str, reason: str) -> None:
        """The process at ``address`` is gone: its replicas take no more requests
        until the controller publishes them again (a newer replica set)."""
        with self._lock:
            gone = [r.replica_id for r in self._replicas if r.address == address]
            if not gone:
                return
            self._mark_dead(gone)
        self._pump()

    def _mark_dead(self, replica_ids: list[str]) -> None:
        self._dead.update(replica_ids)
        self._replicas = [r for r in self._published if r.replica_id not in self._dead]

    def _deploy_failed(self) -> DeployFailedError:
        return DeployFailedError(f"deployment {self.key[1]!r} of application {self.key[0]!r} is DEPLOY_FAILED: {self._failed}")

    def _not_found(self) -> DeploymentNotFoundError:
        return DeploymentNotFoundError(f"no deployment {self.key[1]!r} in application {self.key[0]!r}")

    # ---- requests --------------------------------------------------------------------

    def submit(self, call: Call) -> bool:
        """Send now, or queue at the handle.

        Returns:
            True when sent now, False when queued.

        Raises:
            BackPressureError: the queue is at ``max_queued_requests``.
            DeploymentNotFoundError: the deployment does not exist.
            TypeError: the request cannot be encoded (nothing was sent or queued).
        """
        with self._lock:
            if not self._exists:
                raise self._not_found()
            if self._failed and not self._replicas:
                raise self._deploy_failed()
            replica = self._pick(call)
            if replica is None:
                if self._max_queued != -1 and len(self._queue) >= self._max_queued:
                    self._rejected += 1
                    raise BackPressureError(
                        f"{len(self._queue)} requests already wait for deployment {self.key[1]!r} "
                        f"(max_queued_requests={self._max_queued})"
                    )
                self._queue.append(call)
                urgent = not self._replicas
            else:
                urgent = None
                self._reserve(replica, call)
        if urgent is None:
            self._send(replica, call, refuse_unencodable=True)  # type: ignore[arg-type]
            return True
        if urgent:
            self.session.metrics.push_now.set()  # scale from zero: tell the controller now
        return False

    def cancel(self, call: Call, error: BaseException) -> None:
        """Cancel a call: out of the queue if it waits there, else its attempt
        in flight is stopped at the replica; its sink gets ``error``."""
        with self._lock:
            queued = call in self._queue
            if queued:
                self._queue.remove(call)
        if queued:
            call.sink.set_exception(error)
            return
        current = call.current
        if current is not None:
            current.cancel(error)
        elif call.stream and not call.sink.done():
            call.sink.set_exception(error)

    def _pick(self, call: Call) -> ReplicaInfo | None:
        exclude = call.tried
        replicas = self._replicas
        in_flight = self._in_flight
        model_id = call.request.multiplexed_model_id
        if model_id:  # a replica that holds the model (it said so, or this router sent it there) and has room
            homes = self._model_homes.get(model_id, ())
            holders = [r for r in replicas if (model_id in r.model_ids or r.replica_id in homes)
                       and r.replica_id not in exclude and in_flight.get(r.replica_id, 0) < r.max_ongoing_requests]
            if holders:
                return min(holders, key=lambda r: in_flight.get(r.replica_id, 0))
        count = len(replicas)
        if count >= 2:
            i = int(_random() * count)
            j = int(_random() * (count - 1))
            a, b = replicas[i], replicas[j + (j >= i)]
            best = a if in_flight.get(a.replica_id, 0) <= in_flight.get(b.replica_id, 0) else b
            if in_flight.get(best.replica_id, 0) < best.max_ongoing_requests and best.replica_id not in exclude:
                return best
        free = [
            r for r in replicas
            if in_flight.get(r.replica_id, 0) < r.max_ongoing_requests and r.replica_id not in exclude
        ]
        if not free:
            return None
        return min(free, key=lambda r: in_flight.get(r.replica_id, 0))

    def _reserve(self, replica: ReplicaInfo, call: Call) -> None:
        self._in_flight[replica.replica_id] = self._in_flight.get(replica.replica_id, 0) + 1
        self._sent += 1
        model_id = call.request.multiplexed_model_id
        if model_id:  # it will hold the model: the next requests for it go there too
            self._model_homes.setdefault(model_id, set()).add(replica.replica_id)
            self._model_homes.move_to_end(model_id)
            if len(self._model_homes) > _MAX_MODEL_HOMES:
                self._model_homes.popitem(last=False)

    def _release(self, replica_id: str) -> None:
        left = self._in_flight.get(replica_id, 0) - 1
        if left > 0:
            self._in_flight[replica_id] = left
        else:
            self._in_flight.pop(replica_id, None)

    def _send(self, replica: ReplicaInfo, call: Call, refuse_unencodable: bool = False) -> None:
        """Send ``call`` to ``replica`` (reserved for it). A request that cannot be encoded
        fails its sink, or with ``refuse_unencodable`` (its caller is still in ``submit``)
        frees the reservation and raises the TypeError."""
        call.attempts += 1
        call.tried.add(replica.replica_id)
        ref = self._ref(replica)
        timeout = max(0.001, call.deadline - time.monotonic())
        try:
            if call.stream and call.on_sent is None:  # a sink that takes items itself: no Stream in between
                ref.ask_stream(call.request, timeout=timeout, pickle=self.pickle, into=Attempt(self, replica, call))
                return
            if call.stream:
                pending: Any = ref.ask_stream(call.request, timeout=timeout, pickle=self.pickle)
            else:  # the answer completes the call through the router: no Future of its own
                attempt = Attempt(self, replica, call)
                attempt.ask_id = ref.ask_into(call.request, attempt, timeout, self.pickle)
                return
        except TypeError as exc:
            if not refuse_unencodable:
                self._finished(replica, call, None, exc)
                return
            with self._lock:
                self._release(replica.replica_id)
                self._sent -= 1
            raise
        except Exception as exc:  # its process is gone (PeerUnavailable, ActorNotFound), or it could not be sent
            self._finished(replica, call, None, exc)
            return
        if call.stream and call.on_sent is not None:
            call.on_sent(pending)
        pending.add_done_callback(lambda done: self._on_done(replica, call, done))

    def cancel_ask(self, replica: ReplicaInfo, ask_id: int) -> None:
        """Give up on ask ``ask_id`` sent to ``replica``: the replica is told to stop it."""
        self._ref(replica).cancel_ask(ask_id)

    def _ref(self, replica: ReplicaInfo) -> Any:
        return self._refs.get(replica.replica_id) or self.session.system.ref(replica.address, replica.actor)

    def _on_done(self, replica: ReplicaInfo, call: Call, done: Any) -> None:
        self._finished(replica, call, done, done.error)

    def _finished(self, replica: ReplicaInfo, call: Call, value: Any, error: BaseException | None) -> None:
        if error is None and not call.stream:  # the common end, an answer: its slot is free and its sink done
            with self._lock:
                self._release(replica.replica_id)
            call.sink.set_result(value)
            if self._queue:
                self._pump()
            return
        with self._lock:
            self._release(replica.replica_id)
            if isinstance(error, PeerUnavailable) and replica.replica_id not in self._dead:
                self._mark_dead([replica.replica_id])  # its process was found gone: do not pick it again
        if error is not None and not_handled(error) and call.attempts < _MAX_ATTEMPTS and time.monotonic() < call.deadline:
            with self._lock:
                self._resent += 1
                self._queue.appendleft(call)
        elif call.stream:
            if error is not None:
                if not call.sink.done():
                    call.sink.set_exception(_explain(error, replica))
            elif call.on_sent is None:
                call.sink.finish()
        else:  # (a plain call's answer ended above)
            call.sink.set_exception(_explain(error, replica))  # type: ignore[arg-type]
        self._pump()

    def _pump(self) -> None:
        """Send queued requests while replicas have room."""
        # nothing queued: no lock (a call is queued under the lock, only after a pick that
        # found no room, so a slot freed before this look was seen by that pick)
        while self._queue:
            with self._lock:
                if not self._queue:
                    return
                call = self._queue[0]
                replica = self._pick(call)
                if replica is None:
                    return
                self._queue.popleft()
                self._reserve(replica, call)
            self._send(replica, call)

    def expire(self, now: float) -> None:
        """Fail queued requests whose deadline passed."""
        with self._lock:
            if not self._queue:
                return
            expired = [c for c in self._queue if c.deadline <= now]
            if not expired:
                return
            self._queue = deque(c for c in self._queue if c.deadline > now)
            why = self._why_waiting() or f": all {len(self._replicas)} replicas were busy (max_ongoing_requests)"
        for call in expired:
            call.sink.set_exception(
                TimeoutError(f"request to deployment {self.key[1]!r} waited at the handle past its deadline{why}")
            )

    def waiting_reason(self) -> str:
        """Why a request may wait here with no replica to go to ("" when there are replicas)."""
        with self._lock:
            return self._why_waiting()

    def _why_waiting(self) -> str:
        if self._replicas:
            return ""
        if self._dead:
            return (f": its {len(self._dead)} replicas' processes are gone and the controller has published "
                    "no replacement yet (is the controller running?)")
        if not self._known:
            return ": the controller never said which replicas it has (is the controller running?)"
        return ": the deployment has no running replica yet (see serve.status() or corral status)"

    def metrics_sample(self) -> tuple[Any, ...]:
        """What the metrics aggregator records: queued and in-flight requests."""
        with self._lock:
            waiting = bool(self._queue) and not self._replicas
            return ("handle", self.key[0], self.key[1], self.handle_id, len(self._queue), dict(self._in_flight), waiting)

    def statistics(self) -> RouterStatistics:
        """A snapshot of the queue, the in-flight counts and the counters."""
        with self._lock:
            return RouterStatistics(len(self._queue), dict(self._in_flight), self._sent, self._resent, self._rejected)

    def replicas(self) -> list[ReplicaInfo]:
        """The replicas requests go to now: the latest replica set pushed, less
        those whose process is known gone."""
        with self._lock:
            return list(self._replicas)

    @property
    def known(self) -> bool:
        """Whether a replica set has arrived yet."""
        return self._known

    @property
    def version(self) -> int:
        """The version of the replica set it holds (-2 before the first)."""
        return self._version


def not_handled(error: BaseException) -> bool:
    """Whether the request certainly did not run, so another replica may take it."""
    if isinstance(error, (ActorNotFound, MessageNotHandled, PeerUnavailable)):
        return True
    return isinstance(error, RemoteError) and error.type_name.endswith("ReplicaStoppingError")


def _explain(error: BaseException, replica: ReplicaInfo) -> BaseException:
    # a RemoteError is what the replica's own code raised (say, a call it made failed), not its death
    if isinstance(error, ActorStopped) and not isinstance(error, (MessageNotHandled, ActorSystemShutDown, RemoteError)):
        died = ReplicaDiedError(
            f"replica {replica.replica_id} of deployment {replica.deployment!r} died while handling the request: {error}"
        )
        died.__cause__ = error
        return died
    return error
