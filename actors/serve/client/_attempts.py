"""One attempt of a call at one replica: where the runtime puts its answer
(or its stream items), straight into the router, and what a cancel stops."""

from __future__ import annotations

from typing import Any, Callable

from protocol import ReplicaInfo


class Answer:
    """Where the actor system puts a request's answer: straight into the router."""

    __slots__ = ("router", "replica", "call", "canceller", "ended")

    def __init__(self, router: Any, replica: ReplicaInfo, call: Any) -> None:
        self.router = router
        self.replica = replica
        self.call = call
        self.canceller: Callable[[], None] | None = None
        self.ended = False
        call.current = self

    def set_result(self, value: Any) -> None:
        if not self.ended:
            self.ended = True
            self.router._finished(self.replica, self.call, value, None)

    def set_exception(self, error: BaseException) -> None:
        if not self.ended:
            self.ended = True
            self.router._finished(self.replica, self.call, None, error)

    def cancel(self, error: BaseException) -> None:
        """Tell the replica to stop the request (an async method is cancelled), and free its slot now."""
        canceller, self.canceller = self.canceller, None
        if canceller is not None and not self.ended:
            canceller()
        self.set_exception(error)


class StreamAnswer:
    """Where the actor system puts one attempt's stream items: straight into
    the call's sink; the stream's end goes through the router (which may send
    the request again if it never ran)."""

    __slots__ = ("router", "replica", "call", "canceller", "ended")

    def __init__(self, router: Any, replica: ReplicaInfo, call: Any) -> None:
        self.router = router
        self.replica = replica
        self.call = call
        self.canceller: Callable[[], None] | None = None
        self.ended = False
        call.current = self

    def push(self, item: Any) -> None:
        self.call.sink.push(item)

    def finish(self, error: BaseException | None = None) -> bool:
        if self.ended:  # the end came, then a cancel (or the other way round): counted once
            return False
        self.ended = True
        self.router._finished(self.replica, self.call, None, error)
        return True

    def set_exception(self, error: BaseException) -> bool:
        return self.finish(error)

    def cancel(self, error: BaseException) -> None:
        """Tell the replica to stop (a generator is closed), and free the in-flight slot now."""
        canceller, self.canceller = self.canceller, None
        if canceller is not None:  # even after the ask timed out here: the replica may still run it
            canceller()
        self.finish(error)
