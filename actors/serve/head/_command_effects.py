"""How a deployment's commands become the control plane's effects: starts and
stops go to node agents (a gang's together, through the gang coordinator),
reconfigures to the replicas. Health checks are held until the effects are
taken, then sent one per replica, or one per worker process for the replicas
it hosts together (thread mode). Pure: it only emits effects.
"""

from __future__ import annotations

from typing import Any

from protocol import HealthCheck, HealthChecks, Reconfigure, StartReplica, StopReplica

from .._names import NODE_ACTOR
from . import _effects as fx
from . import _events as ev
from ._commands import Command, HealthCheckCmd, ReconfigureCmd, StartReplicaCmd, StopReplicaCmd
from ._deployment_state import DeploymentState


class CommandEffects:
    """Carries out commands as effects, for one control plane (composed into it)."""

    def __init__(self, core: Any) -> None:
        self.core = core
        self._health: dict[tuple[str, float], list[HealthCheckCmd]] = {}  # by (address, timeout), until flushed

    def flush(self) -> None:
        """Send the health checks held since the last flush: a worker process
        that hosts several of the replicas is asked about them in one message."""
        held, self._health = self._health, {}
        for (address, timeout_s), cmds in held.items():
            node = self.core.nodes.get(cmds[0].replica.node_id)
            if len(cmds) == 1 or node is None or node.address != address:
                for cmd in cmds:
                    record = cmd.replica
                    self.core.emit(fx.Ask(address, record.actor, HealthCheck(), timeout_s, ev.HealthReplied(record.replica_id)))
                continue
            message = HealthChecks([cmd.replica.actor for cmd in cmds], timeout_s)
            then = ev.HealthBatchReplied(tuple(cmd.replica.replica_id for cmd in cmds))
            self.core.emit(fx.Ask(address, NODE_ACTOR, message, timeout_s + self.core.settings.control_timeout_s, then))

    def run(self, state: DeploymentState, cmds: list[Command]) -> None:
        """Turn a deployment's commands into effects; a gang's member starts and
        stops go to the gang coordinator together."""
        starts: dict[str, list[StartReplicaCmd]] = {}
        stops: dict[str, list[StopReplicaCmd]] = {}
        for cmd in cmds:
            gang_id = cmd.replica.gang_id
            if gang_id is not None and isinstance(cmd, StartReplicaCmd):
                starts.setdefault(gang_id, []).append(cmd)
            elif gang_id is not None and isinstance(cmd, StopReplicaCmd):
                stops.setdefault(gang_id, []).append(cmd)
            else:
                self._run_one(state, cmd)
        for gang_id, members in starts.items():
            sends = []
            for cmd in members:
                self.core.owner[cmd.replica.replica_id] = (state.app, state.name)
                node = self.core.nodes.get(cmd.replica.node_id)
                if node is None:
                    self.core.later(ev.StartReplied(cmd.replica.replica_id, None, f"worker {cmd.replica.node_id} is gone"))
                    continue
                sends.append((node.address, StartReplica(cmd.replica.replica_id, cmd.replica.node_id, cmd.spec, cmd.gang)))
            if sends:
                self.core.emit(fx.StartGang(gang_id, tuple(sends), self.core.settings.replica_start_timeout_s))
        for gang_id, stopping in stops.items():
            timeout = max(cmd.timeout_s for cmd in stopping)
            sends_stop = tuple(
                (getattr(self.core.nodes.get(cmd.replica.node_id), "address", None), StopReplica(cmd.replica.replica_id, cmd.timeout_s))
                for cmd in stopping
            )
            self.core.emit(fx.StopGang(gang_id, sends_stop, timeout + self.core.settings.control_timeout_s))

    def _run_one(self, state: DeploymentState, cmd: Command) -> None:
        record = cmd.replica
        rid = record.replica_id
        settings = self.core.settings
        if isinstance(cmd, StartReplicaCmd):
            self.core.owner[rid] = (state.app, state.name)
            node = self.core.nodes.get(record.node_id)
            if node is None:
                self.core.later(ev.StartReplied(rid, None, f"worker {record.node_id} is gone"))
                return
            message = StartReplica(rid, record.node_id, cmd.spec, cmd.gang)
            self.core.emit(fx.Ask(node.address, NODE_ACTOR, message, settings.replica_start_timeout_s, ev.StartReplied(rid)))
        elif isinstance(cmd, StopReplicaCmd):
            node = self.core.nodes.get(record.node_id)
            if node is None:
                self.core.later(ev.StopReplied(rid))
                return
            message_stop = StopReplica(rid, cmd.timeout_s)
            self.core.emit(fx.Ask(node.address, NODE_ACTOR, message_stop, cmd.timeout_s + settings.control_timeout_s, ev.StopReplied(rid)))
        elif isinstance(cmd, HealthCheckCmd):
            self._health.setdefault((record.address, cmd.timeout_s), []).append(cmd)
        elif isinstance(cmd, ReconfigureCmd):
            then = ev.Reconfigured(rid, cmd.user_config_version)
            self.core.emit(fx.Ask(record.address, record.actor, Reconfigure(cmd.user_config), settings.control_timeout_s, then))
