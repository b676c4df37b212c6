"""What a replica knows about itself: ``serve.get_replica_context()``."""

from __future__ import annotations

import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class GangContext:
    """The gang a replica belongs to.

    Attributes:
        gang_id: the gang's id (shared by its members).
        rank: this member's rank, 0 .. world_size - 1.
        world_size: members in the gang.
        member_replica_ids: every member's replica id, by rank.
        reservation_name: the resource reservation the gang holds.
    """

    gang_id: str
    rank: int
    world_size: int
    member_replica_ids: list[str]
    reservation_name: str


@dataclass(frozen=True)
class ReplicaContext:
    """The identity of the replica running the current code.

    Attributes:
        replica_id: unique id of the replica.
        deployment: the deployment's name.
        app_name: the application's name.
        node_id: the worker process the replica runs in.
        gang_context: the gang it belongs to, or None (no gang scheduling).
    """

    replica_id: str
    deployment: str
    app_name: str
    node_id: str
    gang_context: GangContext | None = None


_local = threading.local()


def set_replica_context(context: ReplicaContext | None) -> None:
    """Set the context for the calling thread."""
    _local.context = context


def swap_replica_context(context: ReplicaContext | None) -> ReplicaContext | None:
    """Set the context for the calling thread; returns the one it had (a sync
    method run on the thread that received it sets its replica's, then restores)."""
    previous = getattr(_local, "context", None)
    _local.context = context
    return previous


def get_replica_context() -> ReplicaContext:
    """The context of the replica whose code is running in this thread.

    Raises:
        RuntimeError: called outside a replica's constructor or methods.
    """
    context = getattr(_local, "context", None)
    if context is None:
        raise RuntimeError("serve.get_replica_context() may only be called inside a replica")
    return context
