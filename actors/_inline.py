"""The inbox of an actor whose asks may be answered on the thread that received them.

An actor with ``inline_asks = True`` gets a :class:`SharedInbox` instead of
pykka's queue. It is still the actor's one ordered queue, but it has two
consumers that never run at once: the actor's own thread (pykka's loop,
through :meth:`SharedInbox.get` and :meth:`SharedInbox.done`) and the
transport's I/O thread, which may *reserve* the actor when it is idle (no
message queued, none being handled) and run one ask there after its round of
receiving, saving the wake-up of the actor's thread. Messages that come while
the actor is reserved queue behind the reserved one; the inline runner goes on
with the asks among them for a short while (``drain_s``), and wakes the
actor's thread only for what is left or for anything that is not a plain ask
(a tell, a stop, a pykka call, a streaming ask). Per-sender order and "one
message at a time" hold as with pykka's inbox.

An inline ask that ran longer than ``slow_s`` keeps the actor off the inline
path for ``_SLOW_FOR_S``: an actor with slow handlers costs a standby takeover
once, not every time.
"""

from __future__ import annotations

import collections
import queue
import threading
import time
from typing import Any, Callable, NamedTuple, Protocol

from transport import more_to_come

from ._request import Request
from ._errors import MessageNotHandled

_SLOW_FOR_S = 1.0


class InboxStatistics(NamedTuple):
    """A snapshot of a :class:`SharedInbox`."""

    queued: int
    inline_runs: int


class InlineActor(Protocol):
    """What the inbox needs of its actor."""

    actor_stopped: threading.Event

    def on_receive(self, message: Any) -> Any: ...


class _Envelope:
    """What pykka's ``ActorRef.tell`` would have queued (a message, no reply future)."""

    __slots__ = ("message", "reply_to")

    def __init__(self, message: Any) -> None:
        self.message = message
        self.reply_to = None


def is_plain_ask(envelope: Any) -> bool:
    """Whether a queued envelope is an ask the inline runner may answer: a
    corral request with an answer expected, not streaming, not a pykka call."""
    message = envelope.message
    return envelope.reply_to is None and type(message) is Request and message.respond is not None and message.emit is None


class SharedInbox:
    """One actor's ordered queue, served by its own thread or, when idle, inline.

    Args:
        actor: the actor whose messages it holds.
        drain_s: how long an inline run may go on with asks that queued behind it.
        slow_s: an inline ask that ran longer keeps the actor off the inline path for a second.
    """

    def __init__(self, actor: InlineActor, drain_s: float, slow_s: float) -> None:
        self._actor = actor
        self._drain_s = drain_s
        self._slow_s = slow_s
        self._items: collections.deque[Any] = collections.deque()
        self._lock = threading.Lock()  # entered directly: a Condition's own enter and exit are Python calls
        self._cond = threading.Condition(self._lock)
        self._busy = False  # a message is being handled (by the actor's thread or inline), or one is reserved
        self._slow_until = 0.0
        self.inline_runs = 0  # asks answered inline (for statistics and tests)

    # ---- pykka's face (any thread puts; the actor's thread gets) -------------------------

    def put(self, envelope: Any) -> None:
        """Queue a message (pykka's ``tell``/``ask``)."""
        with self._lock:
            self._items.append(envelope)
            if not self._busy:
                self._cond.notify()

    def get(self) -> Any:
        """The actor's thread: wait for the next message nobody else handles, and take it."""
        with self._lock:
            # a stopped actor's thread empties its queue without waiting (pykka's teardown)
            while not self._items or (self._busy and not self._actor.actor_stopped.is_set()):
                self._cond.wait()
            self._busy = True
            return self._items.popleft()

    def get_nowait(self) -> Any:
        """:meth:`get` without waiting.

        Raises:
            queue.Empty: nothing is queued, or a message is being handled (here or inline).
        """
        with self._lock:
            if not self._items or (self._busy and not self._actor.actor_stopped.is_set()):
                raise queue.Empty
            self._busy = True
            return self._items.popleft()

    def statistics(self) -> InboxStatistics:
        """How many messages are queued, and how many asks were answered inline so far."""
        return InboxStatistics(len(self._items), self.inline_runs)

    def empty(self) -> bool:
        """Whether nothing is queued."""
        return not self._items

    def done(self) -> None:
        """A message was handled: the next one may be taken, by the actor's thread or inline."""
        with self._lock:
            self._busy = False
            if self._items:
                self._cond.notify()

    # ---- the receiving thread ----------------------------------------------------------

    def offer(self, request: Request, defer: Callable[[Callable[[], None], Callable[[Any], None]], bool]) -> bool:
        """On the receiving thread: take an ask to run there after the round (``defer``,
        :meth:`transport.Transport.defer`) if the actor is idle.

        Returns:
            True when taken (it runs inline, or it was queued first for the actor's
            thread); False: queue it as usual.
        """
        if request.respond is None or request.emit is not None or not self.reserve():
            return False
        if not defer(lambda: self.run(request), lambda _: self.give_back(request)):
            self.give_back(request)  # not on an I/O thread (a loop drives the sockets): the actor's thread takes it
        return True

    def reserve(self) -> bool:
        """Reserve the actor for one ask run inline: True when it is idle, running, and not slow.
        The caller must then :meth:`run` or :meth:`give_back` the ask."""
        with self._lock:
            if self._busy or self._items or self._actor.actor_stopped.is_set() or time.monotonic() < self._slow_until:
                return False
            self._busy = True
            return True

    def give_back(self, request: Request) -> None:
        """A reserved ask will not run inline: it goes first in the queue, for the actor's thread."""
        with self._lock:
            self._items.appendleft(_Envelope(request))
            self._busy = False
            self._cond.notify()

    def run(self, request: Request) -> None:
        """Handle a reserved ask here, then the asks that queued behind it for up to ``drain_s``;
        then hand what is left to the actor's thread."""
        ends = time.monotonic() + self._drain_s
        while True:
            started = time.monotonic()
            try:
                if self._actor.actor_stopped.is_set():  # it failed meanwhile (a stop queues behind this ask)
                    assert request.respond is not None
                    request.respond(None, MessageNotHandled("the actor stopped before handling the message"), "")
                else:
                    more_to_come(bool(self._items))  # answers to asks queued behind this one leave together
                    self._actor.on_receive(request)
                    self.inline_runs += 1
            except BaseException:
                self.done()
                raise
            now = time.monotonic()
            if now - started > self._slow_s:
                self._slow_until = now + _SLOW_FOR_S
            with self._lock:
                if self._items and is_plain_ask(self._items[0]) and now < ends and now >= self._slow_until:
                    request = self._items.popleft().message
                    continue
                break
        self.done()
