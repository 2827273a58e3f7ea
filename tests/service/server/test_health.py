"""``/healthz``, ``/readyz`` (which dependency is down) and ``/metrics`` (Prometheus text)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from service.server.api.main import create_app
from service.server.dispatch import RayJobDispatcher
from tests.service.conftest import Api, free_port, make_settings, start_server


def test_healthz(api: Api) -> None:
    assert api.client.get("/healthz").json() == {"status": "ok"}


def test_readyz_ready(api: Api) -> None:
    response = api.client.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json()["checks"] == {"database": "ok", "ray": "ok", "mlflow": "ok"}


def test_readyz_names_ray_when_it_is_down(api: Api) -> None:
    api.fake.reachable = False
    try:
        response = api.client.get("/readyz")
    finally:
        api.fake.reachable = True
    assert response.status_code == 503
    body = response.json()
    assert body["error"]["code"] == "not_ready"
    assert [d["dependency"] for d in body["error"]["details"]] == ["ray"]
    assert body["checks"]["database"] == "ok" and body["checks"]["ray"] != "ok"


@pytest.fixture(scope="module")
def unreachable(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server whose Ray and MLflow addresses answer nothing."""
    port = free_port()
    settings = make_settings(
        tmp_path_factory.mktemp("home"),
        f"sqlite:///{tmp_path_factory.mktemp('db') / 'x.db'}",
        port,
        mlflow_tracking_uri=f"http://127.0.0.1:{free_port()}",
    )
    dispatcher = RayJobDispatcher(f"http://127.0.0.1:{free_port()}", timeout_s=2.0)
    live = start_server(create_app(settings, dispatcher=dispatcher, supervise=False), port)
    yield live.url
    live.stop()


def test_readyz_with_a_real_but_absent_ray_and_mlflow(unreachable: str) -> None:
    response = httpx.get(f"{unreachable}/readyz", timeout=30)
    assert response.status_code == 503
    failing = {d["dependency"] for d in response.json()["error"]["details"]}
    assert failing == {"ray", "mlflow"}
    assert "unreachable" in response.json()["checks"]["ray"]


def test_metrics_text_format(api: Api) -> None:
    headers = api.user()
    api.submit(headers)
    api.client.get("/v1/sweeps", headers=headers)
    response = api.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert "# TYPE extrap_http_request_duration_seconds histogram" in text
    assert 'route="/v1/sweeps"' in text and 'method="GET"' in text
    assert "# TYPE extrap_sweeps gauge" in text
    queued = [
        line for line in text.splitlines() if line.startswith('extrap_sweeps{state="queued"}')
    ]
    assert queued and float(queued[0].split()[-1]) >= 1
    assert 'extrap_trials{status="running"}' in text
