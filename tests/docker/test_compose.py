"""docker/compose.yaml: valid for Compose v2, and consistent with the service's settings."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from service.settings import Settings
from tests.docker._deploy_doc import ray_start_command
from tests.docker._dockerfile import Dockerfile
from tests.docker.conftest import COMPOSE_FILE, ENV_EXAMPLE, run_compose

RAY_SERVICES = ("ray-head", "ray-worker")
# Services that run Ray or submit jobs to it: all must agree on Ray's auth mode.
RAY_CLIENTS = (*RAY_SERVICES, "api")


def _environment(service: dict[str, Any]) -> dict[str, str]:
    return {name: str(value) for name, value in (service.get("environment") or {}).items()}


def _mount_targets(service: dict[str, Any]) -> dict[str, str]:
    """Mount path -> volume name (or host path) of a service."""
    return {volume["target"]: volume["source"] for volume in service.get("volumes", [])}


def _settings(monkeypatch: pytest.MonkeyPatch, environment: dict[str, str]) -> Settings:
    """Settings as the container with ``environment`` reads them."""
    for name in list(os.environ):
        if name.startswith("EXTRAP_"):
            monkeypatch.delenv(name)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    return Settings()


def test_compose_file_is_valid(compose_binary: Path, tmp_path: Path) -> None:
    result = run_compose(
        compose_binary,
        "config",
        "--quiet",
        compose_file=COMPOSE_FILE,
        env_file=ENV_EXAMPLE,
        home=tmp_path,
    )
    assert result.returncode == 0, result.stderr


def test_invalid_compose_file_is_rejected(compose_binary: Path, tmp_path: Path) -> None:
    broken = tmp_path / "compose.yaml"
    broken.write_text("services:\n  api:\n    image: extrap-tune-api:0.1.0\n    port: [8000]\n")
    result = run_compose(
        compose_binary,
        "config",
        "--quiet",
        compose_file=broken,
        env_file=ENV_EXAMPLE,
        home=tmp_path,
    )
    assert result.returncode != 0
    assert "port" in result.stderr


def test_secrets_have_no_default(compose_binary: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty.env"
    empty.write_text("")
    result = run_compose(
        compose_binary,
        "config",
        "--quiet",
        compose_file=COMPOSE_FILE,
        env_file=empty,
        home=tmp_path,
    )
    assert result.returncode != 0
    assert "POSTGRES_PASSWORD" in result.stderr or "EXTRAP_ADMIN_TOKEN" in result.stderr


def test_env_example_documents_every_variable() -> None:
    used = set(re.findall(r"\$\{(\w+)", COMPOSE_FILE.read_text()))
    documented = set(re.findall(r"^(\w+)=", ENV_EXAMPLE.read_text(), flags=re.M))
    assert used == documented


def test_stack_has_every_piece(compose_model: Any) -> None:
    assert set(compose_model["services"]) == {"postgres", "mlflow", "ray-head", "ray-worker", "api"}


def test_extrap_variables_are_settings(compose_model: Any, valid_env_names: set[str]) -> None:
    for name, service in compose_model["services"].items():
        unknown = {key for key in _environment(service) if key.startswith("EXTRAP_")}
        assert unknown <= valid_env_names, f"{name}: {sorted(unknown - valid_env_names)}"
    in_env_file = set(re.findall(r"^(EXTRAP_\w+)=", ENV_EXAMPLE.read_text(), flags=re.M))
    assert in_env_file <= valid_env_names


def test_api_port_is_the_settings_default(compose_model: Any) -> None:
    (port,) = compose_model["services"]["api"]["ports"]
    assert port["target"] == Settings.model_fields["port"].default


def test_ray_commands_are_the_documented_ones(compose_model: Any) -> None:
    services = compose_model["services"]
    assert services["ray-head"]["command"] == ray_start_command("--head")
    assert services["ray-worker"]["command"] == ray_start_command("--address")


def test_ray_auth_mode_is_disabled_everywhere(compose_model: Any) -> None:
    for name in RAY_CLIENTS:
        assert _environment(compose_model["services"][name]).get("RAY_AUTH_MODE") == "disabled"


def test_ray_ports_stay_on_loopback(compose_model: Any) -> None:
    for name in RAY_SERVICES:
        for port in compose_model["services"][name].get("ports", []):
            assert port.get("host_ip") == "127.0.0.1", f"{name} publishes {port}"


def test_ray_worker_reserves_gpus_and_scales(compose_model: Any) -> None:
    worker = compose_model["services"]["ray-worker"]
    (device,) = worker["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia"
    assert "gpu" in device["capabilities"]
    # --scale needs replicas that share no name and no host port.
    assert "container_name" not in worker
    assert not worker.get("ports")


def test_healthy_dependencies_have_healthchecks(compose_model: Any, dockerfile: Dockerfile) -> None:
    services = compose_model["services"]
    for name, service in services.items():
        for dependency, condition in (service.get("depends_on") or {}).items():
            if condition["condition"] != "service_healthy":
                continue
            target = services[dependency]
            build_target = (target.get("build") or {}).get("target")
            image_check = build_target and dockerfile.stage(build_target).last("HEALTHCHECK")
            assert target.get("healthcheck") or image_check, f"{name} waits on {dependency}"


def test_api_settings_point_at_the_stack(
    compose_model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = compose_model["services"]
    settings = _settings(monkeypatch, _environment(services["api"]))

    ray = urlsplit(settings.ray_address or "")
    assert ray.hostname == "ray-head"
    head_command = services["ray-head"]["command"]
    assert f"--dashboard-port={ray.port}" in head_command

    mlflow = urlsplit(settings.mlflow_tracking_uri or "")
    assert mlflow.hostname == "mlflow"
    mlflow_command = services["mlflow"]["command"]
    assert mlflow_command[mlflow_command.index("--port") + 1] == str(mlflow.port)

    database = urlsplit(settings.resolved_database_url)
    assert database.scheme == "postgresql+psycopg"
    assert database.hostname == "postgres"
    assert database.path.lstrip("/") == _environment(services["postgres"])["POSTGRES_DB"]

    public = urlsplit(settings.resolved_public_url)
    assert (public.hostname, public.port) == ("api", settings.port)


def test_mlflow_uses_its_own_postgres_database(compose_model: Any) -> None:
    services = compose_model["services"]
    command = services["mlflow"]["command"]
    backend = urlsplit(command[command.index("--backend-store-uri") + 1])
    assert backend.scheme == "postgresql+psycopg2"
    assert backend.hostname == "postgres"
    postgres = _environment(services["postgres"])
    assert backend.path.lstrip("/") == postgres["MLFLOW_DB"] != postgres["POSTGRES_DB"]
    artifacts = command[command.index("--artifacts-destination") + 1]
    assert artifacts in _mount_targets(services["mlflow"])


def test_checkpoints_and_data_are_shared(
    compose_model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from trainers.workloads import default_data_dir

    services = compose_model["services"]
    api = _settings(monkeypatch, _environment(services["api"]))
    api_mounts = _mount_targets(services["api"])
    (data_root,) = api.resolved_data_roots
    storage_volume = api_mounts.get(api.resolved_storage_path)
    data_volume = api_mounts.get(str(data_root))
    assert storage_volume, f"the API mounts nothing at {api.resolved_storage_path}"
    assert data_volume, f"the API mounts nothing at {data_root}"
    for name in RAY_SERVICES:
        settings = _settings(monkeypatch, _environment(services[name]))
        mounts = _mount_targets(services[name])
        assert mounts.get(settings.resolved_storage_path) == storage_volume, name
        assert mounts.get(str(default_data_dir())) == data_volume, name
