"""What the service needs from a cluster: the :class:`Dispatcher` protocol and its values.

The service never imports Ray: :class:`~service.server.dispatch.ray_jobs.RayJobDispatcher`
speaks the Ray head's job-submission REST API over HTTP, and tests can stand in a fake.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, runtime_checkable

__all__ = [
    "ClusterResources",
    "DispatchRejected",
    "Dispatcher",
    "DispatcherUnavailable",
    "JobInfo",
    "JobStatus",
]


class JobStatus(StrEnum):
    """A Ray job's status, as the job-submission API names it."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    STOPPED = "STOPPED"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


_TERMINAL = frozenset({JobStatus.STOPPED, JobStatus.SUCCEEDED, JobStatus.FAILED})


@dataclass(frozen=True)
class JobInfo:
    """One submitted driver job."""

    job_id: str
    status: JobStatus
    message: str | None = None

    @property
    def terminal(self) -> bool:
        """The job's process is gone (it ended, failed or was stopped)."""
        return self.status in _TERMINAL


@dataclass(frozen=True)
class ClusterResources:
    """Resources of the live nodes: the cluster's totals and the largest single node's."""

    total: Mapping[str, float] = field(default_factory=dict)
    largest_node: Mapping[str, float] = field(default_factory=dict)


class DispatcherUnavailable(RuntimeError):
    """The cluster could not be reached (try again later)."""


class DispatchRejected(RuntimeError):
    """The cluster refused the request (retrying the same request will not help)."""


@runtime_checkable
class Dispatcher(Protocol):
    """Submits sweep drivers to a cluster and watches them."""

    @property
    def address(self) -> str:
        """Where the cluster is, for messages (e.g. the dashboard URL)."""
        ...

    def submit(self, *, submission_id: str, entrypoint: str, env_vars: Mapping[str, str]) -> str:
        """Start ``entrypoint`` as a job; return its id. Raises DispatchRejected/Unavailable."""
        ...

    def job(self, job_id: str) -> JobInfo | None:
        """The job's status, or ``None`` if the cluster does not know it (e.g. a new head)."""
        ...

    def stop(self, job_id: str) -> None:
        """Ask the cluster to stop the job (idempotent; unknown jobs are fine)."""
        ...

    def logs(self, job_id: str) -> str:
        """The job's log so far (empty if the cluster does not know it)."""
        ...

    def resources(self) -> ClusterResources:
        """The live nodes' resources."""
        ...

    def ping(self) -> None:
        """Return if the cluster answers, else raise DispatcherUnavailable."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...
