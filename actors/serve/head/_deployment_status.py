"""A deployment's status and message in Ray Serve's words. Pure: no I/O."""

from __future__ import annotations

from typing import Any

from ._replica_states import LIVE_STATES, ReplicaState

S = ReplicaState


def deployment_status(state: Any) -> tuple[str, str]:
    """A deployment's ``(status, message)`` in Ray Serve's vocabulary."""
    target = state.config.num_replicas
    version = state.spec.version
    serving = state._serving_by_version[version]
    if state.failed:
        unit = " (counting gangs)" if state.config.gang() is not None else ""
        return "DEPLOY_FAILED", (
            f"the constructor of {state.name} failed {state._failures.count} times{unit}; "
            f"last error: {state._failures.last_error}"
        )
    waiting = f"; {state._waiting}" if state._waiting else ""
    if state.replicas.count(LIVE_STATES) != state._live_by_version[version] or state._to_reconfigure or state.replicas.count([S.UPDATING]):
        return "UPDATING", f"updating to version {version}: {serving} of {target} replicas updated{waiting}"
    if serving < target:
        if state._transition == "up":
            return "UPSCALING", f"upscaling from {state._previous_target} to {target} replicas: {serving} running{waiting}"
        if state._transition == "deploy":
            retry = f"; {state._failures.count} failed starts, last: {state._failures.last_error}" if state._failures.count else ""
            return "UPDATING", f"deploying: {serving} of {target} replicas running{waiting}{retry}"
        return "UNHEALTHY", f"{serving} of {target} replicas running; {state._note or 'replacing lost replicas'}{waiting}"
    if state.replicas.count(LIVE_STATES) > target or (state._transition == "down" and state.replicas.count([S.STOPPING])):
        return "DOWNSCALING", f"downscaling from {state._previous_target} to {target} replicas{waiting}"
    return "HEALTHY", ""
