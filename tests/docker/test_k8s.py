"""docker/k8s/: well-formed manifests that agree with the settings, compose and the docs."""

from __future__ import annotations

import os
import shlex
from typing import Any
from urllib.parse import urlsplit

import pytest

from service.settings import Settings
from tests.docker._deploy_doc import ray_start_command
from tests.docker.conftest import K8S_DIR

Document = dict[str, Any]
# KubeRay appends these to the `ray start` it builds from rayStartParams.
KUBERAY_HEAD_FLAGS = {"--block"}
KUBERAY_WORKER_FLAGS = {"--block", "--address"}


def _documents(documents: list[tuple[str, Document]], kind: str) -> list[Document]:
    return [document for _, document in documents if document["kind"] == kind]


def _one(documents: list[tuple[str, Document]], kind: str) -> Document:
    (document,) = _documents(documents, kind)
    return document


def _pod_specs(document: Document) -> dict[str, Document]:
    """Role -> pod spec of a Deployment (``api``) or a RayCluster (``head``, worker group names)."""
    if document["kind"] == "Deployment":
        return {document["metadata"]["name"]: document["spec"]["template"]["spec"]}
    spec = document["spec"]
    pods = {"head": spec["headGroupSpec"]["template"]["spec"]}
    for group in spec.get("workerGroupSpecs", []):
        pods[group["groupName"]] = group["template"]["spec"]
    return pods


def _workloads(documents: list[tuple[str, Document]]) -> dict[str, Document]:
    return {
        role: pod
        for _, document in documents
        if document["kind"] in ("Deployment", "RayCluster")
        for role, pod in _pod_specs(document).items()
    }


def _environment(container: Document, documents: list[tuple[str, Document]]) -> dict[str, str]:
    """The container's environment: envFrom ConfigMaps, then env (secrets from the example)."""
    config_maps = {item["metadata"]["name"]: item for item in _documents(documents, "ConfigMap")}
    secrets = {item["metadata"]["name"]: item for item in _documents(documents, "Secret")}
    environment: dict[str, str] = {}
    for source in container.get("envFrom", []):
        environment |= config_maps[source["configMapRef"]["name"]]["data"]
    for variable in container.get("env", []):
        if "value" in variable:
            environment[variable["name"]] = variable["value"]
        else:
            reference = variable["valueFrom"]["secretKeyRef"]
            environment[variable["name"]] = secrets[reference["name"]]["stringData"][
                reference["key"]
            ]
    return environment


def _claims(pod: Document, container: Document) -> dict[str, str]:
    """Mount path -> PersistentVolumeClaim name, for the container's claim-backed mounts."""
    volumes = {
        volume["name"]: volume["persistentVolumeClaim"]["claimName"]
        for volume in pod.get("volumes", [])
        if "persistentVolumeClaim" in volume
    }
    return {
        mount["mountPath"]: volumes[mount["name"]]
        for mount in container.get("volumeMounts", [])
        if mount["name"] in volumes
    }


def _settings(monkeypatch: pytest.MonkeyPatch, environment: dict[str, str]) -> Settings:
    for name in list(os.environ):
        if name.startswith("EXTRAP_"):
            monkeypatch.delenv(name)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    return Settings()


def _port(container: Document, port: int | str) -> int:
    """A numeric port, or the containerPort a named port stands for."""
    if isinstance(port, int):
        return port
    (number,) = [item["containerPort"] for item in container["ports"] if item["name"] == port]
    return int(number)


def test_every_manifest_names_its_kind(k8s_documents: list[tuple[str, Document]]) -> None:
    for file_name, document in k8s_documents:
        assert document.get("apiVersion"), file_name
        assert document.get("kind"), file_name
        if document["kind"] != "Kustomization":
            assert document.get("metadata", {}).get("name"), file_name


def test_kustomization_applies_everything_but_the_secret_example(
    k8s_documents: list[tuple[str, Document]],
) -> None:
    kustomization = _one(k8s_documents, "Kustomization")
    manifests = {path.name for path in K8S_DIR.glob("*.yaml")}
    assert set(kustomization["resources"]) == manifests - {
        "kustomization.yaml",
        "secret.example.yaml",
    }


def test_containers_have_images_and_ports(k8s_documents: list[tuple[str, Document]]) -> None:
    for role, pod in _workloads(k8s_documents).items():
        for container in pod["containers"]:
            assert container.get("image"), role
            assert container.get("ports"), role
            assert all(isinstance(port["containerPort"], int) for port in container["ports"])


def test_extrap_variables_are_settings(
    k8s_documents: list[tuple[str, Document]], valid_env_names: set[str]
) -> None:
    names: set[str] = set()
    for _, document in k8s_documents:
        if document["kind"] == "ConfigMap":
            names |= set(document["data"])
        elif document["kind"] == "Secret":
            names |= set(document["stringData"])
    for pod in _workloads(k8s_documents).values():
        for container in pod["containers"]:
            names |= {variable["name"] for variable in container.get("env", [])}
    extrap = {name for name in names if name.startswith("EXTRAP_")}
    assert extrap, "no EXTRAP_ variable found"
    assert extrap <= valid_env_names, sorted(extrap - valid_env_names)


def test_references_resolve(k8s_documents: list[tuple[str, Document]]) -> None:
    claims = {
        item["metadata"]["name"] for item in _documents(k8s_documents, "PersistentVolumeClaim")
    }
    for pod in _workloads(k8s_documents).values():
        for container in pod["containers"]:
            _environment(container, k8s_documents)  # KeyError on a dangling ConfigMap/Secret ref
        for volume in pod.get("volumes", []):
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims


def test_shared_claims_are_read_write_many(k8s_documents: list[tuple[str, Document]]) -> None:
    for claim in _documents(k8s_documents, "PersistentVolumeClaim"):
        assert claim["spec"]["accessModes"] == ["ReadWriteMany"], claim["metadata"]["name"]


def test_api_probes_and_port(k8s_documents: list[tuple[str, Document]]) -> None:
    deployment = _one(k8s_documents, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    default_port = Settings.model_fields["port"].default
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        check = container[probe]["httpGet"]
        assert check["path"] == path
        assert _port(container, check["port"]) == default_port
    (service,) = _documents(k8s_documents, "Service")
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    (port,) = service["spec"]["ports"]
    assert _port(container, port["targetPort"]) == default_port


def test_raycluster_autoscales_a_gpu_group(k8s_documents: list[tuple[str, Document]]) -> None:
    cluster = _one(k8s_documents, "RayCluster")
    assert cluster["apiVersion"] == "ray.io/v1"
    assert cluster["spec"]["enableInTreeAutoscaling"] is True
    groups = cluster["spec"]["workerGroupSpecs"]
    assert groups
    for group in groups:
        assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        assert group["maxReplicas"] >= 1
        for container in group["template"]["spec"]["containers"]:
            assert int(container["resources"]["limits"]["nvidia.com/gpu"]) >= 1


def test_ray_start_is_the_documented_one(k8s_documents: list[tuple[str, Document]]) -> None:
    cluster = _one(k8s_documents, "RayCluster")["spec"]

    def flags(params: dict[str, str]) -> set[str]:
        return {token for key, value in params.items() for token in shlex.split(f"--{key}={value}")}

    head = ray_start_command("--head")
    assert head[:3] == ["ray", "start", "--head"]
    assert flags(cluster["headGroupSpec"]["rayStartParams"]) | KUBERAY_HEAD_FLAGS == set(head[3:])
    worker = {token.split("=")[0] for token in ray_start_command("--address")[2:]}
    for group in cluster["workerGroupSpecs"]:
        assert flags(group["rayStartParams"]) | KUBERAY_WORKER_FLAGS == worker


def test_api_settings_point_at_the_cluster(
    k8s_documents: list[tuple[str, Document]], monkeypatch: pytest.MonkeyPatch
) -> None:
    deployment = _one(k8s_documents, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    settings = _settings(monkeypatch, _environment(container, k8s_documents))

    cluster = _one(k8s_documents, "RayCluster")
    ray = urlsplit(settings.ray_address or "")
    assert ray.hostname == f"{cluster['metadata']['name']}-head-svc"  # KubeRay's head Service
    (head,) = cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"]
    assert ray.port == _port(head, "dashboard")
    assert str(ray.port) == cluster["spec"]["headGroupSpec"]["rayStartParams"]["dashboard-port"]

    (service,) = _documents(k8s_documents, "Service")
    public = urlsplit(settings.resolved_public_url)
    assert public.hostname == service["metadata"]["name"]
    assert public.port == service["spec"]["ports"][0]["port"]
    assert urlsplit(settings.resolved_database_url).scheme == "postgresql+psycopg"


def test_checkpoints_and_data_are_shared(
    k8s_documents: list[tuple[str, Document]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from trainers.workloads import default_data_dir

    deployment = _one(k8s_documents, "Deployment")
    api_pod = deployment["spec"]["template"]["spec"]
    (api,) = api_pod["containers"]
    settings = _settings(monkeypatch, _environment(api, k8s_documents))
    api_claims = _claims(api_pod, api)
    (data_root,) = settings.resolved_data_roots
    storage_claim = api_claims.get(settings.resolved_storage_path)
    data_claim = api_claims.get(str(data_root))
    assert storage_claim, f"the API mounts no claim at {settings.resolved_storage_path}"
    assert data_claim, f"the API mounts no claim at {data_root}"
    for role, pod in _pod_specs(_one(k8s_documents, "RayCluster")).items():
        for container in pod["containers"]:
            ray_settings = _settings(monkeypatch, _environment(container, k8s_documents))
            claims = _claims(pod, container)
            assert claims.get(ray_settings.resolved_storage_path) == storage_claim, role
            assert claims.get(str(default_data_dir())) == data_claim, role


def test_ray_auth_is_disabled_behind_a_network_policy(
    k8s_documents: list[tuple[str, Document]],
) -> None:
    for role, pod in _workloads(k8s_documents).items():
        for container in pod["containers"]:
            assert _environment(container, k8s_documents).get("RAY_AUTH_MODE") == "disabled", role
    cluster = _one(k8s_documents, "RayCluster")["metadata"]["name"]
    policy = _one(k8s_documents, "NetworkPolicy")
    assert policy["spec"]["podSelector"]["matchLabels"] == {"ray.io/cluster": cluster}
    assert policy["spec"]["policyTypes"] == ["Ingress"]


def test_images_are_the_ones_compose_builds(
    k8s_documents: list[tuple[str, Document]], compose_model: Any
) -> None:
    services = compose_model["services"]
    workloads = _workloads(k8s_documents)
    (api,) = workloads["extrap-api"]["containers"]
    assert api["image"] == services["api"]["image"]
    for role, pod in workloads.items():
        if role != "extrap-api":
            for container in pod["containers"]:
                assert container["image"] == services["ray-worker"]["image"], role
