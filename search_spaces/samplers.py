"""The sampler registry: names, options and what each sampler can search (no Optuna here).

The Optuna objects themselves are built in :mod:`search_spaces.optuna_space`; this module only
knows enough to validate a spec, so ``extrap validate`` never imports Optuna.

Start-up trials. Optuna's TPE and GP samplers begin with 10 random trials by default, which
turns a 6-trial sweep into pure random search. Unless ``sampler_options.n_startup_trials`` is
given, tpe, tpe-multivariate and gp use :func:`default_startup_trials`:
``max(2, min(10, num_trials // 3))`` — a third of the budget, at least 2 and at most 10
(4 trials → 2, 12 → 4, 30 and more → 10). NSGA-II's generation size is scaled the same way
(:func:`default_population_size`: ``max(4, min(50, num_trials // 4))``).

Example:
    >>> SAMPLERS["cmaes"].categorical
    False
    >>> default_startup_trials(6)
    2
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from search_spaces.errors import FieldError
from search_spaces.limits import MAX_GRID_POINTS
from search_spaces.space import CategoricalParam, FloatParam, IntParam, ParamSpec

__all__ = [
    "SAMPLERS",
    "SamplerInfo",
    "default_population_size",
    "default_startup_trials",
    "sampler_space_errors",
]


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NoOptions(_Options):
    """The sampler takes no options."""


class TpeOptions(_Options):
    """Options of Optuna's ``TPESampler`` (unset ones keep Optuna's defaults)."""

    n_startup_trials: int | None = Field(None, ge=0, description="default: scaled to budget")
    n_ei_candidates: int | None = Field(None, ge=1)
    prior_weight: float | None = Field(None, gt=0)
    consider_endpoints: bool | None = None
    constant_liar: bool | None = Field(None, description="penalize running trials' points")


class CmaEsOptions(_Options):
    """Options of Optuna's ``CmaEsSampler``."""

    n_startup_trials: int | None = Field(None, ge=0)
    sigma0: float | None = Field(None, gt=0)
    popsize: int | None = Field(None, ge=2)
    restart_strategy: Literal["ipop", "bipop"] | None = None
    use_separable_cma: bool | None = None
    with_margin: bool | None = None
    lr_adapt: bool | None = None


class GpOptions(_Options):
    """Options of Optuna's ``GPSampler`` (it imports torch when it first samples)."""

    n_startup_trials: int | None = Field(None, ge=0, description="default: scaled to budget")
    deterministic_objective: bool | None = None


class QmcOptions(_Options):
    """Options of Optuna's ``QMCSampler``."""

    qmc_type: Literal["sobol", "halton"] | None = None
    scramble: bool | None = None


class NsgaIIOptions(_Options):
    """Options of Optuna's ``NSGAIISampler``."""

    population_size: int | None = Field(None, ge=2, description="default: scaled to budget")
    mutation_prob: float | None = Field(None, ge=0, le=1)
    crossover_prob: float | None = Field(None, ge=0, le=1)
    swapping_prob: float | None = Field(None, ge=0, le=1)


@dataclass(frozen=True)
class SamplerInfo:
    """What a sampler is and what it can search.

    Attributes:
        name: the value of ``search.sampler``.
        description: one line for docs and listings.
        options: the model ``search.sampler_options`` must fit.
        categorical: searches categorical parameters itself (False: refuse them).
        continuous: handles floats without a step (False: the space must be finite).
        multi_objective: accepts ``secondary_objectives``.
        min_numeric_params: fewest float/int parameters it needs.
    """

    name: str
    description: str
    options: type[BaseModel]
    categorical: bool = True
    continuous: bool = True
    multi_objective: bool = True
    min_numeric_params: int = 0


_SAMPLERS = (
    SamplerInfo("tpe", "Tree-structured Parzen Estimator, per parameter (default)", TpeOptions),
    SamplerInfo(
        "tpe-multivariate",
        "TPE modelling parameters jointly (grouped, so conditional spaces work)",
        TpeOptions,
    ),
    SamplerInfo(
        "cmaes",
        "CMA-ES: numeric parameters only, one objective",
        CmaEsOptions,
        categorical=False,
        multi_objective=False,
        min_numeric_params=2,
    ),
    SamplerInfo("gp", "Gaussian-process Bayesian optimization (imports torch)", GpOptions),
    SamplerInfo("random", "independent uniform / log-uniform sampling", NoOptions),
    SamplerInfo(
        "grid",
        "every combination of a finite space (floats need a step)",
        NoOptions,
        continuous=False,
    ),
    SamplerInfo("qmc", "quasi-Monte Carlo (Sobol/Halton) for numeric parameters", QmcOptions),
    SamplerInfo("nsga2", "NSGA-II genetic algorithm, made for several objectives", NsgaIIOptions),
)

SAMPLERS: Mapping[str, SamplerInfo] = MappingProxyType({info.name: info for info in _SAMPLERS})
"""Registered samplers by name, in documentation order."""


def default_startup_trials(num_trials: int) -> int:
    """Random trials before TPE/GP start modelling: a third of the budget, within [2, 10]."""
    return max(2, min(10, num_trials // 3))


def default_population_size(num_trials: int) -> int:
    """NSGA-II generation size: a quarter of the budget, within [4, 50]."""
    return max(4, min(50, num_trials // 4))


def sampler_space_errors(
    info: SamplerInfo, space: Mapping[str, ParamSpec], *, num_objectives: int
) -> list[FieldError]:
    """Why ``info``'s sampler cannot search ``space`` for ``num_objectives`` objectives.

    Returns:
        Errors at ``search.sampler`` (empty when the sampler fits).
    """
    errors: list[str] = []
    categorical = [n for n, p in space.items() if isinstance(p, CategoricalParam)]
    if categorical and not info.categorical:
        errors.append(
            f"{info.name} cannot search categorical parameters ({', '.join(categorical)}): "
            "use tpe or tpe-multivariate, or fix these values in job"
        )
    continuous = [n for n, p in space.items() if isinstance(p, FloatParam) and p.step is None]
    if continuous and not info.continuous:
        errors.append(
            f"{info.name} needs a finite space, but {', '.join(continuous)} are continuous "
            "floats: add a step to each (e.g. step: 0.01) or use another sampler "
            "(tpe, random, qmc)"
        )
    if not info.continuous and not continuous:
        points = math.prod(_grid_size(param) for param in space.values())
        if points > MAX_GRID_POINTS:
            errors.append(
                f"{info.name} builds every point of its grid in memory, and this space has "
                f"{points:,} ({' × '.join(str(_grid_size(p)) for p in space.values())}); at "
                f"most {MAX_GRID_POINTS:,}: coarsen the steps, drop choices, or use tpe or "
                "random"
            )
    numeric = len(space) - len(categorical)
    if numeric < info.min_numeric_params:
        errors.append(
            f"{info.name} needs at least {info.min_numeric_params} numeric parameters, this "
            f"space has {numeric}: use tpe or gp"
        )
    if num_objectives > 1 and not info.multi_objective:
        errors.append(
            f"{info.name} optimizes a single objective, but the spec has {num_objectives} "
            "(objective + secondary_objectives): use nsga2, tpe or random, or drop "
            "secondary_objectives"
        )
    return [FieldError("search.sampler", message) for message in errors]


def _grid_size(param: ParamSpec) -> int:
    """Values the grid sampler tries for one parameter (a float here has a step)."""
    if isinstance(param, CategoricalParam):
        return len(param.choices)
    if isinstance(param, IntParam):
        return (param.high - param.low) // param.step + 1
    step = param.step or 1.0
    return round((param.high - param.low) / step) + 1
