"""Enumerating the reachable categorical combinations of a space."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import TypeAdapter

from search_spaces import ParamSpec, SpecError, load_spec, reachable_combinations, spec_errors
from search_spaces.combinations import workload_option_points
from search_spaces.limits import MAX_COMBINATIONS
from tests.search_spaces.conftest import make_spec

SPACE = TypeAdapter(dict[str, ParamSpec])


def _as_set(combinations: list[dict[str, Any]]) -> set[frozenset[tuple[str, Any]]]:
    assert len({frozenset(c.items()) for c in combinations}) == len(combinations)
    return {frozenset(c.items()) for c in combinations}


def space(**params: Any) -> dict[str, Any]:
    return SPACE.validate_python(params)


def space_of(params: dict[str, Any]) -> dict[str, Any]:
    return SPACE.validate_python(params)


def test_combinations_respect_conditions() -> None:
    report = reachable_combinations(
        space(
            extrapolation=["none", "gradient+noise"],
            noise={
                "choices": ["gaussian", "uniform"],
                "when": {"extrapolation": ["gradient+noise"]},
            },
            nesterov=[True, False],
        )
    )

    assert _as_set(report.combinations) == _as_set(
        [
            {"extrapolation": "none", "nesterov": True},
            {"extrapolation": "none", "nesterov": False},
            {"extrapolation": "gradient+noise", "noise": "gaussian", "nesterov": True},
            {"extrapolation": "gradient+noise", "noise": "gaussian", "nesterov": False},
            {"extrapolation": "gradient+noise", "noise": "uniform", "nesterov": True},
            {"extrapolation": "gradient+noise", "noise": "uniform", "nesterov": False},
        ]
    )
    assert (report.capped, report.never_active) == (False, [])


def test_a_space_without_categoricals_has_one_empty_combination() -> None:
    report = reachable_combinations(space(lr={"low": 0.01, "high": 1.0}))

    assert report.combinations == [{}]


def test_enumeration_is_capped() -> None:
    report = reachable_combinations(
        space(decay=["constant", "cosine"], noise=["gaussian", "uniform"], nesterov=[True, False]),
        limit=5,
    )

    assert (len(report.combinations), report.capped) == (5, True)


def test_parameter_behind_an_impossible_chain_is_never_active() -> None:
    report = reachable_combinations(
        space(
            extrapolation=["none", "noise"],
            noise={"choices": ["gaussian", "uniform"], "when": {"extrapolation": ["noise"]}},
            noise_std={
                "low": 0.01,
                "high": 0.1,
                "when": {"noise": ["uniform"], "extrapolation": ["none"]},
            },
        )
    )

    assert report.never_active == ["noise_std"]


def test_a_space_over_the_combination_cap_is_refused_with_the_counts_and_the_fix() -> None:
    choices = {"choices": [0.0, 0.25, 0.5, 0.75, 0.9]}
    big = {
        "momentum": choices,
        "weight_decay": choices,
        "lr": {"choices": [0.1, 0.2, 0.3, 0.4]},
        "warmup_epochs": choices,
        "gamma_ratio": choices,
        "decay_factor": {"choices": [0.1, 0.2, 0.3, 0.4, 0.5]},
    }

    with pytest.raises(SpecError) as caught:
        load_spec(make_spec(space=big))

    [error] = caught.value.errors
    assert error.path == "space"
    assert "more than 10,000 reachable combinations" in error.message
    assert "up to 12,500" in error.message and "drop choices" in error.message


def test_a_space_at_the_combination_cap_is_accepted() -> None:
    choices = {"choices": [0.0, 0.25, 0.5, 0.75, 0.9]}
    space = {
        "momentum": choices,
        "weight_decay": choices,
        "lr": {"choices": [0.1, 0.2, 0.3, 0.4]},
        "warmup_epochs": choices,
        "gamma_ratio": {"choices": [0.1, 0.2, 0.3, 0.4]},
        "decay_factor": {"choices": [0.1, 0.2, 0.3, 0.4, 0.5]},
    }

    assert len(reachable_combinations(space_of(space)).combinations) == MAX_COMBINATIONS

    load_spec(make_spec(space=space))


TRANSFORMER = {"job__workload": "transformer-mt"}


def test_every_value_of_an_integer_workload_option_is_checked() -> None:
    # The ends 2 and 8 divide d_model=512; 3, 5, 6 and 7 do not.
    errors = spec_errors(
        make_spec(**TRANSFORMER, space={"workload.num_heads": {"low": 2, "high": 8}})
    )

    assert [e.path for e in errors] == ["space.workload.num_heads"]
    assert errors[0].message.startswith("4 of the 7 values of workload.num_heads (2..8, step 1)")


def test_integer_options_are_checked_at_every_point_of_their_product() -> None:
    # Both ends are fine (64/4, 72/8), and 64 and 72 both take 8 heads; 68 does not.
    space = {
        "workload.d_model": {"low": 64, "high": 72, "step": 4},
        "workload.num_heads": {"low": 4, "high": 8, "step": 4},
    }

    [error] = spec_errors(make_spec(**TRANSFORMER, space=space))

    assert error.path == "space.workload.d_model"
    assert "e.g. workload.d_model=68 (with workload.num_heads=8)" in error.message
    assert "(e.g. workload.d_model: {choices: [64, 72]})" in error.message


def test_a_large_product_is_checked_one_option_at_a_time() -> None:
    # 128 x 128 points is over MAX_INT_VALUES: each option's values with the other at an end.
    space = {
        "workload.d_model": {"low": 64, "high": 8192, "step": 64},
        "workload.num_heads": {"low": 1, "high": 128},
    }

    errors = {e.path: e.message for e in spec_errors(make_spec(**TRANSFORMER, space=space))}

    assert set(errors) == {"space.workload.d_model", "space.workload.num_heads"}
    assert (
        "e.g. workload.num_heads=3 (with workload.d_model=64)" in errors["space.workload.num_heads"]
    )
    assert (
        "e.g. workload.d_model=64 (with workload.num_heads=128)" in errors["space.workload.d_model"]
    )


def test_valid_integer_options_pass_without_enumerating_a_huge_product() -> None:
    space = {
        "workload.hidden": {"low": 1, "high": 5000},
        "workload.channels": {"low": 1, "high": 5000},
    }

    assert spec_errors(make_spec(space=space)) == []


def test_too_many_option_sets_to_check_are_refused() -> None:
    space = {
        "workload.hidden": {"low": 1, "high": 10_000},
        "workload.channels": {"low": 1, "high": 10_000},
        "workload.model": {"choices": ["mlp", "cnn"]},
        "workload.standardize": {"choices": [True, False]},
    }

    [error] = spec_errors(make_spec(space=space))

    assert error.path == "space"
    assert "would build 160,000 option sets; at most 100,000" in error.message


def test_a_conditional_setting_counts_only_where_it_is_active() -> None:
    used = {
        "extrapolation": {"choices": ["none", "gradient+noise"]},
        "noise_std": {"low": 1e-4, "high": 1e-2, "when": {"extrapolation": ["gradient+noise"]}},
    }
    unused = {
        "extrapolation": {"choices": ["none", "gradient+noise"]},
        "noise_std": {"low": 1e-4, "high": 1e-2, "when": {"extrapolation": ["none"]}},
    }

    assert spec_errors(make_spec(space=used)) == []
    assert [e.path for e in spec_errors(make_spec(space=unused))] == ["space.noise_std"]


def test_searched_workload_options_count_at_both_ends_of_the_training_split() -> None:
    # A plug-in-like case: the training split follows a searched option (here the built-in
    # mnist1d, whose num_samples may not be searched, stands in through workload_option_points).
    report = reachable_combinations(
        space_of({"workload.hidden": {"low": 10, "high": 20}, "workload.model": ["mlp", "cnn"]})
    )
    job = load_spec(make_spec()).job

    points = workload_option_points(
        job,
        space_of({"workload.hidden": {"low": 10, "high": 20}, "workload.model": ["mlp", "cnn"]}),
        report,
    )

    assert points == [
        {"workload.model": "mlp", "workload.hidden": 10},
        {"workload.model": "mlp", "workload.hidden": 20},
        {"workload.model": "cnn", "workload.hidden": 10},
        {"workload.model": "cnn", "workload.hidden": 20},
    ]
