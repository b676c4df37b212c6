"""How a worker process is started: its command line and its resources argument.

Kept apart from :mod:`actors.serve.worker` so that nothing in the package
imports the module that ``python -m`` runs (which made runpy warn).
"""

from __future__ import annotations

import json
import os

import psutil


def parse_resources(text: str) -> dict[str, float]:
    """Parse a JSON object of resource amounts; ``CPU`` defaults to this
    machine's cores and ``memory`` to its physical memory in bytes.

    Raises:
        ValueError: not a JSON object of non-negative numbers.
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--resources must be a JSON object: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"--resources must be a JSON object, got {data!r}")
    out: dict[str, float] = {}
    for name, amount in data.items():
        if isinstance(amount, bool) or not isinstance(amount, (int, float)) or amount < 0:
            raise ValueError(f"--resources: {name!r} must be a number >= 0, got {amount!r}")
        out[str(name)] = float(amount)
    out.setdefault("CPU", float(os.cpu_count() or 1))
    out.setdefault("memory", float(psutil.virtual_memory().total))
    return out


def worker_args(
    controller: str, node_id: str, resources: str, config: str, ready_file: str | None = None, detached: bool = False,
    log_dir: str | None = None,
    log_file: str | None = None,
) -> list[str]:
    """The arguments (after the interpreter) that start a worker process.

    Args:
        controller: the controller's reference, ``ADDRESS#controller``.
        node_id: the worker's id.
        resources: a JSON object of resource amounts.
        config: a :func:`config_to_json` document.
        ready_file: where it writes its address once registered.
        detached: run until SIGTERM instead of until standard input closes.
        log_dir: where its replica processes' logs go, one file each.
        log_file: the file its standard error goes to (kept bounded).
    """
    args = ["-m", "actors.serve.worker", "--controller", controller, "--node-id", node_id,
            "--resources", resources, "--config", config]
    if detached:
        args.append("--detached")
    if ready_file:
        args += ["--ready-file", ready_file]
    if log_dir:
        args += ["--log-dir", log_dir]
    if log_file:
        args += ["--log-file", log_file]
    return args
