"""What a replica knows about itself: ``serve.get_replica_context()``."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any


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
    gang_context: Any = None


_local = threading.local()


def set_replica_context(context: ReplicaContext | None) -> None:
    """Set the context for the calling thread."""
    _local.context = context


def get_replica_context() -> ReplicaContext:
    """The context of the replica whose code is running in this thread.

    Raises:
        RuntimeError: called outside a replica's constructor or methods.
    """
    context = getattr(_local, "context", None)
    if context is None:
        raise RuntimeError("serve.get_replica_context() may only be called inside a replica")
    return context
