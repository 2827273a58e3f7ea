"""The :class:`Dispatcher` for Ray: the head's job-submission REST API, over httpx.

Endpoints used (Ray 2.60 dashboard): ``POST /api/jobs/``, ``GET /api/jobs/{id}``,
``POST /api/jobs/{id}/stop``, ``GET /api/jobs/{id}/logs``, ``GET /api/version`` (liveness) and
``GET /api/v0/nodes?detail=1`` (the state API: each node's ``resources_total`` under Ray's own
resource names).

Example:
    >>> dispatcher = RayJobDispatcher("http://127.0.0.1:8265")  # doctest: +SKIP
    >>> dispatcher.submit(submission_id="s1", entrypoint="python -V", env_vars={})  # doctest: +SKIP
    's1'
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from service.server.dispatch.base import (
    ClusterResources,
    DispatcherUnavailable,
    DispatchRejected,
    JobInfo,
    JobStatus,
)
from service.server.dispatch.ray_auth import ray_auth_headers

__all__ = ["RayJobDispatcher"]


class RayJobDispatcher:
    """Submit and watch driver jobs on a Ray head.

    Args:
        address: the head's dashboard URL, e.g. ``http://head:8265``.
        token: Ray's auth token, sent as ``Authorization: Bearer`` (``None``: auth disabled).
        timeout_s: per-request timeout.
    """

    def __init__(self, address: str, *, token: str | None = None, timeout_s: float = 10.0) -> None:
        self._address = address.rstrip("/")
        self._client = httpx.Client(
            base_url=self._address, headers=ray_auth_headers(token), timeout=timeout_s
        )

    @property
    def address(self) -> str:
        return self._address

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise DispatcherUnavailable(f"Ray at {self._address} unreachable: {exc}") from exc
        if response.status_code in (401, 403):
            raise DispatcherUnavailable(
                f"Ray at {self._address} refused the credentials ({response.status_code}): "
                "set RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH to the cluster's token"
            )
        if response.status_code >= 500:
            raise DispatcherUnavailable(
                f"Ray at {self._address} answered {response.status_code}: {response.text[:500]}"
            )
        return response

    def submit(self, *, submission_id: str, entrypoint: str, env_vars: Mapping[str, str]) -> str:
        body = {
            "entrypoint": entrypoint,
            "submission_id": submission_id,
            "entrypoint_num_cpus": 0,  # the driver only coordinates; trials hold the resources
            "runtime_env": {"env_vars": dict(env_vars)},
            "metadata": {"extrap.kind": "sweep-driver"},
        }
        response = self._request("POST", "/api/jobs/", json=body)
        if response.status_code >= 400:
            raise DispatchRejected(f"Ray refused the job ({response.status_code}): {response.text}")
        return str(response.json().get("submission_id") or submission_id)

    def job(self, job_id: str) -> JobInfo | None:
        response = self._request("GET", f"/api/jobs/{job_id}")
        if response.status_code == 404:
            return None
        response.raise_for_status()
        data = response.json()
        return JobInfo(job_id=job_id, status=JobStatus(data["status"]), message=data.get("message"))

    def stop(self, job_id: str) -> None:
        response = self._request("POST", f"/api/jobs/{job_id}/stop")
        if response.status_code not in (200, 404):
            response.raise_for_status()

    def logs(self, job_id: str) -> str:
        response = self._request("GET", f"/api/jobs/{job_id}/logs")
        if response.status_code == 404:
            return ""
        response.raise_for_status()
        return str(response.json().get("logs", ""))

    def resources(self) -> ClusterResources:
        response = self._request("GET", "/api/v0/nodes", params={"detail": "1", "limit": "1000"})
        response.raise_for_status()
        nodes = response.json()["data"]["result"]["result"]
        total: dict[str, float] = {}
        largest: dict[str, float] = {}
        for node in nodes:
            if node.get("state") != "ALIVE":
                continue
            for name, amount in (node.get("resources_total") or {}).items():
                total[name] = total.get(name, 0.0) + float(amount)
                largest[name] = max(largest.get(name, 0.0), float(amount))
        return ClusterResources(total=total, largest_node=largest)

    def ping(self) -> None:
        response = self._request("GET", "/api/version")
        if response.status_code != 200:
            raise DispatcherUnavailable(f"Ray at {self._address} answered {response.status_code}")

    def close(self) -> None:
        self._client.close()
