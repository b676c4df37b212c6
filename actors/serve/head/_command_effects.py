"""How a deployment's commands become the control plane's effects: starts and
stops go to node agents (a gang's together, through the gang coordinator),
health checks and reconfigures to the replicas. Pure: it only emits effects.
"""

from __future__ import annotations

from typing import Any

from protocol import HealthCheck, Reconfigure, StartReplica, StopReplica

from .._names import NODE_ACTOR
from . import _effects as fx
from . import _events as ev
from ._commands import Command, HealthCheckCmd, ReconfigureCmd, StartReplicaCmd, StopReplicaCmd
from ._deployment_state import DeploymentState


class CommandEffects:
    """Carries out commands as effects, for one control plane (composed into it)."""

    def __init__(self, core: Any) -> None:
        self.core = core

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
            self.core.emit(fx.Ask(record.address, record.actor, HealthCheck(), cmd.timeout_s, ev.HealthReplied(rid)))
        elif isinstance(cmd, ReconfigureCmd):
            then = ev.Reconfigured(rid, cmd.user_config_version)
            self.core.emit(fx.Ask(record.address, record.actor, Reconfigure(cmd.user_config), settings.control_timeout_s, then))
