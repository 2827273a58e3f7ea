"""The OpenAPI document describes every status and error body each operation answers, so
clients and fuzzers can rely on it (``tests/fuzz`` checks the answers against it)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.service.conftest import Api

PUBLIC = {"/healthz", "/readyz", "/metrics"}
ERROR_REF = "#/components/schemas/ErrorPublic"


@pytest.fixture(scope="module")
def schema(api: Api) -> dict[str, Any]:
    document: dict[str, Any] = api.client.get("/openapi.json").json()
    return document


def _operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
    ]


def test_every_protected_operation_documents_401_422_and_503_as_the_error_body(
    schema: dict[str, Any],
) -> None:
    for method, path, operation in _operations(schema):
        if path in PUBLIC:
            assert operation["security"] == [], path
            continue
        for status in ("401", "422", "503"):
            response = operation["responses"].get(status)
            assert response is not None, (method, path, status)
            body = response["content"]["application/json"]["schema"]
            assert body == {"$ref": ERROR_REF}, (method, path, status)


def test_operations_on_one_sweep_document_404(schema: dict[str, Any]) -> None:
    for method, path, operation in _operations(schema):
        if path.startswith("/v1/sweeps/{sweep_id}"):
            assert "404" in operation["responses"], (method, path)


def test_submission_documents_the_dry_run_and_every_refusal(schema: dict[str, Any]) -> None:
    post = schema["paths"]["/v1/sweeps"]["post"]
    responses = post["responses"]
    assert set(responses) >= {"200", "201", "400", "401", "413", "415", "422", "429", "503"}
    dry_run = responses["200"]["content"]["application/json"]["schema"]
    assert dry_run == {"$ref": "#/components/schemas/DryRunPublic"}
    created = responses["201"]["content"]["application/json"]["schema"]
    assert created == {"$ref": "#/components/schemas/SweepPublic"}
    assert "Retry-After" in responses["429"]["headers"]
    body = post["requestBody"]["content"]
    assert body["application/json"]["schema"] == {"$ref": "#/components/schemas/SweepSpec"}
    assert "application/yaml" in body
    names = {parameter["name"] for parameter in post["parameters"]}
    assert names == {"dry_run", "Idempotency-Key"}


def test_state_changes_document_409(schema: dict[str, Any]) -> None:
    paths = schema["paths"]
    for path, method in [
        ("/v1/sweeps/{sweep_id}/cancel", "post"),
        ("/v1/sweeps/{sweep_id}/resume", "post"),
        ("/v1/sweeps/{sweep_id}", "delete"),
    ]:
        assert "409" in paths[path][method]["responses"], path


def test_bodies_read_after_authentication_have_their_schemas(schema: dict[str, Any]) -> None:
    components = schema["components"]["schemas"]
    for path, method, name in [
        ("/v1/sweeps/{sweep_id}/resume", "post", "ResumeRequest"),
        ("/internal/v1/sweeps/{sweep_id}/events", "post", "DriverEventsIn"),
    ]:
        content = schema["paths"][path][method]["requestBody"]["content"]
        assert content["application/json"]["schema"] == {"$ref": f"#/components/schemas/{name}"}
        assert name in components


def test_no_error_is_documented_in_fastapis_own_shape(schema: dict[str, Any]) -> None:
    components = schema["components"]["schemas"]
    assert "HTTPValidationError" not in components and "ValidationError" not in components
    assert '"detail"' not in str(schema.get("paths"))


def test_integers_are_bounded_at_the_edge(schema: dict[str, Any]) -> None:
    for _method, path, operation in _operations(schema):
        for parameter in operation.get("parameters", []):
            kind = parameter["schema"]
            kinds = [kind, *kind.get("anyOf", [])]
            for each in kinds:
                if each.get("type") == "integer":
                    assert "maximum" in each and "minimum" in each, (path, parameter["name"])
