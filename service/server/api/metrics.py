"""Prometheus metrics of one app: a registry of its own (several apps may share a process).

- ``extrap_http_request_duration_seconds{method, route, status}``: request latency;
- ``extrap_sweeps{state}``, ``extrap_trials{status}``: counted from the database at scrape time.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from service.server.db import Database
from service.server.models import Sweep, Trial
from service.wire import SweepState, TrialStatus

__all__ = ["AppMetrics"]

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _DatabaseCounts(Collector):
    def __init__(self, db: Database) -> None:
        self.db = db

    def collect(self) -> Iterator[GaugeMetricFamily]:
        sweeps = GaugeMetricFamily("extrap_sweeps", "Sweeps by state", labels=["state"])
        trials = GaugeMetricFamily("extrap_trials", "Trials by status", labels=["status"])
        with self.db.read() as session:
            by_state = dict(
                session.execute(select(Sweep.state, func.count()).group_by(Sweep.state)).all()
            )
            by_status = dict(
                session.execute(select(Trial.status, func.count()).group_by(Trial.status)).all()
            )
        for state in SweepState:
            sweeps.add_metric([state.value], float(by_state.get(state.value, 0)))
        for status in TrialStatus:
            trials.add_metric([status.value], float(by_status.get(status.value, 0)))
        yield sweeps
        yield trials


class AppMetrics:
    """The registry and instruments of one app."""

    def __init__(self, db: Database) -> None:
        self.registry = CollectorRegistry()
        self.request_latency = Histogram(
            "extrap_http_request_duration_seconds",
            "HTTP request latency",
            labelnames=["method", "route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_DatabaseCounts(db))
