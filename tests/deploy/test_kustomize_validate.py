"""Every kustomize overlay renders and validates offline against the Kubernetes schemas."""

from __future__ import annotations

import pytest


def test_there_are_cpu_gpu_and_dev_overlays(deploy_helpers) -> None:
    assert {"cpu", "gpu", "dev"} <= set(deploy_helpers.OVERLAYS)


def test_overlay_renders_every_component(rendered) -> None:
    kinds = {doc["kind"] for doc in rendered.docs}
    expected = {
        "Deployment",
        "Service",
        "ConfigMap",
        "PersistentVolumeClaim",
        "Job",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
    }
    assert expected <= kinds, f"{rendered.overlay} lacks {sorted(expected - kinds)}"


def test_overlay_validates_against_kubernetes_schemas(rendered, deploy_helpers) -> None:
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate", reason="kubernetes-validate is not installed"
    )
    failures = []
    for doc in rendered.docs:
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        try:
            kubernetes_validate.validate(doc, deploy_helpers.KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(part) for part in error.path)
            failures.append(f"{where}: {path}: {error.message}")
        except kubernetes_validate.SchemaNotFoundError as error:
            failures.append(f"{where}: {error.message}")
    assert not failures, f"{rendered.overlay}:\n" + "\n".join(failures)


def test_validation_rejects_a_broken_manifest(rendered, deploy_helpers) -> None:
    """The validator really runs strict: an unknown field in a rendered Deployment fails."""
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    deployment = next(doc for doc in rendered.docs if doc["kind"] == "Deployment")
    broken = {**deployment, "spec": {**deployment["spec"], "replicaz": 3}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, deploy_helpers.KUBERNETES_VERSION, strict=True)


def test_all_objects_live_in_one_namespace(rendered) -> None:
    namespaces = {
        doc["metadata"].get("namespace") for doc in rendered.docs if doc["kind"] != "Namespace"
    }
    assert len(namespaces) == 1 and None not in namespaces, namespaces
