"""Connecting the runtime to Ray, and the Tune settings every sweep process runs with.

``RAY_ADDRESS`` set: that cluster. Otherwise a local Ray sized to this machine, with one
``train_driver`` unit per concurrent trial slot (see :mod:`search_spaces.resources`), and
without Ray's dashboard: nothing here uses it, and starting it is a third of ``ray.init``
(6.0 s with it, 4.0 s without, on the 2-core machine). ``EXTRAP_RAY_DASHBOARD=1`` starts it.
"""

from __future__ import annotations

import os

from search_spaces.resources import TRIAL_DRIVER_RESOURCE

__all__ = ["ensure_ray", "tune_environment"]


def tune_environment() -> None:
    """Tune's process-wide settings for sweeps (set before the first Tuner is built).

    - ``TUNE_GLOBAL_CHECKPOINT_S=2``: Tune saves its experiment state at most every 10 s by
      default; a driver killed in that window would relaunch trials that had finished.
    - ``TUNE_DISABLE_STRICT_METRIC_CHECKING=1``: a result without the objective (a trial
      ending without a new epoch) must not abort the whole experiment.
    - ``RAY_AIR_NEW_OUTPUT=0`` and ``verbose=0`` (in the run config): no status tables on
      stdout; the runtime reports through its events.
    """
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "2")
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # Our checkpoints are small and frequent; the experiment snapshots they force are cheap.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")


def ensure_ray(max_concurrent_trials: int | None = None) -> None:
    """Connect to Ray: ``RAY_ADDRESS`` if set, else start a local Ray sized to this machine."""
    import ray

    if ray.is_initialized():
        return
    if os.environ.get("RAY_ADDRESS"):
        ray.init()
        return
    cpus = os.cpu_count() or 1
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a private, local-only Ray
    slots = max(max_concurrent_trials or cpus, 1)
    dashboard = os.environ.get("EXTRAP_RAY_DASHBOARD", "") not in ("", "0")
    ray.init(num_cpus=cpus, resources={TRIAL_DRIVER_RESOURCE: slots}, include_dashboard=dashboard)
