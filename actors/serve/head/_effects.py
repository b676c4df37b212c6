"""What the control plane asks its actor shell to do: one small frozen class
per kind of effect. The shell carries them out and feeds the outcome back as
the event an effect names (``then``), completed with the answer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Ask:
    """Ask an actor; its answer (or error) comes back as ``then`` completed."""

    address: str
    actor: str
    message: Any
    timeout_s: float
    then: Any


@dataclass(frozen=True)
class Tell:
    """Send a message that takes no answer."""

    address: str
    actor: str
    message: Any


@dataclass(frozen=True)
class Publish:
    """Push a deployment's replica set to every subscribed process (``address#actor``)."""

    subscribers: tuple[str, ...]
    replica_set: Any


@dataclass(frozen=True)
class StartGang:
    """Start every member of a gang together (the gang coordinator's job).

    Attributes:
        members: ``(worker address, StartReplica)`` of each member.
    """

    gang_id: str
    members: tuple[tuple[str, Any], ...]
    timeout_s: float


@dataclass(frozen=True)
class StopGang:
    """Stop every member of a gang together; a member whose worker is gone has None."""

    gang_id: str
    members: tuple[tuple[str | None, Any], ...]
    timeout_s: float


@dataclass(frozen=True)
class Watch:
    """Tell the control plane ``then`` (completed with the reason) once the actor is gone.

    Attributes:
        key: names the watch for :class:`Unwatch` (None: never cancelled).
    """

    address: str
    actor: str
    then: Any
    key: str | None = None


@dataclass(frozen=True)
class Unwatch:
    """Cancel the watch named ``key``."""

    key: str


@dataclass(frozen=True)
class SaveCheckpoint:
    """Write the checkpoint; report it back as a CheckpointWritten event."""

    blob: bytes
    fingerprint: tuple[int, int]


@dataclass(frozen=True)
class ClearCheckpoint:
    """Remove the stored checkpoint and close the store (the cluster stops whole)."""
