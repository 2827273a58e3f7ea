"""Test doubles: a dispatcher that records what it was asked instead of talking to Ray."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

from service.server.dispatch.base import (
    ClusterResources,
    DispatcherUnavailable,
    JobInfo,
    JobStatus,
)


@dataclass
class Submission:
    submission_id: str
    entrypoint: str
    env_vars: dict[str, str]


@dataclass
class FakeDispatcher:
    """Keeps jobs in memory; tests set their status and the cluster's size."""

    total: dict[str, float] = field(
        default_factory=lambda: {"CPU": 8.0, "GPU": 0.0, "train_driver": 4.0}
    )
    reachable: bool = True
    submissions: list[Submission] = field(default_factory=list)
    statuses: dict[str, JobStatus] = field(default_factory=dict)
    stopped: list[str] = field(default_factory=list)
    log_text: str = "line 1\nline 2\nline 3\n"
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def address(self) -> str:
        return "fake://ray"

    def _check(self) -> None:
        if not self.reachable:
            raise DispatcherUnavailable("fake Ray is down")

    def submit(self, *, submission_id: str, entrypoint: str, env_vars: Mapping[str, str]) -> str:
        self._check()
        with self._lock:
            self.submissions.append(Submission(submission_id, entrypoint, dict(env_vars)))
            self.statuses[submission_id] = JobStatus.RUNNING
        return submission_id

    def job(self, job_id: str) -> JobInfo | None:
        self._check()
        status = self.statuses.get(job_id)
        return JobInfo(job_id, status, "fake message") if status is not None else None

    def stop(self, job_id: str) -> None:
        self._check()
        with self._lock:
            self.stopped.append(job_id)
            if job_id in self.statuses:
                self.statuses[job_id] = JobStatus.STOPPED

    def logs(self, job_id: str) -> str:
        self._check()
        return self.log_text if job_id in self.statuses else ""

    def resources(self) -> ClusterResources:
        self._check()
        return ClusterResources(total=dict(self.total), largest_node=dict(self.total))

    def ping(self) -> None:
        self._check()

    def close(self) -> None:
        pass

    def last_for(self, sweep_id: str) -> Submission:
        """The latest submission of a sweep's driver."""
        matching = [s for s in self.submissions if f"--sweep-id {sweep_id}" in s.entrypoint]
        assert matching, f"no driver submitted for sweep {sweep_id}"
        return matching[-1]
