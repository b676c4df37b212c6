"""A small renderer of ``deploy/kubernetes`` (what ``kubectl kustomize`` does
with the features that directory uses: resources, namespace, images,
replicas), for validating the manifests offline where no ``kubectl`` or
``helm`` binary can be installed."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume", "StorageClass"}


def render(folder: Path) -> list[dict[str, Any]]:
    """The manifests of a kustomization folder, transformed as kustomize would.

    Raises:
        ValueError: a kustomization field this renderer does not know.
    """
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    known = {"apiVersion", "kind", "namespace", "resources", "images", "replicas"}
    unknown = set(kustomization) - known
    if unknown:
        raise ValueError(f"kustomization fields this renderer does not apply: {sorted(unknown)}")
    docs = [d for name in kustomization.get("resources", []) for d in yaml.safe_load_all((folder / name).read_text()) if d]
    docs = copy.deepcopy(docs)
    namespace = kustomization.get("namespace")
    images = {i["name"]: f"{i.get('newName', i['name'])}:{i['newTag']}" if "newTag" in i else i.get("newName", i["name"])
              for i in kustomization.get("images", [])}
    counts = {r["name"]: r["count"] for r in kustomization.get("replicas", [])}
    for doc in docs:
        if namespace and doc["kind"] not in CLUSTER_SCOPED:
            doc["metadata"]["namespace"] = namespace
        if doc["kind"] in ("Deployment", "StatefulSet"):
            if doc["metadata"]["name"] in counts:
                doc["spec"]["replicas"] = counts[doc["metadata"]["name"]]
            for container in doc["spec"]["template"]["spec"]["containers"]:
                image = container["image"].split(":")[0]
                if image in images:
                    container["image"] = images[image]
    return docs
