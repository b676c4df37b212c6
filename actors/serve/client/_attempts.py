"""One attempt of a call at one replica: where the runtime puts its answer
(or its stream items), straight into the router, and what a cancel stops."""

from __future__ import annotations

from typing import Any, Callable

from protocol import ReplicaInfo


class Attempt:
    """The sink the actor system completes for one attempt: a plain call's
    answer (``set_result``/``set_exception``) or a stream's items (``push``)
    and end (``finish``). The end goes through the router, which frees the
    replica's slot and may send the request again if it never ran."""

    __slots__ = ("router", "replica", "call", "canceller", "ask_id", "ended")

    def __init__(self, router: Any, replica: ReplicaInfo, call: Any) -> None:
        self.router = router
        self.replica = replica
        self.call = call
        self.canceller: Callable[[], None] | None = None  # a stream's, set by the runtime: tells the replica to stop
        self.ask_id = 0  # a plain call's ask (``ActorRef.ask_into``), which a cancel gives up
        self.ended = False
        call.current = self

    @property
    def credit(self) -> Any:
        """How the runtime's stream credit reaches the sink that takes the items."""
        return getattr(self.call.sink, "credit", None)

    @credit.setter
    def credit(self, credit: Any) -> None:
        if hasattr(self.call.sink, "credit"):
            self.call.sink.credit = credit

    def push(self, item: Any) -> None:
        self.call.sink.push(item)

    def finish(self, error: BaseException | None = None, value: Any = None) -> bool:
        if self.ended:  # the end came, then a cancel (or the other way round): counted once
            return False
        self.ended = True
        call = self.call
        self.router._finished(self.replica, call, value, error)
        if call.current is self:  # no cycle left for the garbage collector (unless sent again: a new attempt)
            call.current = None
        return True

    def set_result(self, value: Any) -> bool:
        return self.finish(None, value)

    def set_exception(self, error: BaseException) -> bool:
        return self.finish(error)

    def cancel(self, error: BaseException) -> None:
        """Tell the replica to stop (an async method is cancelled, a generator
        closed) and free the slot now; sent even after the ask timed out here,
        since the replica may still be running it."""
        canceller, self.canceller = self.canceller, None
        if canceller is not None:
            canceller()
        elif self.ask_id:
            ask_id, self.ask_id = self.ask_id, 0
            self.router.cancel_ask(self.replica, ask_id)
        self.finish(error)
