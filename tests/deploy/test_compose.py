"""deploy/docker-compose.yml: Redis + an index-build one-shot + the service, wired the way
the Kubernetes manifests are (same settings, same port, same retrievers config)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml


@pytest.fixture(scope="module")
def compose(deploy_helpers) -> dict:
    document = yaml.safe_load((deploy_helpers.DEPLOY / "docker-compose.yml").read_text())
    assert isinstance(document, dict)
    return document


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def test_services_are_redis_index_build_and_ospo(compose) -> None:
    assert {"redis", "index-build", "ospo"} <= set(compose["services"])


def test_service_waits_for_redis_and_a_finished_index_build(compose) -> None:
    depends = compose["services"]["ospo"]["depends_on"]
    assert depends["redis"]["condition"] == "service_healthy"
    assert depends["index-build"]["condition"] == "service_completed_successfully"
    assert "healthcheck" in compose["services"]["redis"]
    assert compose["services"]["index-build"].get("restart") == "no"


def test_service_healthcheck_and_port(compose, deploy_helpers) -> None:
    ospo = compose["services"]["ospo"]
    command = [str(part) for part in ospo["command"]]
    assert command[0] == "serve" and deploy_helpers.option(command, "--host") == "0.0.0.0"
    port = int(deploy_helpers.option(command, "--port"))
    assert port == deploy_helpers.default_port()
    published = [str(p).rsplit(":", 1)[-1] for p in ospo["ports"]]
    assert published == [str(port)]
    check = " ".join(str(part) for part in ospo["healthcheck"]["test"])
    assert f":{port}/healthz" in check
    assert deploy_helpers.route_exists("/healthz")[1]


def test_images_are_built_from_the_repo(compose, deploy_helpers) -> None:
    compose_dir = deploy_helpers.DEPLOY
    for name in ("ospo", "index-build"):
        build = compose["services"][name]["build"]
        context = (compose_dir / build["context"]).resolve()
        assert context == deploy_helpers.REPO
        assert (context / build["dockerfile"]).is_file()


def test_every_env_var_is_a_known_setting(compose, deploy_helpers) -> None:
    settings = deploy_helpers.known_settings()
    for name in ("ospo", "index-build"):
        unknown = set(environment(compose["services"][name])) - settings.env_names
        unknown -= deploy_helpers.RUNTIME_ENV
        assert not unknown, f"{name} sets {sorted(unknown)}, unknown to {settings.source}"


def test_redis_url_points_at_the_redis_service(compose) -> None:
    url = environment(compose["services"]["ospo"])["REDIS_URL"]
    match = re.match(r"^redis://([^:/]+):(\d+)", url)
    assert match and match.group(1) in compose["services"]


def test_redis_is_a_bounded_lru_cache_without_persistence(compose) -> None:
    command = [str(part) for part in compose["services"]["redis"]["command"]]
    assert command[command.index("--maxmemory-policy") + 1] == "allkeys-lru"
    assert "--maxmemory" in command
    assert command[command.index("--save") + 1] == ""
    assert command[command.index("--appendonly") + 1] == "no"


def mounted_config(compose, deploy_helpers) -> tuple[str, Path]:
    """(path inside the container, file on the host) of the retrievers config."""
    ospo = compose["services"]["ospo"]
    config = deploy_helpers.option([str(p) for p in ospo["command"]], "--config") or environment(
        ospo
    ).get("OSPO_CONFIG")
    assert config, "the service gets no retrievers config"
    for volume in ospo["volumes"]:
        host, _, rest = volume.partition(":")
        target = rest.split(":", 1)[0]
        if target == config:
            return config, (deploy_helpers.DEPLOY / host).resolve()
    raise AssertionError(f"{config} is not mounted")


def test_index_build_writes_what_the_service_loads(compose, deploy_helpers) -> None:
    _, host_file = mounted_config(compose, deploy_helpers)
    assert host_file.is_file()
    try:
        from service.config import read_retriever_entries
    except ImportError:
        import tomllib

        entries = tomllib.loads(host_file.read_text())["retrievers"]
    else:
        entries = read_retriever_entries(host_file)
    build = [str(p) for p in compose["services"]["index-build"]["command"]]
    assert build[:2] == ["index", "build"]
    (entry,) = [e for e in entries if e.get("index_dir") == deploy_helpers.option(build, "--out")]
    assert deploy_helpers.option(build, "--encoder") == entry["encoder"]
    assert deploy_helpers.option(build, "--catalog") == entry["catalog"]
    assert deploy_helpers.option(build, "--index") == entry["index_type"]
    # Both containers see the index on the same named volume.
    data_volume = {v for v in compose["services"]["index-build"]["volumes"] if ":" in v}
    assert data_volume <= set(compose["services"]["ospo"]["volumes"])
    assert all(v.split(":", 1)[0] in compose["volumes"] for v in data_volume)


def test_laptop_and_cluster_load_the_same_retrievers(deploy_helpers) -> None:
    import tomllib

    laptop = tomllib.loads((deploy_helpers.DEPLOY / "config" / "retrievers.toml").read_text())
    cluster = tomllib.loads(
        (deploy_helpers.K8S / "base" / "config" / "retrievers.toml").read_text()
    )
    assert laptop == cluster


def test_containers_are_hardened(compose) -> None:
    for name in ("ospo", "index-build"):
        service = compose["services"][name]
        assert service.get("read_only") is True
        assert "ALL" in service.get("cap_drop", [])
        assert "no-new-privileges:true" in service.get("security_opt", [])
        assert any(str(t).startswith("/tmp") for t in service.get("tmpfs", []))


def test_ospo_commands_parse_with_the_real_cli(compose, deploy_helpers) -> None:
    for name in ("ospo", "index-build"):
        arguments = [str(part) for part in compose["services"][name]["command"]]
        source, accepted = deploy_helpers.cli_accepts(arguments)
        assert accepted, f"{name}: `ospo {' '.join(arguments)}` rejected by {source}"
