"""The base class of every corral actor: a pykka thread actor that can be
reached from other processes."""

from __future__ import annotations

import concurrent.futures
import contextvars
import queue
import time
import traceback
from typing import Any, Callable, Protocol

import pykka

from ._future import Future
from ._inline import SharedInbox
from ._ref import ActorRef
from ._request import Request, Respond


class ActorHost(Protocol):
    """What an actor uses of the :class:`~actors.ActorSystem` that spawned it."""

    address: str
    inline_budget_s: float

    def ref(self, address: str, name: str | None = None) -> ActorRef: ...

    def spawn(self, actor_class: type[Actor], *args: Any, name: str, **kwargs: Any) -> ActorRef: ...

    def stop(self, ref: ActorRef, timeout: float | None = None, wait: bool = True) -> bool: ...

    def watch(self, ref: ActorRef, callback: Callable[[ActorRef, str], None]) -> int: ...

    def unwatch(self, token: int) -> None: ...

    def serve_directly(self, name: str, kinds: tuple[type, ...], handler: Callable[[Request], None] | None) -> None: ...

    def hand_io_to(self, loop: Any) -> Any: ...

    def defer(self, work: Callable[[], None], elsewhere: Callable[[Callable[[], None]], None]) -> bool: ...

    def _note_expired(self, name: str) -> None: ...

    def _answer_leftovers(self, actor: Actor) -> None: ...

    def _actor_finished(self, actor: Actor, reason: str) -> None: ...


_spawning: contextvars.ContextVar[tuple[ActorHost, str]] = contextvars.ContextVar("corral_spawning")


class Actor(pykka.ThreadingActor):
    """Subclass this and implement :meth:`receive`; start it with
    :meth:`ActorSystem.spawn`.

    Pykka's rules hold: ``receive`` runs on the actor's own thread, one message
    at a time. For an ``ask`` the return value is the answer and an exception
    is sent back to the caller; for a ``tell`` an exception stops the actor
    (and its watchers are told).
    """

    system: ActorHost
    name: str

    # A process whose main thread ends must not wait behind actor threads: the
    # session's exit hook stops them in order, with a bound (see actors.serve).
    use_daemon_thread = True

    #: Asks from other processes may be answered on the thread that received them
    #: when the actor is idle, saving the wake-up of its own thread (``_inline.py``).
    #: Still one message at a time, in order; set it only on an actor whose
    #: ``receive`` does not depend on running on the actor's own thread. One
    #: that waits or runs long hands the sockets to a standby thread meanwhile.
    inline_asks: bool = False

    def __new__(cls, *args: Any, **kwargs: Any) -> Actor:
        try:
            system, name = _spawning.get()
        except LookupError:
            raise RuntimeError(f"start {cls.__name__} with ActorSystem.spawn(), not directly") from None
        obj = super().__new__(cls)
        obj.system = system
        obj.name = name
        obj._corral_failure = ""
        obj._corral_emit = None
        obj._corral_table = None
        return obj

    def _create_actor_inbox(self) -> Any:  # type: ignore[override]
        if not self.inline_asks:
            return queue.SimpleQueue()
        budget = self.system.inline_budget_s
        return SharedInbox(self, drain_s=budget / 4, slow_s=budget / 2)

    def _handle_receive(self, message: Any) -> Any:
        try:
            return super()._handle_receive(message)
        finally:
            if self.inline_asks:  # the shared inbox may now be served inline again
                self.actor_inbox.done()  # type: ignore[attr-defined]

    @property
    def ref(self) -> ActorRef:
        """A corral reference to this actor, usable from any process."""
        return self.system.ref(self.system.address, self.name)

    def handlers(self) -> dict[type, Callable[[Any], Any]]:
        """The actor's dispatch table: message type -> the method that handles it.

        Override this (or :meth:`receive`). A message of a type not in the table
        is refused with a ``TypeError`` that names it; an ask gets it as its answer.
        """
        return {}

    def receive(self, message: Any) -> Any:
        """Handle one message. Override this, or :meth:`handlers` for a dispatch table.

        Args:
            message: a msgpack value, or a registered protocol message instance.

        Returns:
            The answer, for an ``ask`` (a msgpack value or a protocol message).
            Returning a :class:`~actors.Future` or a ``concurrent.futures.Future``
            defers the answer until it completes, so the actor can take other
            messages meanwhile.
        """
        table = self._corral_table
        if table is None:
            table = self._corral_table = self.handlers()
            if not table:
                raise NotImplementedError(f"{type(self).__name__} implements neither handlers() nor receive()")
        handler = table.get(type(message))
        if handler is None:
            raise TypeError(f"{type(self).__name__} does not handle {type(message).__name__} messages")
        return handler(message)

    def current_emitter(self) -> Callable[[Any], None] | None:
        """Inside :meth:`receive` of a streaming ask (``ref.ask_stream``): a
        function that sends one item to the asker, usable from any thread until
        the final answer is given. None for other messages."""
        return self._corral_emit  # type: ignore[no-any-return]

    def on_receive(self, message: Any) -> Any:
        if type(message) is not Request:
            return self.receive(message)
        respond = message.respond
        deadline = message.deadline
        if deadline is not None and time.time() > deadline:
            self.system._note_expired(self.name)
            return None
        if respond is None:
            return self.receive(message.payload)
        self._corral_emit = message.emit
        try:
            value = self.receive(message.payload)
        except Exception as exc:
            respond(None, exc, traceback.format_exc())
            return None
        finally:
            self._corral_emit = None
        if isinstance(value, Future):
            value.add_done_callback(lambda done: _answer_from_future(respond, done))
        elif isinstance(value, concurrent.futures.Future):
            value.add_done_callback(lambda done: _answer_from_concurrent(respond, done))
        else:
            respond(value, None, "")
        return None

    def _handle_failure(self, *exc_info: Any) -> None:
        self._corral_failure = f"{exc_info[0].__name__}: {exc_info[1]}" if exc_info[0] else "failed"
        super()._handle_failure(*exc_info)

    def _actor_loop_teardown(self) -> None:
        self.system._answer_leftovers(self)
        super()._actor_loop_teardown()

    def _actor_loop(self) -> None:
        try:
            super()._actor_loop()
        finally:
            self.system._actor_finished(self, self._corral_failure or "stopped")


def _format(exc: BaseException) -> str:
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


def _answer_from_future(respond: Respond, done: Future[Any]) -> None:
    try:
        value = done.get(0)
    except Exception as exc:
        respond(None, exc, _format(exc))
        return
    respond(value, None, "")


def _answer_from_concurrent(respond: Respond, done: concurrent.futures.Future[Any]) -> None:
    if done.cancelled():
        # cancelled before it started: it never ran, so the asker may send it elsewhere
        from ._errors import MessageNotHandled

        respond(None, MessageNotHandled("the request was cancelled before it ran (the actor is stopping)"), "")
        return
    exc = done.exception()
    if exc is not None:
        respond(None, exc, _format(exc))
    else:
        respond(done.result(), None, "")


def spawning(system: ActorHost, name: str) -> contextvars.Token[tuple[ActorHost, str]]:
    """Mark that the next Actor constructed in this context belongs to ``system``."""
    return _spawning.set((system, name))


def done_spawning(token: contextvars.Token[tuple[ActorHost, str]]) -> None:
    """Undo :func:`spawning`."""
    _spawning.reset(token)
