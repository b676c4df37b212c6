"""Health check messages: one replica asked, or every replica of a worker process at once."""

from __future__ import annotations

from dataclasses import dataclass

from ._schema import message


@message("health_check")
@dataclass(frozen=True, slots=True)
class HealthCheck:
    """Ask a replica whether it is healthy; answered with ``{"ongoing": n, "models": [...]}``."""


@message("health_checks")
@dataclass(frozen=True, slots=True)
class HealthChecks:
    """Ask a worker's node agent about several replicas its process hosts, in
    one message instead of one per replica.

    Attributes:
        actors: the replicas' actor names.
        timeout_s: how long each replica's ``check_health`` may take.

    Answered with one entry per name, in order: what :class:`HealthCheck`
    answers, or ``{"error": text}`` for a replica that failed its check,
    overran ``timeout_s`` or is not in that process.
    """

    actors: list[str]
    timeout_s: float
