"""Fixtures for the deployment files in docker/: the parsed compose model, Dockerfile, manifests."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.settings import Settings
from tests.docker import _dockerfile
from tests.docker._tools import clean_environment, find_binary

REPO = Path(__file__).resolve().parents[2]
DOCKER_DIR = REPO / "docker"
COMPOSE_FILE = DOCKER_DIR / "compose.yaml"
ENV_EXAMPLE = DOCKER_DIR / ".env.example"
K8S_DIR = DOCKER_DIR / "k8s"
# The packages whose code reads EXTRAP_* variables besides Settings (the workloads' data dir).
_PACKAGES = ("service", "trainers", "search_spaces")
_ENVIRON_READ = re.compile(
    r"""os\.(?:environ\.get\(|environ\[|getenv\()\s*["'](EXTRAP_[A-Z0-9_]+)["']"""
)


@pytest.fixture(scope="session")
def compose_binary() -> Path:
    return find_binary("docker-compose")


@pytest.fixture(scope="session")
def hadolint_binary() -> Path:
    return find_binary("hadolint")


def run_compose(
    binary: Path, *args: str, compose_file: Path, env_file: Path, home: Path
) -> subprocess.CompletedProcess[str]:
    """``docker-compose -f compose_file --env-file env_file ARGS``, offline, in a clean env."""
    return subprocess.run(
        [str(binary), "-f", str(compose_file), "--env-file", str(env_file), *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=clean_environment(home),
        check=False,
    )


@pytest.fixture(scope="session")
def compose_model(compose_binary: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """``docker compose config`` of docker/compose.yaml with docker/.env.example, as JSON."""
    result = run_compose(
        compose_binary,
        "config",
        "--format",
        "json",
        compose_file=COMPOSE_FILE,
        env_file=ENV_EXAMPLE,
        home=tmp_path_factory.mktemp("compose-home"),
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="session")
def dockerfile() -> _dockerfile.Dockerfile:
    return _dockerfile.parse(DOCKER_DIR / "Dockerfile")


@pytest.fixture(scope="session")
def k8s_documents() -> list[tuple[str, dict[str, Any]]]:
    """(file name, document) for every document of every docker/k8s/*.yaml."""
    documents = [
        (path.name, document)
        for path in sorted(K8S_DIR.glob("*.yaml"))
        for document in yaml.safe_load_all(path.read_text())
        if document is not None
    ]
    assert documents, "docker/k8s holds no manifest"
    return documents


@pytest.fixture(scope="session")
def settings_env_names() -> set[str]:
    """The variable name of every field of service.settings.Settings."""
    prefix = Settings.model_config.get("env_prefix", "")
    return {f"{prefix}{name}".upper() for name in Settings.model_fields}


@pytest.fixture(scope="session")
def valid_env_names(settings_env_names: set[str]) -> set[str]:
    """Settings' variables, and the EXTRAP_* variables the packages read from os.environ."""
    read = {
        name
        for package in _PACKAGES
        for source in (REPO / package).rglob("*.py")
        for name in _ENVIRON_READ.findall(source.read_text())
    }
    return settings_env_names | read
