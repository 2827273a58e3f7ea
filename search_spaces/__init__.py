"""Sweep specs: the search space, objectives and search settings of a hyperparameter sweep.

One pydantic model, :class:`SweepSpec`, is shared by the CLI (``extrap validate``), the service
and the Ray Tune sweep driver; :func:`load_spec` turns YAML or a mapping into it and raises
:class:`SpecError` with a :class:`FieldError` (path, message) per problem. Nothing here imports
torch, Ray or FastAPI; the Optuna translation lives in :mod:`search_spaces.optuna_space`,
imported only by the sweep driver.

Example:
    >>> spec = load_spec('''
    ... name: mnist1d-extrap
    ... preset: extrap-paper
    ... job: {workload: mnist1d, global_batch_size: 512, epochs: 3}
    ... search: {num_trials: 6}
    ... ''')
    >>> spec.based_on, spec.objective.metric
    ('extrap-paper', 'accuracy')
"""

from __future__ import annotations

from search_spaces.combinations import MAX_COMBINATIONS, CombinationReport, reachable_combinations
from search_spaces.errors import FieldError, SpecError, SpecWarning
from search_spaces.objective import METRIC_MODES, Objective
from search_spaces.presets import (
    PresetInfo,
    UnknownPresetError,
    list_presets,
    load_preset,
    merge_preset,
    preset_info,
)
from search_spaces.samplers import (
    SAMPLERS,
    SamplerInfo,
    default_population_size,
    default_startup_trials,
)
from search_spaces.search import (
    SCHEDULERS,
    AshaScheduler,
    FifoScheduler,
    MedianScheduler,
    SchedulerConfig,
    SchedulerInfo,
    SearchConfig,
)
from search_spaces.searchable import (
    SEARCHABLE_PARAMS,
    WORKLOAD_PREFIX,
    SearchableParam,
    UnknownSearchableError,
    get_searchable,
    searchable_names,
)
from search_spaces.space import (
    CategoricalParam,
    FloatParam,
    IntParam,
    ParamSpec,
    apply_params,
    condition_holds,
    dependency_order,
)
from search_spaces.spec import SweepSpec
from search_spaces.validation import load_spec, spec_errors

__all__ = [
    "MAX_COMBINATIONS",
    "METRIC_MODES",
    "SAMPLERS",
    "SCHEDULERS",
    "SEARCHABLE_PARAMS",
    "WORKLOAD_PREFIX",
    "AshaScheduler",
    "CategoricalParam",
    "CombinationReport",
    "FieldError",
    "FifoScheduler",
    "FloatParam",
    "IntParam",
    "MedianScheduler",
    "Objective",
    "ParamSpec",
    "PresetInfo",
    "SamplerInfo",
    "SchedulerConfig",
    "SchedulerInfo",
    "SearchConfig",
    "SearchableParam",
    "SpecError",
    "SpecWarning",
    "SweepSpec",
    "UnknownPresetError",
    "UnknownSearchableError",
    "apply_params",
    "condition_holds",
    "default_population_size",
    "default_startup_trials",
    "dependency_order",
    "get_searchable",
    "list_presets",
    "load_preset",
    "load_spec",
    "merge_preset",
    "preset_info",
    "reachable_combinations",
    "searchable_names",
    "spec_errors",
]
