"""A real API server process for the abuse and load tests.

Run as ``python -m tests.service.server._serve``.

Its settings come from the ``EXTRAP_*`` environment like the service's own. ``--fake-cluster``
gives it a cluster in memory (8 CPUs, every job running: nothing leaves the machine); without
it the settings' Ray address is used (the load test points it at a port where nothing listens).
``--supervise`` runs the launcher and reconciler. ``--fault-route`` adds ``GET /test/fault``,
which fails with a deep RecursionError, to see what a 500 does to the log.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping

import uvicorn

from service.server.api.main import create_app
from service.server.dispatch.base import ClusterResources, JobInfo, JobStatus
from service.settings import Settings


class StaticCluster:
    """A cluster in memory: 8 CPUs, 4 driver slots, every job running."""

    address = "static://"

    def submit(self, *, submission_id: str, entrypoint: str, env_vars: Mapping[str, str]) -> str:
        return submission_id

    def job(self, job_id: str) -> JobInfo | None:
        return JobInfo(job_id, JobStatus.RUNNING)

    def stop(self, job_id: str) -> None:
        pass

    def logs(self, job_id: str) -> str:
        return "line 1\n"

    def resources(self) -> ClusterResources:
        total = {"CPU": 8.0, "GPU": 0.0, "train_driver": 4.0}
        return ClusterResources(total=total, largest_node=dict(total))

    def ping(self) -> None:
        pass

    def close(self) -> None:
        pass


def _recurse(depth: int) -> int:
    return _recurse(depth + 1) + 1


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fake-cluster", action="store_true")
    parser.add_argument("--supervise", action="store_true")
    parser.add_argument("--fault-route", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    settings = Settings()
    dispatcher = StaticCluster() if args.fake_cluster else None
    app = create_app(settings, dispatcher=dispatcher, supervise=args.supervise)
    if args.fault_route:

        @app.get("/test/fault", include_in_schema=False)
        def fault() -> int:
            return _recurse(0)

    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning")


if __name__ == "__main__":
    main()
