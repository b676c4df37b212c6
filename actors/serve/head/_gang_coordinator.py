"""The GangCoordinator actor: starts and stops every member of a gang at once.

The decisions (which gang, which nodes, what to do when a member fails) are
the deployment state's, pure. The coordinator carries them out: it asks every
member's node agent, then tells the controller ``gang_started`` once all
members are ready (so the gang joins the serving set whole), or
``member_failed`` as soon as one member's start fails (so its siblings are torn
down at once), and ``stopped`` for each member it stopped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from protocol import StartReplica, StopReplica

from ..._actor import Actor
from ..._ref import ActorRef

COORDINATOR_NAME = "gang-coordinator"

# report(what, replica_id or gang_id, value, error)
Report = Callable[[str, str, Any, "str | None"], None]


@dataclass(frozen=True)
class StartGang:
    """Start every member: ``(node agent, StartReplica)`` by rank."""

    gang_id: str
    members: list[tuple[ActorRef, StartReplica]]
    timeout_s: float


@dataclass(frozen=True)
class StopGang:
    """Stop members: ``(node agent or None if its node is gone, StopReplica)``."""

    gang_id: str
    members: list[tuple[ActorRef | None, StopReplica]]
    timeout_s: float


@dataclass
class _Starting:
    members: list[str]
    reported: int = 0
    failed: bool = False
    answers: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class _MemberDone:
    gang_id: str
    replica_id: str
    error: str | None
    answer: Any = None


class GangCoordinator(Actor):
    """Fans out gang starts and stops and reports what happened.

    Args:
        report: how to tell the controller (called on this actor's thread).
        describe: turns a failed future's exception into the error text.
    """

    def __init__(self, report: Report, describe: Callable[[BaseException], str]) -> None:
        super().__init__()
        self.report = report
        self.describe = describe
        self.starting: dict[str, _Starting] = {}

    def handlers(self) -> dict[type, Callable[[Any], Any]]:
        return {StartGang: self._start_gang, StopGang: self._stop_gang, _MemberDone: self._member_done}

    def _start_gang(self, message: StartGang) -> None:
        self.starting[message.gang_id] = _Starting([start.replica_id for _, start in message.members])
        me = self.actor_ref
        for node, start in message.members:
            rid = start.replica_id
            try:
                future = node.ask(start, timeout=message.timeout_s)
            except Exception as exc:
                me.tell(_MemberDone(message.gang_id, rid, self.describe(exc)))
                continue
            future.add_done_callback(lambda done, rid=rid: _tell(me, _MemberDone(message.gang_id, rid, *self._outcome(done))))

    def _outcome(self, done: Any) -> tuple[str | None, Any]:
        try:
            return None, done.get(0)
        except Exception as exc:
            return self.describe(exc), None

    def _member_done(self, message: _MemberDone) -> None:
        gang = self.starting.get(message.gang_id)
        if message.error is not None:
            self.report("start", message.replica_id, None, message.error)
        if gang is None:
            return
        gang.reported += 1
        gang.failed = gang.failed or message.error is not None
        gang.answers[message.replica_id] = message.answer
        if gang.reported == len(gang.members):
            del self.starting[message.gang_id]
            if not gang.failed:
                self.report("gang_started", message.gang_id, {"members": list(gang.members), "answers": gang.answers}, None)

    def _stop_gang(self, message: StopGang) -> None:
        for node, stop in message.members:
            rid = stop.replica_id
            if node is None:
                self.report("stop", rid, None, None)
                continue
            try:
                future = node.ask(stop, timeout=message.timeout_s)
            except Exception:
                self.report("stop", rid, None, None)
                continue
            future.add_done_callback(lambda _done, rid=rid: self.report("stop", rid, None, None))


def _tell(ref: Any, message: Any) -> None:
    try:
        ref.tell(message)
    except Exception:
        pass  # the coordinator is stopping
