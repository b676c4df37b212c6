"""What the controller knows of a replica, and the commands a deployment's
state asks the controller to carry out. Pure data."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from protocol import DeploymentSpec, ReplicaInfo


@dataclass
class ReplicaRecord:
    """What the controller knows of one replica."""

    replica_id: str
    node_id: str
    address: str
    version: str
    request: dict[str, float]
    user_config_version: int
    ongoing: int = 0
    load_fresh: bool = False  # ``ongoing`` came after the downscale that asks for it
    health_failures: int = 0
    health_in_flight: bool = False
    next_health_check: float = 0.0
    gang_id: str | None = None
    rank: int = 0
    recovered_from: str = ""  # while RECOVERING: the state the checkpoint had
    pid: int = 0
    rss_bytes: int = 0
    model_ids: list[str] = field(default_factory=list)  # multiplexed models it holds (its health checks tell)
    created_at: float = 0.0  # the controller's clock when it started it (0: adopted, unknown)
    _info: ReplicaInfo | None = field(default=None, repr=False, compare=False)

    def routing_info(self, app: str, deployment: str, max_ongoing: int) -> ReplicaInfo:
        """What routers are told of it: built once, and again after its address,
        its models or the deployment's cap changed (16,384 replicas: a set in ~5 ms, not ~40)."""
        info = self._info
        if info is None or info.address != self.address or info.max_ongoing_requests != max_ongoing or info.app != app:
            info = self._info = ReplicaInfo(self.replica_id, app, deployment, self.node_id, self.address, self.actor, max_ongoing,
                                            list(self.model_ids))
        return info

    def hold_models(self, models: Any) -> bool:
        """Take the model ids a health check told; True if they changed."""
        models = sorted(m for m in models if isinstance(m, str)) if isinstance(models, list) else self.model_ids
        changed, self.model_ids = models != self.model_ids, models
        if changed:
            self._info = None
        return changed

    def started_at(self, answer: Any) -> None:
        """Take a start answer: a replica process answers where it listens."""
        if isinstance(answer, dict):
            address = answer.get("address")
            if isinstance(address, str) and address:
                self.address = address
            pid = answer.get("pid")
            if isinstance(pid, int):
                self.pid = pid

    @property
    def actor(self) -> str:
        """The replica actor's name in its worker process."""
        return f"replica/{self.replica_id}"


@dataclass(frozen=True)
class StartReplicaCmd:
    replica: ReplicaRecord
    spec: DeploymentSpec
    gang: dict[str, Any] | None = None


@dataclass(frozen=True)
class StopReplicaCmd:
    replica: ReplicaRecord
    timeout_s: float


@dataclass(frozen=True)
class ReconfigureCmd:
    replica: ReplicaRecord
    user_config: Any
    user_config_version: int


@dataclass(frozen=True)
class HealthCheckCmd:
    replica: ReplicaRecord
    timeout_s: float


Command = StartReplicaCmd | StopReplicaCmd | ReconfigureCmd | HealthCheckCmd


__all__ = ["Command", "HealthCheckCmd", "ReconfigureCmd", "ReplicaRecord", "StartReplicaCmd", "StopReplicaCmd"]


@dataclass
class Limits:
    """Retry and health thresholds from ``ServeSettings``."""

    constructor_retries_per_replica: int
    max_constructor_retries: int
    health_check_failure_threshold: int


@dataclass
class Failures:
    """A deployment version's failed constructor runs."""

    count: int = 0
    last_error: str = ""
    retry_at: float = 0.0
    ever_ran: set[str] = field(default_factory=set)


def make_limits(constructor_retries_per_replica: int, max_constructor_retries: int, health_check_failure_threshold: int) -> Limits:
    """Bundle the thresholds a DeploymentState needs."""
    return Limits(constructor_retries_per_replica, max_constructor_retries, health_check_failure_threshold)
