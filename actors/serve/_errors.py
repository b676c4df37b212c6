"""The serving layer's public error types, in one module every package may import.

They keep their class across processes (a replica's ``ReplicaStoppingError``
arrives as one in the caller), because ``actors`` rebuilds corral's own types.
"""

from __future__ import annotations


class BackPressureError(RuntimeError):
    """More requests wait at the handle than ``max_queued_requests`` allows."""


class ReplicaDiedError(RuntimeError):
    """The replica died while it was handling the request (it may have run in part)."""


class DeploymentNotFoundError(LookupError):
    """The application or deployment does not exist (or was deleted)."""


class DeployFailedError(RuntimeError):
    """An application ended in DEPLOY_FAILED; the message says why (the constructor's error)."""


class RequestCancelledError(RuntimeError):
    """The caller cancelled the request (``response.cancel()``, a closed HTTP
    connection); the replica was told to stop it."""


class ReplicaStoppingError(RuntimeError):
    """The replica is shutting down and takes no new requests (the caller may retry elsewhere)."""


class StoreError(Exception):
    """The checkpoint store cannot be opened, read or written; the message names it."""


class CheckpointError(Exception):
    """The controller cannot start from its store; the message says why and what to do."""
