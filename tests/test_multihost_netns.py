"""Two hosts on one machine: a worker in its own network namespace, with its
own address, joins a head over an encrypted TCP link; the link is cut and healed.

Needs root and iproute2 (as on these machines); skipped with a reason otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest

from scripts._cluster_files import cluster_dir, read_head
from tests.helpers import wait_for
from tests.test_cli import CORRAL, ENV, ROOT, free_port

SUBNET = 213  # 10.213.<n>.0/30: addresses that exist only inside the namespaces this test makes


def _sh(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=30)


@pytest.fixture
def two_hosts() -> Iterator[dict[str, str]]:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("network namespaces need root and iproute2")
    tag = f"{os.getpid() % 10000}"
    ns, outside, inside = f"corral-w{tag}", f"cw{tag}a", f"cw{tag}b"
    net = f"10.{SUBNET}.{os.getpid() % 250}"
    steps = [
        ("ip", "netns", "add", ns),
        ("ip", "link", "add", outside, "type", "veth", "peer", "name", inside),
        ("ip", "link", "set", inside, "netns", ns),
        ("ip", "addr", "add", f"{net}.1/30", "dev", outside),
        ("ip", "link", "set", outside, "up"),
        ("ip", "netns", "exec", ns, "ip", "addr", "add", f"{net}.2/30", "dev", inside),
        ("ip", "netns", "exec", ns, "ip", "link", "set", inside, "up"),
        ("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"),
    ]
    try:
        for step in steps:
            out = _sh(*step)
            if out.returncode != 0:
                pytest.skip(f"cannot make a network namespace here: {' '.join(step)}: {out.stderr.strip()}")
        yield {"ns": ns, "inside": inside, "head_ip": f"{net}.1", "worker_ip": f"{net}.2"}
    finally:
        _sh("ip", "link", "del", outside)
        _sh("ip", "netns", "del", ns)


def corral_in(ns: str | None, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    prefix = ["ip", "netns", "exec", ns] if ns else []
    return subprocess.run([*prefix, *CORRAL, *args], capture_output=True, text=True, timeout=timeout, env=ENV, cwd=ROOT)


def status(port: str) -> dict[str, Any]:
    out = corral_in(None, "status", "--json", "--port", port)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def test_a_worker_on_another_host_serves_is_cut_off_replaced_and_rejoins(two_hosts: dict[str, str], tmp_path: Path) -> None:
    port = str(free_port())
    try:
        out = corral_in(None, "start", "--workers", "1", "--port", port, "--host", two_hosts["head_ip"])
        assert out.returncode == 0, out.stderr
        address = read_head(int(port))["address"]  # type: ignore[index]
        assert address == f"tcp://{two_hosts['head_ip']}:{port}"
        keys = cluster_dir(int(port)) / "keys"
        out = corral_in(two_hosts["ns"], "start", "--join", address, "--keys", str(keys),
                        "--host", two_hosts["worker_ip"], "--resources", '{"CPU": 2}')
        assert out.returncode == 0, out.stderr
        nodes = {n["address"].split(":")[1].strip("/") for n in status(port)["nodes"]}
        assert nodes == {two_hosts["head_ip"], two_hosts["worker_ip"]}, "two hosts, each with its own address"

        (tmp_path / "app.yaml").write_text(
            "applications:\n  - name: across\n    import_path: tests.serve_apps:Echo\n"
            "    deployments:\n      - name: Echo\n        num_replicas: 2\n"
        )
        assert corral_in(None, "deploy", str(tmp_path / "app.yaml"), "--port", port).returncode == 0
        served_by = {json.loads(corral_in(None, "call", "across", "--method", "whoami", "--port", port).stdout)["node"]
                     for _ in range(30)}
        assert len(served_by) == 2, f"both hosts serve: {served_by}"

        cut = ("ip", "netns", "exec", two_hosts["ns"], "ip", "link", "set", two_hosts["inside"])
        _sh(*cut, "down")  # cut the worker's host off the network, from its side
        try:
            wait_for(lambda: len(status(port)["nodes"]) == 1
                     and status(port)["applications"]["across"]["deployments"]["Echo"]["replica_states"] == {"RUNNING": 2},
                     40, "the cut-off host to be given up and its replica replaced")
        finally:
            _sh(*cut, "up")  # heal
        wait_for(lambda: len(status(port)["nodes"]) == 2, 60, "the healed host to rejoin")
        data = status(port)
        assert data["applications"]["across"]["deployments"]["Echo"]["replica_states"] == {"RUNNING": 2}
        assert sum(n["replicas"] for n in data["nodes"]) == 2, "its stale replica was stopped, not counted twice"
    finally:
        corral_in(None, "stop", "--port", port)
