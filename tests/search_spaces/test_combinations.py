"""Enumerating the reachable categorical combinations of a space."""

from __future__ import annotations

import warnings
from typing import Any

from pydantic import TypeAdapter

from search_spaces import ParamSpec, SpecWarning, load_spec, reachable_combinations
from tests.search_spaces.conftest import make_spec

SPACE = TypeAdapter(dict[str, ParamSpec])


def _as_set(combinations: list[dict[str, Any]]) -> set[frozenset[tuple[str, Any]]]:
    assert len({frozenset(c.items()) for c in combinations}) == len(combinations)
    return {frozenset(c.items()) for c in combinations}


def space(**params: Any) -> dict[str, Any]:
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


def test_a_capped_spec_warns_that_not_every_combination_was_checked() -> None:
    choices = {"choices": [0.0, 0.25, 0.5, 0.75, 0.9]}
    big = {
        "momentum": choices,
        "weight_decay": choices,
        "lr": {"choices": [0.1, 0.2, 0.3, 0.4]},
        "warmup_epochs": choices,
        "gamma_ratio": choices,
        "noise_std": choices,
    }

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_spec(make_spec(space=big))

    assert any(issubclass(w.category, SpecWarning) and "10000" in str(w.message) for w in caught)
