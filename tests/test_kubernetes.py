"""The Kubernetes manifests (deploy/kubernetes), rendered offline and checked
against the Kubernetes API schemas (kubernetes-validate, no cluster needed);
and, where a cluster is reachable, applied to it."""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from scripts._kustomize import render

FOLDER = Path(__file__).resolve().parent.parent / "deploy" / "kubernetes"


def by_kind(docs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def test_every_rendered_manifest_is_valid_against_the_kubernetes_schemas() -> None:
    docs = render(FOLDER)
    assert {d["kind"] for d in docs} == {"Namespace", "Service", "StatefulSet", "Deployment"}
    version = kubernetes_validate.latest_version()
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)


def test_workers_join_the_heads_headless_service_and_declare_the_resources_they_request() -> None:
    docs = by_kind(render(FOLDER))
    service = docs[("Service", "corral-head")]
    assert service["spec"]["clusterIP"] == "None", "the name resolves to the head pod's own address"
    worker = docs[("Deployment", "corral-worker")]
    assert worker["spec"]["replicas"] == 2 and worker["metadata"]["namespace"] == "corral"
    [container] = worker["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    assert args[args.index("--join") + 1] == "tcp://corral-head:6390"
    declared = json.loads(args[args.index("--resources") + 1])
    requests = container["resources"]["requests"]
    assert declared["CPU"] == float(requests["cpu"]) and declared["memory"] == 4 * 2**30 and requests["memory"] == "4Gi"
    assert container["image"] == "corral:latest" and "livenessProbe" not in container, "a head restart must not restart workers"
    head = docs[("StatefulSet", "corral-head")]
    probes = head["spec"]["template"]["spec"]["containers"][0]
    assert probes["readinessProbe"]["exec"]["command"][:2] == ["corral", "health"]
    assert head["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "state"


def test_a_manifest_that_breaks_the_schema_is_caught() -> None:
    worker = by_kind(render(FOLDER))[("Deployment", "corral-worker")]
    worker["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(worker, kubernetes_validate.latest_version(), strict=True)


@functools.lru_cache(maxsize=1)
def _cluster() -> str | None:
    """Why no cluster can be used here, or None when one answers (asked once)."""
    if shutil.which("kubectl") is None:
        return "no kubectl here"
    try:
        done = subprocess.run(["kubectl", "cluster-info", "--request-timeout=5s"], capture_output=True, text=True, timeout=15)
    except subprocess.TimeoutExpired:
        return "no Kubernetes cluster is reachable"
    return None if done.returncode == 0 else "no Kubernetes cluster is reachable"


@pytest.mark.skipif(_cluster() is not None, reason=_cluster() or "")
def test_the_manifests_roll_out_on_a_real_cluster() -> None:  # pragma: no cover - needs a cluster
    subprocess.run(["kubectl", "apply", "-k", str(FOLDER)], check=True, timeout=120)
    try:
        for what in ("statefulset/corral-head", "deployment/corral-worker"):
            subprocess.run(["kubectl", "-n", "corral", "rollout", "status", what, "--timeout=300s"], check=True, timeout=330)
    finally:
        subprocess.run(["kubectl", "delete", "-k", str(FOLDER), "--wait=false"], timeout=120)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="no kubectl here: the Python renderer is checked alone")
def test_the_python_renderer_gives_what_kubectl_kustomize_gives() -> None:
    import yaml

    out = subprocess.run(["kubectl", "kustomize", str(FOLDER)], capture_output=True, text=True, timeout=60, check=True).stdout
    kubectl = by_kind([d for d in yaml.safe_load_all(out) if d])
    ours = by_kind(render(FOLDER))
    assert kubectl.keys() == ours.keys()
    for key, doc in ours.items():
        assert doc == kubectl[key], f"{key} differs"
