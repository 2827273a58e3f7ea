"""What a trial asks of Ray, and will it fit? Pure arithmetic on resource dicts (no Ray import).

A trial is a placement group (:func:`trial_bundles`): one bundle for its Tune trainable (one
unit of the ``train_driver`` resource, no CPU, so that a 2-worker trial fits on 2 CPUs) and
one bundle per data-parallel worker (``cpus_per_worker`` CPUs, ``gpus_per_worker`` GPUs).
The driver asks Ray for ``cluster_resources()``; the API asks the dashboard over HTTP; both
call :func:`placement_errors` so the message reads the same.
"""

from __future__ import annotations

from collections.abc import Mapping

from trainers.config import TrainJobConfig

__all__ = ["TRIAL_DRIVER_RESOURCE", "placement_errors", "trial_bundles", "trial_resources"]

# Every trial's Tune function holds one unit of this custom resource instead of a CPU, so that
# a 2-worker trial runs on a 2-CPU machine (Ray's default of 1 CPU per trial would hang it).
TRIAL_DRIVER_RESOURCE = "train_driver"


def trial_bundles(job: TrainJobConfig) -> list[dict[str, float]]:
    """The placement group of one trial: the trainable's bundle, then one per worker.

    Example:
        >>> job = TrainJobConfig(workload="mnist1d", global_batch_size=64, workers=2, epochs=1)
        >>> trial_bundles(job)
        [{'train_driver': 1.0}, {'CPU': 1.0}, {'CPU': 1.0}]
    """
    worker: dict[str, float] = {"CPU": job.cpus_per_worker}
    if job.gpus_per_worker > 0:
        worker["GPU"] = job.gpus_per_worker
    return [{TRIAL_DRIVER_RESOURCE: 1.0}] + [dict(worker) for _ in range(job.workers)]


def trial_resources(job: TrainJobConfig) -> dict[str, float]:
    """What one trial needs in total (the sum of its bundles)."""
    needs: dict[str, float] = {}
    for bundle in trial_bundles(job):
        for name, amount in bundle.items():
            needs[name] = needs.get(name, 0.0) + amount
    return needs


def placement_errors(
    job: TrainJobConfig,
    cluster: Mapping[str, float],
    *,
    autoscaling_max: Mapping[str, float] | None = None,
) -> list[str]:
    """Messages for every resource a trial needs more of than the cluster has (or can scale to).

    Example:
        >>> job = TrainJobConfig(workload="mnist1d", global_batch_size=64, workers=4, epochs=1)
        >>> print(placement_errors(job, {"CPU": 2.0, "train_driver": 1.0})[0][:60])
        a trial needs 4 CPU (workers=4 x cpus_per_worker=1.0) but th
    """
    limit = dict(cluster)
    for name, value in (autoscaling_max or {}).items():
        limit[name] = max(limit.get(name, 0.0), value)
    errors = []
    for name, needed in trial_resources(job).items():
        available = limit.get(name, 0.0)
        if needed <= available + 1e-9:
            continue
        if name == TRIAL_DRIVER_RESOURCE:
            errors.append(
                f"the cluster offers no '{TRIAL_DRIVER_RESOURCE}' resource for trial drivers; "
                f"start the head with --resources='{{\"{TRIAL_DRIVER_RESOURCE}\": N}}'"
            )
            continue
        per_worker = job.cpus_per_worker if name == "CPU" else job.gpus_per_worker
        field = "cpus_per_worker" if name == "CPU" else "gpus_per_worker"
        errors.append(
            f"a trial needs {needed:g} {name} (workers={job.workers} x {field}={per_worker}) "
            f"but the cluster has {available:g} {name}; lower workers or {field}, or add nodes"
        )
    return errors
