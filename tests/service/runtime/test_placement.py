"""What a trial asks of Ray: its placement group, and the backend its workers talk over."""

from __future__ import annotations

import pytest

from search_spaces.resources import trial_bundles, trial_resources
from service.runtime.workers import choose_backend
from trainers.config import TrainJobConfig


def _job(**resources: float) -> TrainJobConfig:
    return TrainJobConfig(workload="mnist1d", global_batch_size=64, epochs=1, **resources)


def test_a_trial_is_a_trainable_bundle_and_one_bundle_per_worker() -> None:
    assert trial_bundles(_job(workers=2)) == [
        {"train_driver": 1.0},
        {"CPU": 1.0},
        {"CPU": 1.0},
    ]
    assert (
        trial_bundles(_job(workers=4, cpus_per_worker=2, gpus_per_worker=1))[1:]
        == [{"CPU": 2.0, "GPU": 1.0}] * 4
    )


def test_fractional_gpus_add_up_per_trial() -> None:
    job = _job(workers=4, cpus_per_worker=1, gpus_per_worker=0.5)
    assert trial_resources(job) == {"train_driver": 1.0, "CPU": 4.0, "GPU": 2.0}
    assert {bundle.get("GPU") for bundle in trial_bundles(job)[1:]} == {0.5}


@pytest.mark.parametrize(
    ("gpu_ids", "backend"),
    [
        ([["0"], ["1"]], "nccl"),
        ([["0", "1"], ["2", "3"]], "nccl"),
        ([["0"], ["0"]], "gloo"),  # two workers on one GPU (gpus_per_worker=0.5)
        ([["0"], []], "gloo"),
        ([[]], "gloo"),
    ],
)
def test_nccl_only_when_every_worker_has_its_own_gpus(
    gpu_ids: list[list[str]], backend: str
) -> None:
    assert choose_backend(gpu_ids) == backend
