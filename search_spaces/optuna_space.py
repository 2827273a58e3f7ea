"""Translate a spec's space and search settings into Optuna (define-by-run).

Import this module lazily (inside the sweep driver): it imports Optuna, and validating a spec
must not.

- :func:`suggest_params` suggests the parameters in dependency order, a conditional one only
  when its ``when`` holds, so Optuna sees a conditional space (TPE models each branch apart).
  It returns decoded values: categorical lists (milestones) are shown to Optuna as JSON text.
  With Ray Tune, pass ``space=lambda trial: suggest_params(trial, spec.space)`` to
  ``OptunaSearch``: the returned dict overrides the raw suggestions in the trial config.
- :func:`build_sampler` builds the spec's sampler from a registry, seeded with
  ``search.seed``. TPE, multivariate TPE and GP start with
  ``max(2, min(10, num_trials // 3))`` random trials unless ``n_startup_trials`` is given
  (Optuna's default of 10 would make a small sweep pure random search); NSGA-II's population
  is ``max(4, min(50, num_trials // 4))``. The grid sampler's grid is the space itself.

Example:
    >>> import optuna
    >>> from search_spaces.space import CategoricalParam, FloatParam
    >>> space = {"extrapolation": CategoricalParam(choices=["none", "gradient"]),
    ...          "gamma_ratio": FloatParam(low=0.02, high=0.5, log=True,
    ...                                    when={"extrapolation": ["gradient"]})}
    >>> study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    >>> params = suggest_params(study.ask(), space)
    >>> ("gamma_ratio" in params) == (params["extrapolation"] == "gradient")
    True
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import optuna

from search_spaces.errors import SpecError
from search_spaces.samplers import (
    SAMPLERS,
    default_population_size,
    default_startup_trials,
    sampler_space_errors,
)
from search_spaces.search import SearchConfig
from search_spaces.space import (
    CategoricalParam,
    FloatParam,
    IntParam,
    ParamSpec,
    choice_label,
    condition_holds,
    dependency_order,
)

__all__ = ["SuggestTrial", "build_sampler", "grid_values", "suggest_params"]


class SuggestTrial(Protocol):
    """The part of ``optuna.Trial`` used here (Ray Tune's define-by-run captor has it too)."""

    def suggest_float(
        self, name: str, low: float, high: float, *, step: float | None = ..., log: bool = ...
    ) -> float: ...

    def suggest_int(
        self, name: str, low: int, high: int, *, step: int = ..., log: bool = ...
    ) -> int: ...

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any: ...


def _suggest_float(trial: SuggestTrial, name: str, param: Any) -> Any:
    return trial.suggest_float(name, param.low, param.high, step=param.step, log=param.log)


def _suggest_int(trial: SuggestTrial, name: str, param: Any) -> Any:
    return trial.suggest_int(name, param.low, param.high, step=param.step, log=param.log)


def _suggest_categorical(trial: SuggestTrial, name: str, param: Any) -> Any:
    labels = [choice_label(choice) for choice in param.choices]
    label = trial.suggest_categorical(name, labels)
    return param.choices[labels.index(label)]


_SUGGESTERS: Mapping[str, Callable[[SuggestTrial, str, Any], Any]] = {
    "float": _suggest_float,
    "int": _suggest_int,
    "categorical": _suggest_categorical,
}


def suggest_params(trial: SuggestTrial, space: Mapping[str, ParamSpec]) -> dict[str, Any]:
    """Suggest one trial's values, conditional parameters only where their ``when`` holds.

    Args:
        trial: an Optuna trial (or Ray Tune's define-by-run stand-in).
        space: a validated space.

    Returns:
        Searchable name → value, ready for :func:`search_spaces.space.apply_params`.
    """
    values: dict[str, Any] = {}
    for name in dependency_order(space):
        param = space[name]
        if condition_holds(param.when, values):
            values[name] = _SUGGESTERS[param.type](trial, name, param)
    return values


def grid_values(param: ParamSpec) -> list[Any]:
    """The values the grid sampler tries for one parameter (labels for categoricals).

    Raises:
        ValueError: a float parameter without ``step`` (not finite).
    """
    if isinstance(param, CategoricalParam):
        return [choice_label(choice) for choice in param.choices]
    if isinstance(param, IntParam):
        return list(range(param.low, param.high + 1, param.step))
    if isinstance(param, FloatParam) and param.step is not None:
        count = round((param.high - param.low) / param.step)
        return [round(param.low + i * param.step, 12) for i in range(count + 1)]
    raise ValueError("a float parameter needs a step to be on a grid")


_Builder = Callable[
    [SearchConfig, Mapping[str, ParamSpec], dict[str, Any]], optuna.samplers.BaseSampler
]


def _tpe(multivariate: bool) -> _Builder:
    def build(
        search: SearchConfig, space: Mapping[str, ParamSpec], options: dict[str, Any]
    ) -> optuna.samplers.BaseSampler:
        options.setdefault("n_startup_trials", default_startup_trials(search.num_trials))
        if multivariate:
            # group=True lets the multivariate model handle a conditional space branch by branch.
            options.update(multivariate=True, group=True)
        return optuna.samplers.TPESampler(seed=search.seed, **options)

    return build


def _gp(
    search: SearchConfig, space: Mapping[str, ParamSpec], options: dict[str, Any]
) -> optuna.samplers.BaseSampler:
    options.setdefault("n_startup_trials", default_startup_trials(search.num_trials))
    return optuna.samplers.GPSampler(seed=search.seed, **options)


def _cmaes(
    search: SearchConfig, space: Mapping[str, ParamSpec], options: dict[str, Any]
) -> optuna.samplers.BaseSampler:
    return optuna.samplers.CmaEsSampler(seed=search.seed, **options)


def _random(
    search: SearchConfig, space: Mapping[str, ParamSpec], options: dict[str, Any]
) -> optuna.samplers.BaseSampler:
    return optuna.samplers.RandomSampler(seed=search.seed)


def _grid(
    search: SearchConfig, space: Mapping[str, ParamSpec], options: dict[str, Any]
) -> optuna.samplers.BaseSampler:
    grid = {name: grid_values(param) for name, param in space.items()}
    return optuna.samplers.GridSampler(grid, seed=search.seed)


def _qmc(
    search: SearchConfig, space: Mapping[str, ParamSpec], options: dict[str, Any]
) -> optuna.samplers.BaseSampler:
    return optuna.samplers.QMCSampler(seed=search.seed, **options)


def _nsga2(
    search: SearchConfig, space: Mapping[str, ParamSpec], options: dict[str, Any]
) -> optuna.samplers.BaseSampler:
    options.setdefault("population_size", default_population_size(search.num_trials))
    return optuna.samplers.NSGAIISampler(seed=search.seed, **options)


_BUILDERS: Mapping[str, _Builder] = {
    "tpe": _tpe(multivariate=False),
    "tpe-multivariate": _tpe(multivariate=True),
    "cmaes": _cmaes,
    "gp": _gp,
    "random": _random,
    "grid": _grid,
    "qmc": _qmc,
    "nsga2": _nsga2,
}


def build_sampler(
    search: SearchConfig, space: Mapping[str, ParamSpec], *, num_objectives: int
) -> optuna.samplers.BaseSampler:
    """Build the Optuna sampler a spec asks for.

    Args:
        search: the spec's search settings (sampler, sampler_options, num_trials, seed).
        space: the spec's space (the grid sampler's grid; capability checks).
        num_objectives: 1 plus the number of secondary objectives.

    Returns:
        A sampler seeded with ``search.seed``.

    Raises:
        SpecError: the sampler cannot search this space (same errors as validation).
    """
    errors = sampler_space_errors(SAMPLERS[search.sampler], space, num_objectives=num_objectives)
    if errors:
        raise SpecError(errors)
    options = search.sampler_settings().model_dump(exclude_none=True)
    with warnings.catch_warnings():
        # qmc and multivariate TPE's `group` are marked experimental; we choose them knowingly.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return _BUILDERS[search.sampler](search, space, options)
