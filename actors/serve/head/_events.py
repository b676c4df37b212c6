"""What happens to the control plane: one small frozen class per kind of event.

The Controller actor turns messages, answers and deaths into these and hands
them to :class:`ControlPlane` (pure), which answers with effects
(``_effects.py``). Answers to the control plane's own asks arrive as the
event the ask named, completed with ``value`` and ``error``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from protocol import DeleteApp, DeployApp, MetricsPush, NodeHello, RegisterNode, SubscribeReplicas


@dataclass(frozen=True)
class Tick:
    """The reconcile loop's period passed."""


@dataclass(frozen=True)
class Deploy:
    """Create or update an application (answered "ok", or raises naming what is wrong)."""

    request: DeployApp


@dataclass(frozen=True)
class Delete:
    """Delete an application (answered "deleting" or "not found")."""

    request: DeleteApp


@dataclass(frozen=True)
class Register:
    """A worker registers (answered with its node id)."""

    request: RegisterNode


@dataclass(frozen=True)
class Hello:
    """A worker's periodic hello (answered with what it must stop)."""

    request: NodeHello


@dataclass(frozen=True)
class Subscribe:
    """A process subscribes to a deployment's replica set (answered with the set)."""

    request: SubscribeReplicas


@dataclass(frozen=True)
class MetricsPushed:
    """A process's metrics aggregator pushed its batch."""

    push: MetricsPush


@dataclass(frozen=True)
class StatusAsked:
    """``serve.status()`` (answered with a ServeStatusInfo); ``app``: that application only;
    ``replicas``: with a row per replica."""

    app: str | None = None
    replicas: bool = True


@dataclass(frozen=True)
class StatsAsked:
    """The controller's counters (answered with a dict)."""


@dataclass(frozen=True)
class ClearAsked:
    """An orderly stop of the whole cluster: remove the checkpoint, write none."""


@dataclass(frozen=True)
class StartReplied:
    """A worker answered StartReplica (the constructor returned or raised)."""

    replica_id: str
    value: Any = None
    error: str | None = None


@dataclass(frozen=True)
class GangStarted:
    """Every member of a gang started (reported by the gang coordinator);
    ``answers`` holds each member's start answer (its process's address)."""

    members: tuple[str, ...]
    answers: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StopReplied:
    """A replica stopped (or its worker is gone)."""

    replica_id: str
    value: Any = None
    error: str | None = None


@dataclass(frozen=True)
class HealthReplied:
    """A replica answered its health check (``value`` holds its load)."""

    replica_id: str
    value: Any = None
    error: str | None = None


@dataclass(frozen=True)
class HealthBatchReplied:
    """A worker answered the health checks of several of its replicas at once
    (``value``: one entry per replica id, in order; ``error``: none could be asked)."""

    replica_ids: tuple[str, ...]
    value: Any = None
    error: str | None = None


def health_replies(batch: HealthBatchReplied) -> list[HealthReplied]:
    """Each replica's answer in a batch; an answer of the wrong shape fails every check in it, saying so."""
    n = len(batch.replica_ids)
    entries = batch.value
    if batch.error is None and not (isinstance(entries, list) and len(entries) == n):
        shape = f"{len(entries)} entries" if isinstance(entries, list) else f"a {type(entries).__name__}"
        batch = HealthBatchReplied(batch.replica_ids, None, f"ProtocolError: the worker answered {shape} for {n} health checks")
    if batch.error is not None:
        return [HealthReplied(rid, None, batch.error) for rid in batch.replica_ids]
    out = []
    for rid, entry in zip(batch.replica_ids, entries):
        if not isinstance(entry, dict):
            out.append(HealthReplied(rid, None, f"ProtocolError: a health answer is a {type(entry).__name__}, not a map"))
        elif "error" in entry:
            out.append(HealthReplied(rid, None, str(entry["error"])))
        else:
            out.append(HealthReplied(rid, entry))
    return out


@dataclass(frozen=True)
class Reconfigured:
    """A replica answered Reconfigure for one ``user_config`` version."""

    replica_id: str
    version: int
    value: Any = None
    error: str | None = None


@dataclass(frozen=True)
class InventoryReplied:
    """After a restart, a worker said which replicas it runs; ``gone``: its
    address refuses connections (it died while the controller was down)."""

    node_id: str
    value: Any = None
    error: str | None = None
    gone: bool = False


@dataclass(frozen=True)
class NodeRecovered:
    """After a restart, a worker's inventory, as one deployment sees it."""

    node_id: str
    running: frozenset[str]
    starting: frozenset[str]


@dataclass(frozen=True)
class CheckpointWritten:
    """The shell wrote (or failed to write) the checkpoint a SaveCheckpoint effect carried."""

    fingerprint: tuple[int, int]
    size: int
    ms: float
    error: str | None = None


@dataclass(frozen=True)
class NodeDied:
    """A worker's process is gone."""

    node_id: str
    reason: str = ""


@dataclass(frozen=True)
class ReplicaDied:
    """A replica's actor or process is gone."""

    replica_id: str
    reason: str = ""


@dataclass(frozen=True)
class SubscriberDied:
    """A subscribed process is gone."""

    subscriber: str
    reason: str = ""
