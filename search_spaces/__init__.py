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
    ('extrap-paper', 'val_accuracy')
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from search_spaces.combinations import (
        MAX_COMBINATIONS,
        CombinationReport,
        reachable_combinations,
    )
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

# Imported on first use: `import search_spaces.errors` (the wire types) stays light, and
# each name resolves to the one module that defines it.
_WHERE: dict[str, str] = {
    "AshaScheduler": "search_spaces.search",
    "CategoricalParam": "search_spaces.space",
    "CombinationReport": "search_spaces.combinations",
    "FieldError": "search_spaces.errors",
    "FifoScheduler": "search_spaces.search",
    "FloatParam": "search_spaces.space",
    "IntParam": "search_spaces.space",
    "MAX_COMBINATIONS": "search_spaces.combinations",
    "METRIC_MODES": "search_spaces.objective",
    "MedianScheduler": "search_spaces.search",
    "Objective": "search_spaces.objective",
    "ParamSpec": "search_spaces.space",
    "PresetInfo": "search_spaces.presets",
    "SAMPLERS": "search_spaces.samplers",
    "SCHEDULERS": "search_spaces.search",
    "SEARCHABLE_PARAMS": "search_spaces.searchable",
    "SamplerInfo": "search_spaces.samplers",
    "SchedulerConfig": "search_spaces.search",
    "SchedulerInfo": "search_spaces.search",
    "SearchConfig": "search_spaces.search",
    "SearchableParam": "search_spaces.searchable",
    "SpecError": "search_spaces.errors",
    "SpecWarning": "search_spaces.errors",
    "SweepSpec": "search_spaces.spec",
    "UnknownPresetError": "search_spaces.presets",
    "UnknownSearchableError": "search_spaces.searchable",
    "WORKLOAD_PREFIX": "search_spaces.searchable",
    "apply_params": "search_spaces.space",
    "condition_holds": "search_spaces.space",
    "default_population_size": "search_spaces.samplers",
    "default_startup_trials": "search_spaces.samplers",
    "dependency_order": "search_spaces.space",
    "get_searchable": "search_spaces.searchable",
    "list_presets": "search_spaces.presets",
    "load_preset": "search_spaces.presets",
    "load_spec": "search_spaces.validation",
    "merge_preset": "search_spaces.presets",
    "preset_info": "search_spaces.presets",
    "reachable_combinations": "search_spaces.combinations",
    "searchable_names": "search_spaces.searchable",
    "spec_errors": "search_spaces.validation",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
