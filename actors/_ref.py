"""References to actors, local or in another process."""

from __future__ import annotations

from typing import Any, Protocol

from ._future import Future
from ._stream import Stream


class Sender(Protocol):
    """What a reference sends through: the process's :class:`~actors.ActorSystem`."""

    def _tell(self, ref: ActorRef, message: Any) -> None: ...

    def _ask(
        self, ref: ActorRef, message: Any, timeout: float | None, stream: bool = False, pickle: bool = False, into: Any = None
    ) -> Any: ...


class ActorRef:
    """Where to send messages for one named actor.

    Compare equal when address and name are equal. ``str(ref)`` is
    ``"<address>#<name>"``, accepted back by :meth:`ActorSystem.ref`.

    Attributes:
        address: the address of the actor's process.
        name: the actor's name in its process.
    """

    __slots__ = ("_system", "address", "name")

    def __init__(self, system: Sender, address: str, name: str) -> None:
        self._system = system
        self.address = address
        self.name = name

    def tell(self, message: Any) -> None:
        """Send a message and do not wait.

        Args:
            message: a msgpack value or a registered protocol message.

        Raises:
            TypeError: the message cannot be encoded.
            ActorNotFound: the target is local and does not exist.
            PeerUnavailable: the target's process is known to be dead.
        """
        self._system._tell(self, message)

    def ask(self, message: Any, timeout: float | None = None, pickle: bool = False, into: Any = None) -> Future[Any]:
        """Send a message and return a future of the answer.

        Args:
            message: a msgpack value or a registered protocol message.
            timeout: the request's deadline in seconds; the future fails with
                :class:`AskTimeout` after it. None uses ``Config.ask_timeout_s``.
            pickle: values with no codec in the message and in its answer may be
                pickled (the target's transport must accept pickles).
            into: complete this object's ``set_result``/``set_exception`` instead
                of a new Future (returned as is): one completion object per ask.
                They run on the thread that settles the ask and must not block.

        Raises:
            TypeError: the message cannot be encoded.
            ActorNotFound: the target is local and does not exist.
            PeerUnavailable: the target's process is known to be dead.
        """
        return self._system._ask(self, message, timeout, pickle=pickle, into=into)

    def ask_into(self, message: Any, into: Any, timeout: float, pickle: bool = False) -> int:
        """Send a message whose answer completes ``into``: the lean form of :meth:`ask`
        (no Future, no canceller) for a caller that keeps its own completion object.

        Args:
            message: a msgpack value or a registered protocol message.
            into: gets ``set_result(value)`` or ``set_exception(error)``, once, on the
                thread that settles the ask (they must not block).
            timeout: the request's deadline in seconds.
            pickle: as for :meth:`ask`.

        Returns:
            The ask's id: :meth:`cancel_ask` takes it.

        Raises:
            TypeError, ActorNotFound, PeerUnavailable: as for :meth:`ask` (nothing is left pending).
        """
        return self._system._ask_into(self, message, into, timeout, pickle)

    def cancel_ask(self, ask_id: int) -> None:
        """Give up on ask ``ask_id`` (from :meth:`ask_into`): its answer is dropped if it
        comes, and the target actor is told, so one that takes cancels stops the work."""
        self._system._cancel(self, ask_id)

    def ask_stream(self, message: Any, timeout: float | None = None, pickle: bool = False, into: Any = None) -> Stream[Any]:
        """Send a message whose handler answers with many items, then ends.

        The handler sends items with :meth:`Actor.current_emitter`; its final
        answer (or error) ends the stream. A final answer other than None is
        the stream's last item (one frame carries both), so a handler that
        produces a single item at once sends no separate end.
        :meth:`Stream.cancel` tells the handler's actor that the items are no
        longer wanted (an actor that serves ``CancelRequest`` on its direct
        lane stops the work).

        Args:
            message: a msgpack value or a registered protocol message.
            timeout: the whole stream's deadline; None uses ``Config.ask_timeout_s``.
            pickle: as for :meth:`ask`.
            into: instead of a new :class:`Stream`, push the items into this
                object (``push(item)``, ``finish(error=None)``, ``set_exception(error)``;
                the runtime sets its ``canceller``); it is returned.

        Raises:
            TypeError, ActorNotFound, PeerUnavailable: as for :meth:`ask`.
        """
        return self._system._ask(self, message, timeout, stream=True, pickle=pickle, into=into)  # type: ignore[no-any-return]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ActorRef) and (self.address, self.name) == (other.address, other.name)

    def __hash__(self) -> int:
        return hash((self.address, self.name))

    def __str__(self) -> str:
        return f"{self.address}#{self.name}"

    def __repr__(self) -> str:
        return f"ActorRef({str(self)!r})"
