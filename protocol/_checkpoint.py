"""Record types of the controller's checkpoint: what it must remember across a restart.

The checkpoint is one msgpack document of these records, validated field by
field on the way back in, exactly like a message from the wire. These types
never travel between processes; they are registered here so they share the
wire's codec and its error messages (a corrupt checkpoint names the field).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack

from ._errors import InvalidField
from ._schema import decode_fields, encode_fields, message
from ._serve import DeploymentSpec

CHECKPOINT_FORMAT = 1


@message("checkpoint_replica")
@dataclass(frozen=True, slots=True)
class CheckpointReplica:
    """A replica the controller started.

    Attributes:
        state: its life-cycle state when the checkpoint was written.
        request: the resources it holds on its node (empty for gang members,
            whose resources are in their gang's reservation).
        address: where it takes requests (its own process's address, or its worker's).
        pid: its process id (0: not known yet).
    """

    replica_id: str
    node_id: str
    address: str
    version: str
    request: dict[str, float]
    user_config_version: int
    state: str
    gang_id: str | None = None
    rank: int = 0
    pid: int = 0


@message("checkpoint_reservation")
@dataclass(frozen=True, slots=True)
class CheckpointReservation:
    """Resources held for every member of a gang: one bundle per node, by rank."""

    name: str
    nodes: list[str]
    bundle: dict[str, float]
    addresses: list[str]


@message("checkpoint_gang")
@dataclass(frozen=True, slots=True)
class CheckpointGang:
    """A gang: its members by rank and the reservation they live in."""

    gang_id: str
    version: str
    members: list[str]
    ready: list[str]
    torn_down: bool
    reservation: CheckpointReservation


@message("checkpoint_deployment")
@dataclass(frozen=True, slots=True)
class CheckpointDeployment:
    """A deployment's desired state (spec and options) and what runs for it.

    Attributes:
        spec: what to run, as the wire carries it (a DeploymentSpec's fields).
        config: the validated options, with the current target replica count.
        failed_starts, last_error, ever_ran: the constructor failure book,
            so a DEPLOY_FAILED deployment stays failed across a restart.
    """

    spec: list[Any]
    config: dict[str, Any]
    deleting: bool
    user_config_version: int
    membership_version: int
    failed_starts: int
    last_error: str
    ever_ran: list[str]
    replicas: list[CheckpointReplica]
    gangs: list[CheckpointGang]


@message("checkpoint_app")
@dataclass(frozen=True, slots=True)
class CheckpointApp:
    name: str
    ingress: str
    deleting: bool
    deployments: list[CheckpointDeployment]
    route_prefix: str | None = None


@message("checkpoint_node")
@dataclass(frozen=True, slots=True)
class CheckpointNode:
    node_id: str
    address: str
    resources: dict[str, float]


@message("checkpoint_subscriber")
@dataclass(frozen=True, slots=True)
class CheckpointSubscriber:
    """A process's membership actor that gets a deployment's replica sets."""

    app: str
    deployment: str
    subscriber: str


@message("checkpoint")
@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Everything a restarted controller needs.

    Attributes:
        format: the layout's version (:data:`CHECKPOINT_FORMAT`).
        epoch: how many times the controller has been restarted from a
            checkpoint; replica-set versions grow with it, so handles take a
            restarted controller's pushes as the newest.
        written_at: wall-clock time of the write (seconds since the epoch).
    """

    format: int
    epoch: int
    written_at: float
    apps: list[CheckpointApp]
    nodes: list[CheckpointNode]
    reservations: list[CheckpointReservation]
    subscribers: list[CheckpointSubscriber]


class CorruptCheckpoint(ValueError):
    """Stored bytes are not a checkpoint this version can read; the message says why."""


def encode_checkpoint(checkpoint: Checkpoint) -> bytes:
    """The checkpoint as one msgpack document."""
    return msgpack.packb(encode_fields(checkpoint), use_bin_type=True)  # type: ignore[no-any-return]


def decode_checkpoint(blob: bytes) -> Checkpoint:
    """Read a checkpoint back, validating every field.

    Raises:
        CorruptCheckpoint: not msgpack, another format, or a field of the
            wrong type (the message names the field's path).
    """
    try:
        body = msgpack.unpackb(blob, raw=False, strict_map_key=True)
    except Exception as exc:
        raise CorruptCheckpoint(f"not a msgpack document ({type(exc).__name__}: {exc})") from None
    if type(body) is list and body and body[0] != CHECKPOINT_FORMAT and type(body[0]) is int:
        raise CorruptCheckpoint(f"format {body[0]} is not the format this version reads ({CHECKPOINT_FORMAT})")
    try:
        checkpoint = decode_fields(Checkpoint, body, "checkpoint")
        for app in checkpoint.apps:
            for deployment in app.deployments:
                decode_fields(DeploymentSpec, deployment.spec, f"checkpoint.apps[{app.name}].spec")
    except InvalidField as exc:
        raise CorruptCheckpoint(str(exc)) from None
    return checkpoint
