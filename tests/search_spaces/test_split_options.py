"""Options that define a workload's data split are set once per sweep, never searched."""

from __future__ import annotations

import pytest

from search_spaces import load_spec, spec_errors
from tests.search_spaces.conftest import make_spec
from trainers.workloads import get_workload_info

LR = {"low": 0.01, "high": 1.0, "log": True}


def test_searching_validation_size_is_refused_with_its_path_and_the_fix() -> None:
    spec = make_spec(space={"workload.validation_size": {"choices": [0.1, 0.2]}, "lr": LR})
    errors = spec_errors(spec)
    assert [error.path for error in errors] == ["space.workload.validation_size"]
    message = errors[0].message
    assert "same data split" in message and "job.workload_options" in message


def test_the_same_option_under_workload_options_is_accepted() -> None:
    spec = load_spec(make_spec(job__workload_options={"validation_size": 0.2}, space={"lr": LR}))
    assert spec.job.workload_options["validation_size"] == 0.2


@pytest.mark.parametrize(
    ("workload", "option", "values"),
    [
        ("mnist1d", "validation_seed", [0, 1]),
        ("mnist1d", "num_samples", [1000, 2000]),
        ("mnist1d", "seed", [1, 2]),
        ("resnet20-cifar10", "validation_size", [1000, 5000]),
    ],
)
def test_every_fixed_option_is_refused(workload: str, option: str, values: list[int]) -> None:
    assert option in get_workload_info(workload).fixed_options
    spec = make_spec(job__workload=workload, space={f"workload.{option}": {"choices": values}})
    assert [error.path for error in spec_errors(spec)] == [f"space.workload.{option}"]


def test_other_workload_options_stay_searchable() -> None:
    spec = make_spec(space={"workload.hidden": {"choices": [50, 100]}, "lr": LR})
    assert spec_errors(spec) == []
