"""Checks on the rendered manifests against the app itself: routes, port, settings, and the
wiring between objects (selectors, volumes, Secret, Redis, the index Job)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import tomllib

GPU_RESOURCE = "nvidia.com/gpu"
GPU_NODE_LABEL_HINTS = ("nvidia.com/gpu", "gpu")
CLIENT_LABEL = ("ospo.io/client", "true")

_QUANTITY = re.compile(r"^(\d+(?:\.\d+)?)([a-zA-Z]*)$")
_QUANTITY_UNITS = {
    "": 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
}


def bytes_of(quantity: str) -> float:
    """A Kubernetes memory quantity (`1Gi`) or a Redis size (`768mb`) in bytes."""
    match = _QUANTITY.match(quantity.strip())
    assert match, f"unparseable size {quantity!r}"
    number, unit = match.groups()
    unit = unit if unit in _QUANTITY_UNITS else unit.lower()
    return float(number) * _QUANTITY_UNITS[unit]


def http_probes(container) -> dict[str, dict]:
    return {
        kind: container[kind]
        for kind in ("startupProbe", "livenessProbe", "readinessProbe")
        if kind in container
    }


def resolve_port(container, port) -> int:
    if isinstance(port, int):
        return port
    named = [p["containerPort"] for p in container.get("ports", []) if p.get("name") == port]
    assert named, f"no container port named {port!r}"
    return int(named[0])


# --- probes and port ---------------------------------------------------------------------


def test_probes_point_at_routes_the_app_serves(rendered, deploy_helpers) -> None:
    container = rendered.api_container()
    probes = http_probes(container)
    assert {"startupProbe", "livenessProbe", "readinessProbe"} <= set(probes)
    for kind, probe in probes.items():
        path = probe["httpGet"]["path"].split("?", 1)[0]
        source, exists = deploy_helpers.route_exists(path)
        assert exists, f"{kind} -> {path}, not a route of {source}"
    assert probes["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert probes["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_probes_need_no_credentials_when_the_api_key_is_set(rendered, deploy_helpers) -> None:
    """The Deployment sets OSPO_API_KEY and the kubelet sends no Authorization header."""
    client = deploy_helpers.app_client(api_key="probe-test-key")
    if client is None:
        pytest.skip("service.api.app.create_app does not exist yet")
    assert client.get("/attribute").status_code == 401, "the key is not enforced at all"
    for kind, probe in http_probes(rendered.api_container()).items():
        status = client.get(probe["httpGet"]["path"]).status_code
        assert status not in (401, 403), f"{kind} {probe['httpGet']['path']} answers {status}"


def test_startup_probe_allows_minutes_for_model_and_index_loading(rendered) -> None:
    probe = rendered.api_container()["startupProbe"]
    budget_s = probe.get("periodSeconds", 10) * probe.get("failureThreshold", 3)
    assert budget_s >= 300, f"startup budget {budget_s}s is too short to load models"


def test_container_port_is_the_port_ospo_serve_listens_on(rendered, deploy_helpers) -> None:
    container = rendered.api_container()
    arguments = deploy_helpers.command_line(container)
    assert arguments[:1] == ["serve"]
    serve_port = int(deploy_helpers.option(arguments, "--port") or deploy_helpers.default_port())
    assert serve_port == deploy_helpers.default_port()
    assert deploy_helpers.option(arguments, "--host") == "0.0.0.0", (
        "serve must listen on all interfaces"
    )
    ports = {p["containerPort"] for p in container["ports"]}
    assert ports == {serve_port}
    for probe in http_probes(container).values():
        assert resolve_port(container, probe["httpGet"]["port"]) == serve_port


def test_service_routes_to_the_serving_port(rendered) -> None:
    api = rendered.api()
    container = rendered.api_container()
    services = [
        s
        for s in rendered.of_kind("Service")
        if s["spec"]["selector"].items() <= api.pod_labels.items()
    ]
    assert len(services) == 1, "exactly one Service selects the ospo pods"
    service = services[0]
    assert service["spec"].get("type", "ClusterIP") == "ClusterIP"
    assert service["metadata"]["name"] == "ospo", "trainers call http://ospo.<ns>.svc:8000"
    (port,) = service["spec"]["ports"]
    assert resolve_port(container, port["targetPort"]) == container["ports"][0]["containerPort"]
    others = [w for w in rendered.workloads() if w.name != api.name]
    for workload in others:
        assert not (service["spec"]["selector"].items() <= workload.pod_labels.items()), (
            f"Service ospo also selects {workload.kind}/{workload.name}"
        )


def test_prometheus_scrapes_the_metrics_route(rendered, deploy_helpers) -> None:
    api = rendered.api()
    annotations = api.pod_annotations
    assert annotations.get("prometheus.io/scrape") == "true"
    source, exists = deploy_helpers.route_exists(annotations.get("prometheus.io/path", "/metrics"))
    assert exists, f"no metrics route in {source}"
    assert (
        int(annotations["prometheus.io/port"])
        == rendered.api_container()["ports"][0]["containerPort"]
    )


# --- settings ----------------------------------------------------------------------------


def test_every_env_var_is_a_setting_the_service_reads(rendered, deploy_helpers) -> None:
    settings = deploy_helpers.known_settings()
    for workload in rendered.ospo_workloads():
        for container in workload.containers():
            names = set(rendered.container_env(container))
            unknown = names - settings.env_names - deploy_helpers.RUNTIME_ENV
            assert not unknown, (
                f"{workload.name}/{container['name']} sets {sorted(unknown)}, "
                f"unknown to {settings.source}"
            )


def test_deployment_sets_what_a_shared_deployment_needs(rendered, deploy_helpers) -> None:
    required = deploy_helpers.DEPLOYMENT_REQUIRED_ENV | deploy_helpers.known_settings().required_env
    env = rendered.container_env(rendered.api_container())
    missing = required - set(env)
    assert not missing, f"the ospo Deployment does not set {sorted(missing)}"
    for workload in rendered.ospo_workloads():
        for container in workload.containers():
            assert "OSPO_DATA_DIR" in rendered.container_env(container), workload.name


def test_api_key_comes_from_a_secret_reference(rendered, deploy_helpers) -> None:
    for workload in rendered.ospo_workloads():
        for container in workload.containers():
            entry = rendered.container_env(container).get("OSPO_API_KEY")
            if entry is None:
                continue
            assert "value" not in entry, f"{workload.name}: OSPO_API_KEY is inlined"
            assert "secretKeyRef" in entry.get("valueFrom", {}), (
                "OSPO_API_KEY must come from a Secret"
            )
    for config_map in rendered.of_kind("ConfigMap"):
        assert "OSPO_API_KEY" not in (config_map.get("data") or {})
    secret_ref = rendered.container_env(rendered.api_container())["OSPO_API_KEY"]["valueFrom"][
        "secretKeyRef"
    ]
    secrets = {s["metadata"]["name"]: s for s in rendered.of_kind("Secret")}
    if rendered.overlay == "dev":
        assert secret_ref["key"] in {**secrets[secret_ref["name"]].get("data", {})}
    else:
        assert not secrets, "shared-cluster overlays must not ship a Secret"
        deploy_md = (deploy_helpers.REPO / "docs" / "DEPLOY.md").read_text()
        assert f"create secret generic {secret_ref['name']}" in deploy_md
        assert f"--from-literal={secret_ref['key']}=" in deploy_md


def test_redis_url_names_the_redis_service(rendered) -> None:
    url = rendered.container_env(rendered.api_container())["REDIS_URL"]["value"]
    match = re.match(r"^redis://([^:/]+):(\d+)(/\d+)?$", url)
    assert match, url
    host, port = match.group(1), int(match.group(2))
    service = rendered.one("Service", host.split(".")[0])
    redis = rendered.redis()
    assert service["spec"]["selector"].items() <= redis.pod_labels.items()
    assert port in {p["port"] for p in service["spec"]["ports"]}


# --- volumes: writable data dir, read-only root, the index PVC -----------------------------


def mounts_by_path(workload, container) -> dict[str, tuple[dict, dict]]:
    volumes = workload.volumes()
    return {m["mountPath"]: (m, volumes[m["name"]]) for m in container.get("volumeMounts", [])}


def test_data_dir_and_tmp_are_writable_volumes(rendered) -> None:
    for workload in rendered.ospo_workloads():
        for container in workload.containers():
            mounts = mounts_by_path(workload, container)
            data_dir = rendered.container_env(container)["OSPO_DATA_DIR"]["value"]
            for path in (data_dir, "/tmp"):
                assert path in mounts, f"{workload.name}: nothing mounted at {path}"
                mount, volume = mounts[path]
                assert not mount.get("readOnly", False)
                assert "emptyDir" in volume or "persistentVolumeClaim" in volume


def retriever_entries(rendered, deploy_helpers, tmp_path: Path) -> list[dict]:
    env = rendered.container_env(rendered.api_container())
    config_path = env["OSPO_CONFIG"]["value"]
    api = rendered.api()
    mounts = mounts_by_path(api, rendered.api_container())
    directory, filename = str(Path(config_path).parent), Path(config_path).name
    assert directory in mounts, f"OSPO_CONFIG={config_path} is not on a mounted volume"
    _, volume = mounts[directory]
    text = rendered.config_map_data(volume["configMap"]["name"])[filename]
    try:
        from service.config import read_retriever_entries
    except ImportError:
        return list(tomllib.loads(text)["retrievers"])
    copy = tmp_path / filename
    copy.write_text(text)
    return read_retriever_entries(copy)


def test_retriever_indexes_come_from_the_index_volume(rendered, deploy_helpers, tmp_path) -> None:
    api = rendered.api()
    mounts = mounts_by_path(api, rendered.api_container())
    entries = retriever_entries(rendered, deploy_helpers, tmp_path)
    assert entries
    for entry in entries:
        index_dir = entry.get("index_dir")
        assert index_dir, "a retriever without index_dir would build its index in every replica"
        holders = [
            (mount, volume)
            for path, (mount, volume) in mounts.items()
            if index_dir.startswith(path.rstrip("/") + "/")
        ]
        mount, volume = max(holders, key=lambda pair: len(pair[0]["mountPath"]))
        assert "persistentVolumeClaim" in volume, f"{index_dir} is not on the index PVC"
        assert mount.get("readOnly"), "replicas mount the shared index read-only"
        rendered.one("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"])


def test_index_job_builds_exactly_what_the_retrievers_load(
    rendered, deploy_helpers, tmp_path
) -> None:
    entries = retriever_entries(rendered, deploy_helpers, tmp_path)
    jobs = [w for w in rendered.ospo_workloads() if w.kind == "Job"]
    builds = [
        deploy_helpers.command_line(c)
        for job in jobs
        for c in job.containers()
        if deploy_helpers.command_line(c)[:2] == ["index", "build"]
    ]
    assert builds, "no Job runs `ospo index build`"
    claims = {
        v["persistentVolumeClaim"]["claimName"]
        for job in jobs
        for v in job.volumes().values()
        if "persistentVolumeClaim" in v
    }
    api_claims = {
        v["persistentVolumeClaim"]["claimName"]
        for v in rendered.api().volumes().values()
        if "persistentVolumeClaim" in v
    }
    assert api_claims <= claims, "the Job must write the PVC the service reads"
    for entry in entries:
        matching = [b for b in builds if deploy_helpers.option(b, "--out") == entry["index_dir"]]
        assert matching, f"no index build writes {entry['index_dir']}"
        build = matching[0]
        assert deploy_helpers.option(build, "--encoder") == entry.get("encoder", "all-MiniLM-L6-v2")
        assert deploy_helpers.option(build, "--catalog") == entry.get("catalog", "demo")
        assert deploy_helpers.option(build, "--index") == entry.get("index_type", "flat")
    for job in jobs:
        assert job.pod_spec["restartPolicy"] in {"OnFailure", "Never"}


# --- hardening and resources ---------------------------------------------------------------


def test_every_container_is_locked_down(rendered) -> None:
    for workload in rendered.workloads():
        pod = workload.pod_spec.get("securityContext") or {}
        assert not workload.pod_spec.get("hostNetwork") and not workload.pod_spec.get("hostPID")
        for container in workload.containers():
            where = f"{rendered.overlay}: {workload.name}/{container['name']}"
            context = container.get("securityContext") or {}
            run_as_non_root = context.get("runAsNonRoot", pod.get("runAsNonRoot"))
            run_as_user = context.get("runAsUser", pod.get("runAsUser"))
            assert run_as_non_root is True, f"{where}: runAsNonRoot"
            assert run_as_user != 0, f"{where}: runs as root"
            assert context.get("allowPrivilegeEscalation") is False, f"{where}: escalation"
            assert context.get("readOnlyRootFilesystem") is True, f"{where}: writable root"
            assert not context.get("privileged", False), f"{where}: privileged"
            assert "ALL" in (context.get("capabilities") or {}).get("drop", []), f"{where}: caps"
            assert not (context.get("capabilities") or {}).get("add"), f"{where}: adds caps"


def test_requests_equal_limits_for_every_container(rendered) -> None:
    for workload in rendered.workloads():
        for container in workload.containers():
            where = f"{rendered.overlay}: {workload.name}/{container['name']}"
            resources = container.get("resources") or {}
            requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
            assert {"cpu", "memory"} <= set(limits), f"{where}: no cpu/memory limits"
            assert requests == limits, f"{where}: requests {requests} != limits {limits}"


# --- availability --------------------------------------------------------------------------


def test_rolling_update_never_drops_capacity(rendered) -> None:
    strategy = rendered.api().spec["strategy"]
    assert strategy["type"] == "RollingUpdate"
    assert str(strategy["rollingUpdate"]["maxUnavailable"]) in {"0", "0%"}


def test_replicas_spread_across_nodes(rendered) -> None:
    api = rendered.api()
    constraints = api.pod_spec.get("topologySpreadConstraints") or []
    by_node = [c for c in constraints if c["topologyKey"] == "kubernetes.io/hostname"]
    assert by_node, "no spread across nodes"
    for constraint in constraints:
        assert constraint["labelSelector"]["matchLabels"].items() <= api.pod_labels.items()


def test_selectors_match_the_pods(rendered, deploy_helpers) -> None:
    for workload in rendered.workloads():
        if workload.kind == "Job":
            continue
        assert deploy_helpers.selector_matches(workload.spec["selector"], workload.pod_labels), (
            workload.name
        )
    api = rendered.api()
    (pdb,) = rendered.of_kind("PodDisruptionBudget")
    assert deploy_helpers.selector_matches(pdb["spec"]["selector"], api.pod_labels)
    (hpa,) = rendered.of_kind("HorizontalPodAutoscaler")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", api.name)
    assert any(
        m["type"] == "Resource" and m["resource"]["name"] == "cpu" for m in hpa["spec"]["metrics"]
    )
    assert hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]


def test_images_are_pinned_and_the_gpu_overlay_uses_the_gpu_image(
    all_rendered, deploy_helpers
) -> None:
    images = {}
    for name, rendered in all_rendered.items():
        found = {
            c["image"]
            for w in rendered.ospo_workloads()
            for c in w.containers()
            if deploy_helpers.is_ospo_image(c["image"])
        }
        assert len(found) == 1, f"{name}: one ospo image per overlay, got {found}"
        image = found.pop()
        tag = image.rsplit("/", 1)[-1].partition(":")[2]
        assert tag and tag != "latest", f"{name}: {image} has no pinned tag"
        images[name] = image
    assert images["gpu"] != images["cpu"]
    assert "gpu" in images["gpu"]


# --- Redis ---------------------------------------------------------------------------------


def test_redis_is_a_bounded_lru_cache_without_persistence(rendered) -> None:
    redis = rendered.redis()
    (container,) = redis.containers(False)
    arguments = [str(a) for a in (container.get("command") or []) + (container.get("args") or [])]

    def value(flag: str) -> str:
        assert flag in arguments, f"redis is started without {flag}"
        return arguments[arguments.index(flag) + 1]

    assert value("--maxmemory-policy") == "allkeys-lru"
    assert value("--save") == ""
    assert value("--appendonly") == "no"
    limit = bytes_of(container["resources"]["limits"]["memory"])
    assert 0 < bytes_of(value("--maxmemory")) < limit, "maxmemory must leave room under the limit"
    assert "readinessProbe" in container and "livenessProbe" in container
    assert not any("persistentVolumeClaim" in v for v in redis.volumes().values())


# --- NetworkPolicy -------------------------------------------------------------------------


def policies_selecting(rendered, deploy_helpers, labels) -> list[dict]:
    return [
        p
        for p in rendered.of_kind("NetworkPolicy")
        if deploy_helpers.selector_matches(p["spec"]["podSelector"], labels)
    ]


def test_every_network_policy_selects_pods(rendered, deploy_helpers) -> None:
    for policy in rendered.of_kind("NetworkPolicy"):
        assert policy["spec"]["podSelector"], f"{policy['metadata']['name']} selects every pod"
        assert any(
            deploy_helpers.selector_matches(policy["spec"]["podSelector"], w.pod_labels)
            for w in rendered.workloads()
        ), f"{policy['metadata']['name']} selects no pod"


def test_only_labelled_clients_and_prometheus_reach_the_service(rendered, deploy_helpers) -> None:
    api = rendered.api()
    port = rendered.api_container()["ports"][0]["containerPort"]
    policies = policies_selecting(rendered, deploy_helpers, api.pod_labels)
    assert policies and all("Ingress" in p["spec"]["policyTypes"] for p in policies)
    client = {CLIENT_LABEL[0]: CLIENT_LABEL[1]}
    client_allowed = False
    for policy in policies:
        for rule in policy["spec"].get("ingress") or []:
            assert rule.get("from"), "an ingress rule without `from` admits every pod"
            assert [p["port"] for p in rule.get("ports", [])] == [port]
            for peer in rule["from"]:
                assert "ipBlock" not in peer
                selector = peer.get("podSelector")
                assert selector, "a peer without podSelector admits a whole namespace"
                labels = selector.get("matchLabels", {})
                is_client = labels == client
                is_prometheus = labels.get("app.kubernetes.io/name") == "prometheus"
                assert is_client or is_prometheus, f"unexpected peer {peer}"
                client_allowed |= is_client
                # An unlabelled pod must never match.
                assert not deploy_helpers.selector_matches(selector, {"app": "anything"})
    assert client_allowed, f"pods labelled {client} cannot reach the service"


def test_only_the_service_reaches_redis(rendered, deploy_helpers) -> None:
    redis = rendered.redis()
    others = [w for w in rendered.workloads() if w.name != rendered.api().name]
    policies = policies_selecting(rendered, deploy_helpers, redis.pod_labels)
    assert policies
    for policy in policies:
        assert "Ingress" in policy["spec"]["policyTypes"]
        for rule in policy["spec"].get("ingress") or []:
            assert rule.get("from")
            for peer in rule["from"]:
                assert set(peer) == {"podSelector"}, "Redis is reached from this namespace only"
                assert deploy_helpers.selector_matches(
                    peer["podSelector"], rendered.api().pod_labels
                )
                for workload in others:
                    assert not deploy_helpers.selector_matches(
                        peer["podSelector"], workload.pod_labels
                    ), f"{workload.name} may reach Redis"


def test_service_egress_allows_redis_and_dns(rendered, deploy_helpers) -> None:
    api, redis = rendered.api(), rendered.redis()
    redis_port = redis.containers(False)[0]["ports"][0]["containerPort"]
    egress_rules = [
        rule
        for policy in policies_selecting(rendered, deploy_helpers, api.pod_labels)
        if "Egress" in policy["spec"]["policyTypes"]
        for rule in policy["spec"].get("egress") or []
    ]
    assert egress_rules, "the ospo pods have no egress policy"
    reaches_redis = any(
        redis_port in [p["port"] for p in rule.get("ports", [])]
        and any(
            deploy_helpers.selector_matches(peer.get("podSelector"), redis.pod_labels)
            for peer in rule["to"]
        )
        for rule in egress_rules
    )
    resolves_names = any(
        {"UDP", "TCP"}
        <= {p.get("protocol", "TCP") for p in rule.get("ports", []) if p["port"] == 53}
        for rule in egress_rules
    )
    assert reaches_redis and resolves_names


# --- GPU vs CPU ----------------------------------------------------------------------------


def gpu_requested(rendered) -> bool:
    return any(
        GPU_RESOURCE in (c.get("resources") or {}).get("limits", {})
        for w in rendered.workloads()
        for c in w.containers()
    )


def required_node_expressions(workload) -> list[dict]:
    affinity = (workload.pod_spec.get("affinity") or {}).get("nodeAffinity") or {}
    required = affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or {}
    return [
        e
        for term in required.get("nodeSelectorTerms", [])
        for e in term.get("matchExpressions", [])
    ]


def test_gpu_overlay_asks_for_a_gpu_on_gpu_nodes(all_rendered) -> None:
    rendered = all_rendered["gpu"]
    api = rendered.api()
    limits = rendered.api_container()["resources"]["limits"]
    assert int(limits.get(GPU_RESOURCE, 0)) >= 1
    selects_gpu_nodes = any("gpu" in key for key in api.pod_spec.get("nodeSelector", {})) or any(
        "gpu" in e["key"] and e["operator"] in {"In", "Exists"}
        for e in required_node_expressions(api)
    )
    assert selects_gpu_nodes, "the gpu overlay does not target GPU nodes"
    assert any(t.get("key") == GPU_RESOURCE for t in api.pod_spec.get("tolerations", []))


@pytest.mark.parametrize("overlay", ["cpu", "dev"])
def test_cpu_overlays_ask_for_no_gpu(all_rendered, overlay) -> None:
    assert not gpu_requested(all_rendered[overlay])


def test_cpu_overlay_keeps_the_service_off_gpu_nodes(all_rendered) -> None:
    rendered = all_rendered["cpu"]
    api = rendered.api()
    avoids = [
        e
        for e in required_node_expressions(api)
        if any(h in e["key"] for h in GPU_NODE_LABEL_HINTS)
        and e["operator"] in {"DoesNotExist", "NotIn"}
    ]
    assert avoids, "the cpu overlay may schedule the service on GPU nodes"
    assert not any(t.get("key") == GPU_RESOURCE for t in api.pod_spec.get("tolerations", []))


def test_ospo_commands_parse_with_the_real_cli(rendered, deploy_helpers) -> None:
    for workload in rendered.ospo_workloads():
        for container in workload.containers():
            arguments = deploy_helpers.command_line(container)
            source, accepted = deploy_helpers.cli_accepts(arguments)
            assert accepted, f"{workload.name}: `ospo {' '.join(arguments)}` rejected by {source}"
