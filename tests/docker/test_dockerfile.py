"""docker/Dockerfile: lints clean, and its targets run what the settings and the docs say."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from service.settings import Settings
from tests.docker._deploy_doc import ray_start_command
from tests.docker._dockerfile import Dockerfile, exec_form, substitute
from tests.docker.conftest import DOCKER_DIR

DOCKERFILE = DOCKER_DIR / "Dockerfile"
HADOLINT_CONFIG = DOCKER_DIR / ".hadolint.yaml"
TARGETS = ("api", "worker", "mlflow")
# What the api image must never carry (it has no GPU and submits jobs over HTTP).
API_FORBIDDEN = ("torch", "ray", "mlflow", "nvidia")


def _hadolint(binary: Path, dockerfile: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(binary), "--no-color", "--config", str(HADOLINT_CONFIG), str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_dockerfile_lints_clean(hadolint_binary: Path) -> None:
    result = _hadolint(hadolint_binary, DOCKERFILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_rejects_a_bad_dockerfile(hadolint_binary: Path, tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:3.11.14-slim-bookworm\nWORKDIR relative/path\n")
    result = _hadolint(hadolint_binary, bad)
    assert result.returncode != 0
    assert "DL3000" in result.stdout


def test_every_hadolint_ignore_has_a_reason() -> None:
    config = yaml.safe_load(HADOLINT_CONFIG.read_text())
    lines = HADOLINT_CONFIG.read_text().splitlines()
    for rule in config.get("ignored") or []:
        (line,) = [line for line in lines if re.search(rf"-\s*{rule}\b", line)]
        assert "#" in line, f"{rule} is ignored without a reason"


@pytest.mark.parametrize("target", TARGETS)
def test_target_is_pinned_non_root_and_healthchecked(dockerfile: Dockerfile, target: str) -> None:
    stage = dockerfile.stage(target)
    image, _, tag = stage.base.rpartition(":")
    assert image and tag and tag != "latest" and "$" not in stage.base, stage.base
    assert "." not in image.split("/")[0], f"{stage.base}: not a Docker Hub image"
    user = substitute(stage.effective("USER"), {**dockerfile.global_args, **stage.args})
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"{target}: USER {user}"
    assert stage.last("HEALTHCHECK") is not None


def test_targets_share_one_uid(dockerfile: Dockerfile) -> None:
    """The runs volume is written by the api and the Ray nodes alike."""
    stages = [dockerfile.stage(target) for target in TARGETS]
    uids = {substitute(stage.effective("USER"), stage.args) for stage in stages}
    assert len(uids) == 1, uids


def test_api_serves_on_the_settings_port(dockerfile: Dockerfile) -> None:
    api = dockerfile.stage("api")
    port = str(Settings.model_fields["port"].default)
    assert api.last("ENTRYPOINT") is None
    command = exec_form(api.effective("CMD"))
    assert command == ["extrap", "serve", "--host", "0.0.0.0", "--port", port]
    assert f"EXPOSE {port}" in {f"EXPOSE {item.arguments}" for item in api.all("EXPOSE")}
    probe = " ".join(exec_form(api.effective("HEALTHCHECK")))
    assert f":{port}/healthz" in probe


def test_api_image_has_no_gpu_stack(dockerfile: Dockerfile) -> None:
    for name in ("api", "api-venv"):
        for item in dockerfile.stage(name).all("RUN"):
            assert not any(word in item.arguments for word in API_FORBIDDEN), item.arguments
            if "pip install" in item.arguments and ".whl" in item.arguments:
                assert "--no-deps" in item.arguments, item.arguments
    requirements = (DOCKER_DIR / "requirements-api.txt").read_text().lower()
    assert not any(re.search(rf"^{word}\b", requirements, re.M) for word in API_FORBIDDEN)


def test_worker_torch_matches_its_base_image(dockerfile: Dockerfile) -> None:
    worker = dockerfile.stage("worker")
    match = re.search(r":(\d+\.\d+\.\d+)-cuda\d+\.\d+-", worker.base)
    assert match, f"worker base {worker.base} names no torch and CUDA version"
    assert worker.args["TORCH_VERSION"] == match[1]


def test_worker_default_command_joins_the_documented_head(dockerfile: Dockerfile) -> None:
    command = exec_form(dockerfile.stage("worker").effective("CMD"))
    assert command == ray_start_command("--address")


def test_build_context_admits_what_the_dockerfile_copies(dockerfile: Dockerfile) -> None:
    ignore = DOCKER_DIR / "Dockerfile.dockerignore"
    patterns = [
        line.strip()
        for line in ignore.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*", "the context is an allow-list"
    admitted = {pattern[1:].rstrip("/") for pattern in patterns if pattern.startswith("!")}
    for stage in dockerfile.stages.values():
        for item in stage.all("COPY"):
            if "--from=" in item.arguments:
                continue
            *sources, _destination = item.arguments.split()
            for source in sources:
                assert source.rstrip("/") in admitted, f"COPY {source} is outside the context"
