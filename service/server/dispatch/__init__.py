"""Getting sweep drivers onto a cluster: the :class:`Dispatcher` protocol, Ray's job API, and
the local head of the embedded default."""

from __future__ import annotations

from service.server.dispatch.base import (
    ClusterResources,
    Dispatcher,
    DispatcherUnavailable,
    DispatchRejected,
    JobInfo,
    JobStatus,
)
from service.server.dispatch.local_head import HeadInfo, LocalRayHead, RayHeadError
from service.server.dispatch.ray_auth import default_ray_token, ray_auth_headers
from service.server.dispatch.ray_jobs import RayJobDispatcher

__all__ = [
    "ClusterResources",
    "DispatchRejected",
    "Dispatcher",
    "DispatcherUnavailable",
    "HeadInfo",
    "JobInfo",
    "JobStatus",
    "LocalRayHead",
    "RayHeadError",
    "RayJobDispatcher",
    "default_ray_token",
    "ray_auth_headers",
]
