"""The optional ServiceMonitor component: added to an overlay, it scrapes the ospo Service's
metrics route with the same API key Secret the service reads."""

from __future__ import annotations

import os
import subprocess

import yaml


def test_servicemonitor_scrapes_the_service_with_its_api_key(
    kubectl, deploy_helpers, tmp_path
) -> None:
    overlay = deploy_helpers.K8S / "overlays" / "cpu"
    component = deploy_helpers.K8S / "components" / "servicemonitor"
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                # kustomize refuses absolute paths for directories.
                "resources": [os.path.relpath(overlay, tmp_path)],
                "components": [os.path.relpath(component, tmp_path)],
            }
        )
    )
    result = subprocess.run(
        [kubectl, "kustomize", str(tmp_path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    rendered = deploy_helpers.Rendered(
        overlay="cpu+servicemonitor", docs=tuple(d for d in yaml.safe_load_all(result.stdout) if d)
    )
    (monitor,) = rendered.of_kind("ServiceMonitor")
    service = rendered.one("Service", "ospo")
    assert deploy_helpers.selector_matches(
        monitor["spec"]["selector"], service["metadata"]["labels"]
    )
    port_names = {p["name"] for p in service["spec"]["ports"]}
    secret_ref = rendered.container_env(rendered.api_container())["OSPO_API_KEY"]["valueFrom"][
        "secretKeyRef"
    ]
    for endpoint in monitor["spec"]["endpoints"]:
        assert endpoint["port"] in port_names
        source, exists = deploy_helpers.route_exists(endpoint["path"])
        assert exists, f"{endpoint['path']} is not a route of {source}"
        credentials = endpoint["authorization"]["credentials"]
        assert (credentials["name"], credentials["key"]) == (secret_ref["name"], secret_ref["key"])
