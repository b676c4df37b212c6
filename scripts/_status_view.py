"""What ``corral status`` prints, as rich tables: where the cluster is, the
controller's recovery, applications and deployments (messages in full),
routes and proxies, replicas (``-v``), nodes and gangs. Columns are separated
by spaces (no box), so the output reads the same in a terminal, a pipe or a
test."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

_STYLES = {"HEALTHY": "green", "RUNNING": "green", "ALIVE": "green", "UNHEALTHY": "red", "DEPLOY_FAILED": "red",
           "DEAD": "red", "UPDATING": "yellow", "UPSCALING": "yellow", "DOWNSCALING": "yellow", "DEPLOYING": "yellow",
           "STARTING": "yellow", "STOPPING": "yellow", "RECOVERING": "yellow"}


def _table(*columns: str, wrap: tuple[str, ...] = ()) -> Table:
    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold", padding=(0, 2, 0, 0))
    for name in columns:
        table.add_column(name, no_wrap=name not in wrap, overflow="fold")
    return table


def _state(value: str) -> Text:
    return Text(value, style=_STYLES.get(value, ""))


def _amounts(name: str, free: float, total: float) -> str:
    if name == "memory":
        return f"memory {free / 2**30:.1f}/{total / 2**30:.1f} GiB"
    return f"{name} {free:g}/{total:g}"


def render(status: Any, recovery: dict[str, Any], links: dict[str, str], restarts: dict[str, int], verbose: bool) -> Group:
    """Everything ``corral status`` shows, as one renderable."""
    parts: list[Any] = []
    where = _table("", "")
    for name, value in links.items():
        where.add_row(f"{name}:", value)
    parts += [where, ""]
    if recovery["recovering_workers"]:
        parts += [f"the controller is recovering: waiting for {', '.join(recovery['recovering_workers'])} to say what they run", ""]
    elif recovery["epoch"]:
        parts += [f"the controller was restarted {recovery['epoch']} time(s); it recovered in {recovery['recovery_s']:.2f}s: "
                  f"{recovery['adopted']} replicas re-adopted, {recovery['dropped']} replaced, "
                  f"{recovery['unknown_stopped']} unknown stopped", ""]
    apps = _table("APP", "DEPLOYMENT", "APP STATUS", "STATUS", "REPLICAS", "MESSAGE", wrap=("MESSAGE",))
    for name, app in sorted(status.applications.items()):
        for dname, d in sorted(app.deployments.items()):
            replicas = " ".join(f"{k}={v}" for k, v in sorted(d.replica_states.items())) or "-"
            reason = f" [autoscaling: {d.autoscaling.get('reason', '')}]" if d.autoscaling else ""
            apps.add_row(name, dname, _state(app.status), _state(d.status), f"{replicas} (target {d.target_replicas})",
                         d.message + reason)
    parts.append(apps)
    routes = [(app.route_prefix, name) for name, app in status.applications.items() if app.route_prefix is not None]
    if routes or status.proxies:
        table = _table("ROUTE", "APP")
        for prefix, name in sorted(routes):
            table.add_row(prefix, name)
        proxies = _table("PROXY", "NODE", "PID", "REQUESTS")
        for p in status.proxies:
            proxies.add_row(p.url, p.node_id, str(p.pid), str(p.requests))
        parts += ["", table, "", proxies]
    if verbose:
        table = _table("REPLICA", "STATE", "NODE", "PID", "MEMORY", "MODE", "MODELS")
        for _, app in sorted(status.applications.items()):
            for _, d in sorted(app.deployments.items()):
                for r in sorted(d.replicas, key=lambda r: r.replica_id):
                    table.add_row(r.replica_id, _state(r.state), r.node_id, str(r.pid or "-"),
                                  f"{r.rss_bytes / 2**20:.0f} MiB" if r.rss_bytes else "-", r.isolation, ",".join(r.model_ids) or "-")
        parts += ["", table]
    nodes = _table("NODE", "ADDRESS", "REPLICAS", "RESOURCES (free / total)", "RESTARTS")
    for n in status.nodes:
        nodes.add_row(n.node_id, n.address, str(n.replicas),
                      ", ".join(_amounts(k, n.available.get(k, 0), v) for k, v in sorted(n.total.items())),
                      str(restarts.get(n.node_id, "-")))
    parts += ["", nodes]
    if status.reservations:
        gangs = _table("GANG", "DEPLOYMENT", "NODES", "BUNDLE")
        for r in status.reservations:
            gangs.add_row(r.gang_id, f"{r.app}/{r.deployment}", ",".join(r.nodes), json.dumps(r.bundle))
        parts += ["", gangs]
    return Group(*parts)
