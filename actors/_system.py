"""One ActorSystem per process: local pykka actors, reachable by name from
other processes through the transport."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from typing import Any, Callable

import pykka

from protocol import ActorDied, CancelRequest, Envelope, Unwatch, Watch, encode_request
from transport import PEER_LEFT, PeerUnavailable, Transport, TransportClosed, check_endpoint

from ._actor import Actor, Request, done_spawning, spawning
from ._callbacks import (CreditSender, LocalEmitter, LocalResponder, Pending, RemoteEmitter, RemoteResponder,
                         SystemStatistics, answer_leftovers, unwrap, wrap)
from ._config import Config
from ._errors import ActorNotFound, ActorStopped, ActorSystemShutDown, MessageNotHandled, rebuild_error
from ._future import Future
from ._inline import SharedInbox
from ._ref import ActorRef
from ._replies import Replies
from ._watches import WatchBook
from ._pending import PendingAsks
from ._stream import Stream
from ._window import StreamWindow, StreamWindows

log = logging.getLogger("corral.actors")

WatchCallback = Callable[[ActorRef, str], None]
_SYSTEM_KINDS = frozenset({"watch", "unwatch", "actor_died", "stream_credit"})


class ActorSystem:
    """The actor runtime of one process.

    Creating it starts the transport's I/O thread and binds the endpoint;
    :meth:`shutdown` (or leaving a ``with`` block) stops every local actor and
    closes the transport.

    Args:
        config: settings; None uses the defaults.

    Raises:
        TransportError: the endpoint cannot be bound.
    """

    def __init__(self, config: Config | None = None) -> None:
        self.config = config or Config()
        self.inline_budget_s = self.config.transport.inline_budget_s  # what an actor with inline_asks may take
        self._actors: dict[str, pykka.ActorRef[Any]] = {}
        self._actors_lock = threading.Lock()
        self._pending = PendingAsks()
        self._ids = itertools.count(1)
        self._watches = WatchBook()
        self._peer_listeners: list[Callable[[str, str], None]] = []
        self._expired = 0
        self._closed = False
        self._lanes: dict[str, tuple[tuple[type, ...], Callable[[Request], None]]] = {}
        self._windows = StreamWindows(self.config.stream_window)  # streams produced here for other processes
        self._transport = Transport(self.config.transport, self._on_envelope, self._on_peer_down, self._on_tick)
        self.address = self._transport.start()
        self._replies = Replies(self.address, self._transport, self._windows)
        self.reader = self._transport.reader  # a thread waiting for an answer may read it itself (Future.read_with)
        self.accepts_pickle = self._transport.accepts_pickle  # pickled payloads are taken (CURVE or ipc)

    # ---- public API -----------------------------------------------------------------

    def spawn(self, actor_class: type[Actor], *args: Any, name: str, **kwargs: Any) -> ActorRef:
        """Start a local actor under a unique name.

        Args:
            actor_class: a subclass of :class:`Actor`.
            *args, **kwargs: passed to its constructor.
            name: the name other processes use to reach it.

        Returns:
            A reference to the new actor.

        Raises:
            ValueError: the name is empty, contains ``#``, or is taken.
            TypeError: ``actor_class`` is not an :class:`Actor` subclass.
            ActorStopped: the system is shut down.
        """
        if not (isinstance(actor_class, type) and issubclass(actor_class, Actor)):
            raise TypeError(f"spawn() needs a subclass of actors.Actor, got {actor_class!r}")
        if not isinstance(name, str) or not name or "#" in name:
            raise ValueError(f"actor name must be a non-empty string without '#', got {name!r}")
        with self._actors_lock:
            if self._closed:
                raise ActorStopped("the actor system is shut down")
            if name in self._actors:
                raise ValueError(f"an actor named {name!r} already runs in {self.address}")
            token = spawning(self, name)
            try:
                self._actors[name] = actor_class.start(*args, **kwargs)
            finally:
                done_spawning(token)
        return ActorRef(self, self.address, name)

    def ref(self, address: str, name: str | None = None) -> ActorRef:
        """A reference to an actor, local or remote. No message is sent.

        Args:
            address: the process address, or ``"<address>#<name>"`` with ``name`` None.
            name: the actor's name.

        Raises:
            ValueError: the address or name is malformed.
        """
        if name is None:
            address, sep, name = address.rpartition("#")
            if not sep:
                raise ValueError(f"expected '<address>#<name>', got {address!r}")
        check_endpoint(address)
        if not name:
            raise ValueError("actor name must be non-empty")
        return ActorRef(self, address, name)

    def stop(self, ref: ActorRef, timeout: float | None = None, wait: bool = True) -> bool:
        """Stop a local actor once it has handled the messages already in its inbox.

        Messages that arrive after the stop get an :class:`ActorStopped` error.

        Args:
            ref: the actor; it must live in this process.
            timeout: how long to wait for it; None uses ``Config.stop_timeout_s``.
            wait: False returns as soon as the stop is queued.

        Returns:
            True if it stopped (or the stop was queued), False if it was not running here.

        Raises:
            pykka.Timeout: it did not stop within ``timeout``.
        """
        with self._actors_lock:
            actor = self._actors.get(ref.name) if ref.address == self.address else None
        if actor is None:
            return False
        if not wait:
            actor.stop(block=False)
            return True
        return bool(actor.stop(block=True, timeout=timeout or self.config.stop_timeout_s))

    def watch(self, ref: ActorRef, callback: WatchCallback) -> int:
        """Call ``callback(ref, reason)`` once when the actor stops or its process dies.

        The callback runs on a runtime thread: it must be quick and not block.
        If the actor is already gone, it is called soon with the reason.

        Returns:
            A token for :meth:`unwatch`.
        """
        token = next(self._ids)
        key = (ref.address, ref.name)
        first = self._watches.add(token, key, callback)
        if ref.address == self.address:
            with self._actors_lock:
                alive = ref.name in self._actors
            if not alive:
                self._notify_watchers(key, f"no actor named {ref.name!r} runs here")
        elif first:
            try:
                self._transport.send(ref.address, self._envelope("watch", Watch(ref.name), ""))
                self._transport.watch(ref.address)
            except (PeerUnavailable, TransportClosed) as exc:
                self._notify_watchers(key, str(exc))
        return token

    def add_peer_listener(self, callback: Callable[[str, str], None]) -> None:
        """Call ``callback(address, reason)`` whenever a process this one talks to
        is found gone (its connection closed and nothing listens there, it said
        goodbye, or its heartbeats stopped). Runs on the I/O thread: it must be
        quick and must not block."""
        self._peer_listeners.append(callback)

    def unwatch(self, token: int) -> None:
        """Cancel a :meth:`watch`. Unknown tokens are ignored."""
        key = self._watches.remove(token)
        if key is not None and key[0] != self.address:
            try:
                self._transport.send(key[0], self._envelope("unwatch", Unwatch(key[1]), ""))
            except Exception as exc:  # the peer is gone: nothing to cancel there
                log.debug("unwatch of %s#%s not sent: %s", key[0], key[1], exc)

    def statistics(self) -> SystemStatistics:
        """A snapshot of the runtime's and the transport's counters."""
        return SystemStatistics(len(self._actors), len(self._pending), self._pending.timed_out, self._pending.late, self._replies.dropped,
                                self._expired, self._transport.statistics())

    def serve_directly(self, name: str, kinds: tuple[type, ...], handler: Callable[[Request], None] | None) -> None:
        """Hand asks of ``kinds`` for local actor ``name`` to ``handler`` on the thread they
        arrive on (the I/O thread, or a local asker's) instead of the actor's inbox: a thread
        hop less. It must not block and must answer each request; None removes it."""
        if handler is None:
            self._lanes.pop(name, None)
        else:
            self._lanes[name] = (kinds, handler)

    def defer(self, work: Callable[[], None], elsewhere: Callable[[Callable[[], None]], None]) -> bool:
        """From a handler on the I/O thread: run ``work`` there once this round is served, a
        thread hop less (:meth:`transport.Transport.defer`); False: run it yourself."""
        return self._transport.defer(work, elsewhere)

    def hand_io_to(self, loop: Any) -> Any:
        """Let asyncio ``loop``'s thread do this process's I/O (:meth:`transport.Transport.adopt`); call the
        returned driver's ``detach()`` on that loop before it stops. Raises RuntimeError if already handed."""
        return self._transport.adopt(loop)

    def shutdown(self, timeout: float | None = None) -> None:
        """Stop every local actor, fail every pending ask, close the transport.

        Idempotent. Remote watchers of local actors are told before the
        transport says goodbye.
        """
        with self._actors_lock:
            if self._closed:
                return
            self._closed = True
            actors = list(self._actors.values())
        per_actor = timeout or self.config.stop_timeout_s
        for actor in actors:
            try:
                actor.stop(block=True, timeout=per_actor)
            except pykka.Timeout:
                log.error("actor %s did not stop within %.1fs", actor, per_actor)
        self._transport.close()
        self._pending.fail_all(lambda: ActorSystemShutDown("the actor system shut down before an answer came"))

    def __enter__(self) -> ActorSystem:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    # ---- sending --------------------------------------------------------------------

    def _envelope(self, kind: str, body: Any, target: str) -> Envelope:
        return Envelope(kind, body, 0, None, self.address, target)

    def _tell(self, ref: ActorRef, message: Any) -> None:
        if ref.address == self.address:
            self._local(ref.name).tell(Request(message, None, None))
            return
        kind, body = wrap(message)
        self._transport.send(ref.address, Envelope(kind, body, 0, None, self.address, ref.name))

    def _ask(self, ref: ActorRef, message: Any, timeout: float | None, stream: bool = False, pickle: bool = False, into: Any = None) -> Any:
        timeout = self.config.ask_timeout_s if timeout is None else timeout
        msg_id = next(self._ids)
        future: Future[Any] | Stream[Any]
        if stream:
            future = into if into is not None else Stream(f"stream from {ref}", time.monotonic() + timeout, self._transport.is_io_thread)
        else:
            future = into if into is not None else Future(f"ask to {ref}", self._transport.is_io_thread)
        deadline = time.time() + timeout
        window = StreamWindow(self.config.stream_window, deadline) if stream and ref.address == self.address else None
        if stream or hasattr(into, "canceller"):  # a stream, or a sink that may cancel the ask later
            future.canceller = lambda: self._cancel(ref, msg_id, window)
        if stream and hasattr(future, "credit"):  # the consumer tells the producer what it took
            future.credit = window.credit if window is not None else CreditSender(self._replies.credit, ref.address, msg_id)
        if ref.address == self.address:
            self._ask_local(ref, message, future, timeout, msg_id, deadline, stream, window)
            return future
        if type(future) is Future:
            future.read_with(self.reader)  # its waiting thread may read the answer itself
        self._send_ask(ref, message, future, timeout, msg_id, deadline, stream, pickle)
        return future

    def _ask_local(self, ref: ActorRef, message: Any, future: Any, timeout: float, msg_id: int, deadline: float,
                   stream: bool = False, window: StreamWindow | None = None) -> None:
        actor = self._local(ref.name)
        self._register(msg_id, future, ref, timeout, stream)
        emit = LocalEmitter(self._pending.push, msg_id, window) if window is not None else None
        request = Request(message, LocalResponder(self._pending.settle, msg_id), deadline, emit, self.address, msg_id)
        lane = self._lanes.get(ref.name)
        try:
            (lane[1] if lane is not None and type(message) in lane[0] else actor.tell)(request)
        except pykka.ActorDeadError:
            self._pending.settle(msg_id, MessageNotHandled(f"actor {ref} stopped before handling the message"))

    def _ask_into(self, ref: ActorRef, message: Any, into: Any, timeout: float, pickle: bool) -> int:
        """:meth:`ActorRef.ask_into`: a plain ask whose sink is given (no Future, no canceller)."""
        msg_id, deadline = next(self._ids), time.time() + timeout
        if ref.address == self.address:
            self._ask_local(ref, message, into, timeout, msg_id, deadline)
        else:
            self._send_ask(ref, message, into, timeout, msg_id, deadline, False, pickle)
        return msg_id

    def _send_ask(self, ref: ActorRef, message: Any, future: Any, timeout: float, msg_id: int, deadline: float,
                  stream: bool, pickle: bool) -> None:
        kind, body = wrap(message)
        frame = encode_request(kind, body, msg_id, self.address, ref.name, deadline, stream, pickle)
        pending = self._register(msg_id, future, ref, timeout, stream)
        try:
            self._transport.send_frame(ref.address, frame, pending, queue=len(self._pending) > 1)  # (fails the ask if undeliverable)
        except Exception:
            self._pending.pop(msg_id)
            raise

    def _cancel(self, ref: ActorRef, msg_id: int, window: StreamWindow | None = None) -> None:
        """The asker gave up on ask ``msg_id``: forget it, and tell the actor if its lane takes cancels."""
        self._pending.pop(msg_id)
        if window is not None:
            window.close()
        if ref.address != self.address:
            try:
                self._transport.send(ref.address, Envelope("cancel", CancelRequest(msg_id), 0, None, self.address, ref.name))
            except Exception as exc:  # the replica's process is gone: nothing runs there any more
                log.debug("cancel of %s to %s not sent: %s", msg_id, ref, exc)
            return
        lane = self._lanes.get(ref.name)
        if lane is not None and CancelRequest in lane[0]:
            lane[1](Request(CancelRequest(msg_id), None, None, None, self.address, msg_id))

    def _local(self, name: str) -> pykka.ActorRef[Any]:
        actor = self._actors.get(name)
        if actor is None:
            raise ActorNotFound(f"no actor named {name!r} runs in {self.address}")
        return actor

    def _register(self, msg_id: int, future: Any, ref: ActorRef, timeout: float, stream: bool = False) -> Pending:
        stream = stream or isinstance(future, Stream)
        return self._pending.add(msg_id, Pending(future, ref.address, ref.name, stream, msg_id, self._pending.settle), timeout)

    # ---- I/O thread callbacks -------------------------------------------------------

    def _on_envelope(self, env: Envelope) -> None:
        corr = env.corr_id
        if corr is not None:
            if env.kind == "stream_item":
                if not self._pending.push(corr, env.body.value):
                    self._pending.late += 1
                return
            if env.kind != "error":  # the common case: one lookup
                self._pending.settle(corr, None, env.body.value if env.kind == "data" else env.body)  # (unwrap, inline: one per answer)
                return
            pending = self._pending.get(corr)
            where = f"{pending.address}#{pending.name}" if pending is not None else env.sender
            self._pending.settle(corr, rebuild_error(env.body, where))
            return
        if env.kind in _SYSTEM_KINDS and not env.target:
            self._on_system_message(env)
            return
        actor = self._actors.get(env.target)
        if actor is None:
            self._replies.error_to(env, "actor_not_found", "ActorNotFound", f"no actor named {env.target!r} runs in {self.address}")
            return
        respond = RemoteResponder(self._replies.respond, env.sender, env.msg_id, env.target, env.pickle) if env.wants_reply else None
        emit = None
        if env.stream and env.wants_reply:
            window = self._windows.open(env.sender, env.msg_id, env.deadline or time.time() + self.config.ask_timeout_s)
            emit = RemoteEmitter(self._replies.emit, env.sender, env.msg_id, window, env.pickle)
        elif env.kind == "cancel":
            self._windows.end(env.sender, env.body.msg_id, close=True)
        request = Request(unwrap(env), respond, env.deadline, emit, env.sender, env.msg_id)
        lane = self._lanes.get(env.target)
        if env.kind == "cancel" and not env.wants_reply and (lane is None or CancelRequest not in lane[0]):
            return  # the actor does not stop work it started: nothing to cancel
        try:
            if lane is not None and type(request.payload) in lane[0]:
                lane[1](request)
            elif not (type(actor.actor_inbox) is SharedInbox and actor.actor_inbox.offer(request, self._transport.defer)):
                actor.tell(request)
        except pykka.ActorDeadError:
            self._replies.error_to(env, "not_handled", "MessageNotHandled", f"actor {env.target!r} in {self.address} stopped before handling the message")

    def _on_system_message(self, env: Envelope) -> None:
        body = env.body
        if env.kind == "watch":
            with self._actors_lock:
                alive = body.actor in self._actors
            if alive:
                self._watches.add_remote(body.actor, env.sender)
                self._transport.watch(env.sender)
            else:
                self._send_died(env.sender, body.actor, f"no actor named {body.actor!r} runs in {self.address}")
        elif env.kind == "unwatch":
            self._watches.remove_remote(body.actor, env.sender)
        elif env.kind == "stream_credit":
            self._windows.credit(env.sender, body.msg_id, body.taken)
        else:
            self._notify_watchers((env.sender, body.actor), body.reason)

    def _on_peer_down(self, peer: str, reason: str) -> None:
        # a process that said goodbye answered everything it took first: what is left never ran
        gone = MessageNotHandled if reason == PEER_LEFT else ActorStopped
        self._pending.fail_peer(peer, lambda p: gone(f"process {peer} of actor {p.name!r} is gone: {reason}"))
        self._windows.close_peer(peer)
        keys = self._watches.keys_at(peer)
        self._watches.forget_peer(peer)
        for key in keys:
            self._notify_watchers(key, f"process {peer} is gone: {reason}")
        for listener in list(self._peer_listeners):
            try:
                listener(peer, reason)
            except Exception:
                log.exception("peer listener %r failed", listener)

    def _on_tick(self, _now: float) -> None:
        self._pending.expire(time.monotonic())

    # ---- actor life cycle (actor threads) -------------------------------------------

    def _note_expired(self, name: str) -> None:
        self._expired += 1  # no lock: a counter for statistics, off by one at worst

    def _answer_leftovers(self, actor: Actor) -> None:
        answer_leftovers(actor.actor_inbox, actor.name)

    def _actor_finished(self, actor: Actor, reason: str) -> None:
        self._lanes.pop(actor.name, None)
        with self._actors_lock:
            current = self._actors.get(actor.name)
            if current is not None and current.actor_class is type(actor) and not current.is_alive():
                del self._actors[actor.name]
        self._answer_leftovers(actor)
        remote = self._watches.take_remote(actor.name)
        for peer in remote:
            self._send_died(peer, actor.name, reason)
        self._notify_watchers((self.address, actor.name), reason)

    def _send_died(self, peer: str, name: str, reason: str) -> None:
        try:
            self._transport.send(peer, self._envelope("actor_died", ActorDied(name, reason), ""))
        except Exception as exc:
            log.debug("death notice for %s to %s not sent: %s", name, peer, exc)

    def _notify_watchers(self, key: tuple[str, str], reason: str) -> None:
        ref = ActorRef(self, key[0], key[1])
        for callback in self._watches.take(key):
            try:
                callback(ref, reason)
            except Exception:
                log.exception("watch callback for %s failed", ref)
