"""The Optuna translation: conditional suggestion, the sampler registry, the grid."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optuna
import pytest

from search_spaces import SAMPLERS, SpecError, SweepSpec, apply_params, load_spec
from search_spaces.optuna_space import build_sampler, grid_values, suggest_params
from search_spaces.samplers import default_population_size, default_startup_trials
from tests.search_spaces.conftest import make_spec

optuna.logging.set_verbosity(optuna.logging.WARNING)

CONDITIONAL_SPACE: dict[str, Any] = {
    "lr": {"low": 0.01, "high": 1.0, "log": True},
    "extrapolation": ["none", "gradient", "gradient+noise", "sam"],
    "gamma_ratio": {
        "low": 0.02,
        "high": 0.25,
        "log": True,
        "when": {"extrapolation": ["gradient", "gradient+noise"]},
    },
    "gamma": {"low": 0.01, "high": 0.5, "log": True, "when": {"extrapolation": ["sam"]}},
    "noise": {"choices": ["gaussian", "uniform"], "when": {"extrapolation": ["gradient+noise"]}},
    "noise_std": {"low": 1.0e-4, "high": 1.0e-2, "log": True, "when": {"noise": ["uniform"]}},
    "milestones": [[0.5, 0.75], [0.3, 0.6, 0.9]],
    "workload.hidden": {"low": 32, "high": 128, "step": 32},
}

# (searched name, the active condition as a predicate over a trial's params)
CONDITIONS: dict[str, Callable[[dict[str, Any]], bool]] = {
    "gamma_ratio": lambda p: p["extrapolation"] in ("gradient", "gradient+noise"),
    "gamma": lambda p: p["extrapolation"] == "sam",
    "noise": lambda p: p["extrapolation"] == "gradient+noise",
    "noise_std": lambda p: p.get("noise") == "uniform",
}


@pytest.fixture(scope="module")
def conditional_spec() -> SweepSpec:
    return load_spec(make_spec(space=CONDITIONAL_SPACE))


@pytest.fixture(scope="module")
def suggested(conditional_spec: SweepSpec) -> list[dict[str, Any]]:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    trials: list[dict[str, Any]] = []

    def objective(trial: optuna.Trial) -> float:
        trials.append(suggest_params(trial, conditional_spec.space))
        return 0.0

    study.optimize(objective, n_trials=30)
    return trials


@pytest.mark.parametrize("name", list(CONDITIONS))
def test_conditional_parameter_appears_exactly_when_its_condition_holds(
    suggested: list[dict[str, Any]], name: str
) -> None:
    holds = CONDITIONS[name]

    assert all((name in params) == holds(params) for params in suggested)
    assert any(name in params for params in suggested)


def test_every_suggestion_builds_a_valid_job(
    conditional_spec: SweepSpec, suggested: list[dict[str, Any]]
) -> None:
    jobs = [apply_params(conditional_spec.job, params) for params in suggested]

    assert {job.schedule.milestones[0] for job in jobs} == {0.5, 0.3}
    assert {job.workload_options["hidden"] for job in jobs} <= {32, 64, 96, 128}


def test_optuna_sees_list_choices_as_text(conditional_spec: SweepSpec) -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()

    params = suggest_params(trial, conditional_spec.space)

    assert isinstance(params["milestones"], list)
    assert trial.params["milestones"] in ("[0.5, 0.75]", "[0.3, 0.6, 0.9]")


SAMPLER_SPECS: dict[str, dict[str, Any]] = {
    "tpe": make_spec(space=CONDITIONAL_SPACE),
    "tpe-multivariate": make_spec(space=CONDITIONAL_SPACE),
    "cmaes": make_spec(
        space={
            "lr": {"low": 0.01, "high": 1.0, "log": True},
            "momentum": {"low": 0.5, "high": 0.99},
        }
    ),
    "gp": make_spec(space=CONDITIONAL_SPACE),
    "random": make_spec(space=CONDITIONAL_SPACE),
    "grid": make_spec(space={"lr": [0.05, 0.1], "extrapolation": ["none", "past"]}),
    "qmc": make_spec(space=CONDITIONAL_SPACE),
    "nsga2": make_spec(space=CONDITIONAL_SPACE, secondary_objectives=["epoch_seconds"]),
}

SAMPLER_CLASSES = {
    "tpe": optuna.samplers.TPESampler,
    "tpe-multivariate": optuna.samplers.TPESampler,
    "cmaes": optuna.samplers.CmaEsSampler,
    "gp": optuna.samplers.GPSampler,
    "random": optuna.samplers.RandomSampler,
    "grid": optuna.samplers.GridSampler,
    "qmc": optuna.samplers.QMCSampler,
    "nsga2": optuna.samplers.NSGAIISampler,
}


def test_every_registered_sampler_has_a_test_spec() -> None:
    assert set(SAMPLER_SPECS) == set(SAMPLERS) == set(SAMPLER_CLASSES)


@pytest.mark.parametrize("name", list(SAMPLER_SPECS))
def test_registry_builds_each_sampler(name: str) -> None:
    data = SAMPLER_SPECS[name] | {"search": {"sampler": name, "num_trials": 12}}
    spec = load_spec(data)

    sampler = build_sampler(spec.search, spec.space, num_objectives=len(spec.objectives))

    assert isinstance(sampler, SAMPLER_CLASSES[name])


@pytest.mark.parametrize(
    ("num_trials", "startup"), [(1, 2), (4, 2), (6, 2), (12, 4), (30, 10), (500, 10)]
)
def test_startup_trials_scale_with_the_budget(num_trials: int, startup: int) -> None:
    assert default_startup_trials(num_trials) == startup


@pytest.mark.parametrize("name", ["tpe", "tpe-multivariate"])
def test_tpe_gets_the_scaled_startup_trials(name: str) -> None:
    spec = load_spec(make_spec(search={"sampler": name, "num_trials": 12}))

    sampler = build_sampler(spec.search, spec.space, num_objectives=1)

    assert sampler._n_startup_trials == 4  # type: ignore[attr-defined]


def test_explicit_startup_trials_win() -> None:
    spec = load_spec(
        make_spec(search={"num_trials": 12, "sampler_options": {"n_startup_trials": 7}})
    )

    sampler = build_sampler(spec.search, spec.space, num_objectives=1)

    assert sampler._n_startup_trials == 7  # type: ignore[attr-defined]


def test_nsga2_population_scales_with_the_budget() -> None:
    assert [default_population_size(n) for n in (8, 40, 1000)] == [4, 10, 50]


def test_sampler_seed_makes_suggestions_reproducible() -> None:
    spec = load_spec(make_spec(space=CONDITIONAL_SPACE, search={"sampler": "random", "seed": 3}))

    def first(_: int) -> dict[str, Any]:
        sampler = build_sampler(spec.search, spec.space, num_objectives=1)
        return suggest_params(optuna.create_study(sampler=sampler).ask(), spec.space)

    assert first(0) == first(1)


def test_grid_enumerates_a_finite_space() -> None:
    spec = load_spec(
        make_spec(
            space={
                "lr": {"low": 0.1, "high": 0.3, "step": 0.1},
                "extrapolation": ["none", "past"],
                "warmup_epochs": {"low": 0, "high": 2},
            },
            search={"sampler": "grid", "num_trials": 12},
        )
    )
    sampler = build_sampler(spec.search, spec.space, num_objectives=1)
    study = optuna.create_study(sampler=sampler)

    study.optimize(lambda t: (suggest_params(t, spec.space), 0.0)[1], n_trials=20)

    seen = {tuple(sorted(t.params.items())) for t in study.trials}
    assert len(study.trials) == len(seen) == 3 * 2 * 3


@pytest.mark.parametrize(
    ("name", "param", "values"),
    [
        ("lr", {"low": 0.1, "high": 0.3, "step": 0.1}, [0.1, 0.2, 0.3]),
        ("workload.hidden", {"low": 2, "high": 8, "step": 3}, [2, 5, 8]),
        ("extrapolation", ["none", "past"], ["none", "past"]),
        ("milestones", [[0.5, 0.75], [0.3]], ["[0.5, 0.75]", "[0.3]"]),
    ],
)
def test_grid_values(name: str, param: Any, values: list[Any]) -> None:
    spec = load_spec(make_spec(space={name: param}))

    assert grid_values(spec.space[name]) == values


def test_build_sampler_refuses_a_space_it_cannot_search() -> None:
    spec = load_spec(make_spec(space={"extrapolation": ["none", "past"]}))
    search = spec.search.model_copy(update={"sampler": "cmaes"})

    with pytest.raises(SpecError, match="use tpe or tpe-multivariate"):
        build_sampler(search, spec.space, num_objectives=1)
