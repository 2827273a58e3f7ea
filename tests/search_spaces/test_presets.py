"""Shipped presets load, validate, and merge under a spec."""

from __future__ import annotations

from typing import Any

import pytest

from search_spaces import (
    FloatParam,
    UnknownPresetError,
    list_presets,
    load_preset,
    load_spec,
    merge_preset,
    preset_info,
)
from tests.search_spaces.conftest import SpecFactory

PRESETS = [
    "extrap-gradient",
    "extrap-gradient-noise",
    "extrap-paper",
    "noise-injection",
    "past",
    "sam",
    "sgd-baseline",
]


def test_the_shipped_presets_are_listed() -> None:
    assert [info.name for info in list_presets()] == PRESETS


@pytest.mark.parametrize("name", PRESETS)
@pytest.mark.parametrize("workload", ["mnist1d", "resnet20-cifar10", "lstm-ptb"])
def test_preset_validates_on_top_of_a_minimal_job(
    spec_data: SpecFactory, name: str, workload: str
) -> None:
    spec = load_spec({**spec_data(job__workload=workload), "space": {}, "preset": name})

    assert spec.based_on == name
    assert set(spec.space) == set(preset_info(name).dimensions)


@pytest.mark.parametrize("name", PRESETS)
def test_preset_has_a_description(name: str) -> None:
    assert len(preset_info(name).description) > 40


def test_paper_preset_searches_the_papers_dimensions() -> None:
    info = preset_info("extrap-paper")

    assert {"lr", "extrapolation", "gamma_ratio", "noise_std"} <= set(info.dimensions)
    assert load_preset("extrap-paper")["space"]["extrapolation"]["choices"] == [
        "gradient",
        "gradient+noise",
        "past",
    ]


def test_baseline_has_the_same_budget_and_schedule_dimensions_as_the_paper_preset() -> None:
    paper, baseline = load_preset("extrap-paper"), load_preset("sgd-baseline")

    assert baseline["search"] == paper["search"]
    for name in ("lr", "warmup_epochs", "decay"):
        assert baseline["space"][name] == paper["space"][name]
    assert baseline["space"]["extrapolation"]["choices"] == ["none"]


def test_spec_bounds_override_the_presets_and_keep_the_rest(spec_data: SpecFactory) -> None:
    spec = load_spec(spec_data(preset="extrap-paper", space={"lr": {"high": 0.5}}))

    assert spec.space["lr"] == FloatParam(low=0.01, high=0.5, log=True)


def test_a_different_type_replaces_the_preset_parameter(spec_data: SpecFactory) -> None:
    spec = load_spec(spec_data(preset="extrap-paper", space={"lr": [0.1, 0.2]}))

    assert spec.space["lr"].type == "categorical"


def test_null_removes_a_preset_parameter(spec_data: SpecFactory) -> None:
    spec = load_spec(spec_data(preset="extrap-paper", space={"decay": None}))

    assert "decay" not in spec.space


def test_spec_search_overrides_preset_search_key_by_key(spec_data: SpecFactory) -> None:
    spec = load_spec(spec_data(preset="extrap-paper", search={"num_trials": 6}))

    assert (spec.search.sampler, spec.search.num_trials) == ("tpe", 6)


@pytest.mark.parametrize(
    ("preset_search", "spec_search", "expected"),
    [
        (
            {"sampler": "tpe", "sampler_options": {"n_startup_trials": 5}},
            {"sampler": "random"},
            {"sampler": "random", "sampler_options": {}},
        ),
        (
            {"scheduler": {"kind": "asha", "reduction_factor": 2}},
            {"scheduler": {"grace_period": 3}},
            {"scheduler": {"kind": "asha", "reduction_factor": 2, "grace_period": 3}},
        ),
        (
            {"scheduler": {"kind": "asha", "reduction_factor": 2}},
            {"scheduler": {"kind": "fifo"}},
            {"scheduler": {"kind": "fifo"}},
        ),
    ],
)
def test_search_merge_rules(
    preset_search: dict[str, Any], spec_search: dict[str, Any], expected: dict[str, Any]
) -> None:
    merged = merge_preset({"space": {}, "search": preset_search}, {"search": spec_search})

    assert merged["search"] == expected


def test_unknown_preset_lists_the_shipped_ones() -> None:
    with pytest.raises(
        UnknownPresetError, match="use one of extrap-gradient, extrap-gradient-noise, extrap-paper"
    ):
        load_preset("paper")


def test_load_preset_returns_a_fresh_copy() -> None:
    load_preset("sam")["space"].clear()

    assert load_preset("sam")["space"]


@pytest.mark.parametrize(
    ("name", "two_pass"),
    [
        ("sgd-baseline", False),
        ("past", False),
        ("noise-injection", False),
        ("extrap-gradient", True),
        ("extrap-gradient-noise", True),
        ("sam", True),
    ],
)
def test_study_arm_presets_reach_variants_of_one_cost(name: str, two_pass: bool) -> None:
    from trainers.optim.variants import VARIANTS

    choices = load_preset(name)["space"]["extrapolation"]["choices"]
    assert {VARIANTS[choice].two_pass for choice in choices} == {two_pass}
