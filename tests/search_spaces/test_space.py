"""Parameter specs, conditions and apply_params."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from search_spaces import (
    SEARCHABLE_PARAMS,
    CategoricalParam,
    FloatParam,
    IntParam,
    ParamSpec,
    UnknownSearchableError,
    apply_params,
    condition_holds,
    dependency_order,
    get_searchable,
)
from trainers.config import TrainJobConfig

PARAM = TypeAdapter(ParamSpec)
JOB = TrainJobConfig(workload="mnist1d", global_batch_size=512, epochs=3)


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        ({"low": 0.01, "high": 1.0}, FloatParam),
        ({"low": 1, "high": 8}, IntParam),
        ({"low": 1, "high": 8, "type": "float"}, FloatParam),
        ({"choices": ["none", "past"]}, CategoricalParam),
        (["none", "past"], CategoricalParam),
    ],
)
def test_type_may_be_left_out(data: Any, kind: type) -> None:
    assert isinstance(PARAM.validate_python(data), kind)


def test_when_accepts_a_single_value() -> None:
    param = PARAM.validate_python({"low": 0.1, "high": 0.5, "when": {"extrapolation": "sam"}})

    assert param.when == {"extrapolation": ["sam"]}


@pytest.mark.parametrize(
    ("when", "values", "holds"),
    [
        ({}, {}, True),
        ({"extrapolation": ["gradient", "past"]}, {"extrapolation": "past"}, True),
        ({"extrapolation": ["gradient"]}, {"extrapolation": "none"}, False),
        ({"extrapolation": ["gradient"]}, {}, False),
        ({"nesterov": [True]}, {"nesterov": 1}, False),
        (
            {"extrapolation": ["gradient"], "noise": ["uniform"]},
            {"extrapolation": "gradient", "noise": "gaussian"},
            False,
        ),
    ],
)
def test_condition_holds(when: dict[str, list[Any]], values: dict[str, Any], holds: bool) -> None:
    assert condition_holds(when, values) is holds


def test_dependency_order_puts_conditions_first_and_keeps_spec_order() -> None:
    space: dict[str, Any] = {
        "noise_std": FloatParam(low=0.01, high=0.1, when={"noise": ["uniform"]}),
        "lr": FloatParam(low=0.01, high=1.0),
        "noise": CategoricalParam(
            choices=["gaussian", "uniform"], when={"extrapolation": ["noise"]}
        ),
        "extrapolation": CategoricalParam(choices=["none", "noise"]),
    }

    assert dependency_order(space) == ["lr", "extrapolation", "noise", "noise_std"]


def test_apply_params_puts_values_at_their_paths() -> None:
    params = {
        "lr": 0.05,
        "extrapolation": "past",
        "warmup_epochs": 2.0,
        "milestones": [0.3, 0.6],
        "gamma_schedule": "follow_lr",
        "second_batch": "fresh",
        "workload.hidden": 64,
    }

    job = apply_params(JOB, params)

    assert job.optimizer.lr == 0.05
    assert job.optimizer.extrapolation == "past"
    assert job.schedule.warmup_epochs == 2.0
    assert job.schedule.milestones == [0.3, 0.6]
    assert job.gamma_schedule.kind == "follow_lr"
    assert job.second_batch == "fresh"
    assert job.workload_options == {"hidden": 64}
    assert JOB.optimizer.lr == 0.1  # the sweep's job is left alone


@pytest.mark.parametrize(
    "params",
    [{"nesterov": True, "momentum": 0.0}, {"extrapolation": "sam"}, {"workload.hidden": 0}],
)
def test_apply_params_revalidates(params: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        apply_params(JOB, params)


def test_apply_params_rejects_unknown_names() -> None:
    with pytest.raises(UnknownSearchableError, match="use one of: lr"):
        apply_params(JOB, {"learning_rate": 0.1})


@pytest.mark.parametrize("name", list(SEARCHABLE_PARAMS))
def test_every_searchable_path_exists_in_the_job_config(name: str) -> None:
    model: Any = TrainJobConfig
    for part in get_searchable(name).path_parts:
        assert part in model.model_fields, f"{name}: {part}"
        model = model.model_fields[part].annotation


def test_searchable_workload_option_maps_to_workload_options() -> None:
    assert get_searchable("workload.num_samples").path == "workload_options.num_samples"


def test_params_are_immutable() -> None:
    param = FloatParam(low=0.1, high=1.0)

    with pytest.raises(ValidationError):
        param.low = 0.2  # type: ignore[misc]
