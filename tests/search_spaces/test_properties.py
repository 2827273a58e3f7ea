"""Properties of the validator over generated specs (hypothesis).

- A spec the validator accepts fits the published schema, gives a sampler, and every trial
  Optuna suggests for it becomes a valid training job.
- A spec it rejects gets errors that each name a field (a path, or a field in the message).
- Whatever the input (any JSON-like value, anywhere in a spec, or any text), ``load_spec``
  raises nothing but ``SpecError`` and never reports an internal error.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonschema
import optuna
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from search_spaces import SEARCHABLE_PARAMS, SpecError, SweepSpec, apply_params, load_spec
from search_spaces.optuna_space import build_sampler, suggest_params
from trainers.config import GammaScheduleConfig, OptimizerConfig, ScheduleConfig, TrainJobConfig
from trainers.optim.variants import VARIANTS

optuna.logging.set_verbosity(optuna.logging.WARNING)

PROPERTY_SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SCHEMA = jsonschema.Draft202012Validator(SweepSpec.json_schema())

# Searchable names with the range their job field takes (a draw may step outside it).
NUMERIC: dict[str, tuple[str, float, float]] = {
    "lr": ("float", 0.0, 2.0),
    "momentum": ("float", 0.0, 0.99),
    "weight_decay": ("float", 0.0, 0.01),
    "gamma": ("float", 0.0, 1.0),
    "gamma_ratio": ("float", 0.0, 1.0),
    "noise_std": ("float", 0.0, 0.1),
    "trust_coefficient": ("float", 0.001, 1.0),
    "warmup_epochs": ("float", 0.0, 5.0),
    "decay_factor": ("float", 0.01, 1.0),
    "gamma_final_fraction": ("float", 0.0, 1.0),
    "workload.hidden": ("int", 1, 256),
    "workload.channels": ("int", 1, 64),
}
CATEGORICAL: dict[str, list[Any]] = {
    "extrapolation": list(VARIANTS),
    "noise": ["gaussian", "uniform"],
    "nesterov": [True, False],
    "extrapolation_momentum": [True, False],
    "decay": ["constant", "multistep", "cosine", "polynomial"],
    "milestones": [[0.5, 0.75], [0.3, 0.6, 0.9], [0.25], [0.5, 1.5]],  # the last is invalid
    "gamma_schedule": ["follow_lr", "constant", "cosine", "linear"],
    "second_batch": ["same", "fresh"],
    "extrapolation_scope": ["local", "global"],
    "workload.model": ["mlp", "cnn"],
    "workload.standardize": [True, False],
}
FIELDS = {
    *SweepSpec.model_fields,
    *TrainJobConfig.model_fields,
    *OptimizerConfig.model_fields,
    *ScheduleConfig.model_fields,
    *GammaScheduleConfig.model_fields,
    *SEARCHABLE_PARAMS,
    "choices",
    "when",
    "low",
    "high",
    "step",
    "sampler",
    "space",
}


@st.composite
def numeric_param(draw: st.DrawFn, name: str) -> dict[str, Any]:
    kind, low, high = NUMERIC[name]
    # Rare variants compare with a middle value: hypothesis draws the ends of a range often.
    if draw(st.integers(0, 9)) == 7:  # a number searched as choices
        values = draw(st.lists(st.floats(low, high * 1.2), min_size=1, max_size=4, unique=True))
        return {"choices": values}
    if kind == "int":
        a, b = draw(st.integers(int(low) - 2, int(high))), draw(st.integers(int(low), int(high)))
        step = draw(st.sampled_from([1, 1, 1, 2, 5]))
        if draw(st.booleans()) and a <= b:
            b = a + (b - a) // step * step  # make the step fit
        param: dict[str, Any] = {"low": a, "high": b}
        if step != 1:
            param["step"] = step
        elif draw(st.integers(0, 4)) == 3:
            param["log"] = True
        return param
    a = draw(st.floats(low - 0.1, high * 1.3, allow_nan=False))
    b = draw(st.floats(low, high * 1.3, allow_nan=False))
    param = {"type": "float", "low": a, "high": b}
    option = draw(st.sampled_from(["plain", "plain", "log", "step"]))
    if option == "log":
        param["log"] = True
    elif option == "step" and a < b:
        param["step"] = (b - a) / draw(st.integers(1, 8))
    return param


@st.composite
def categorical_param(draw: st.DrawFn, name: str) -> dict[str, Any]:
    values = CATEGORICAL[name]
    choices = draw(
        st.lists(st.sampled_from(values), min_size=1, max_size=len(values), unique_by=str)
    )
    if draw(st.integers(0, 19)) == 13:
        choices = [*choices, choices[0]]  # a repeated choice
    return {"choices": choices}


@st.composite
def spec_data(draw: st.DrawFn) -> dict[str, Any]:
    names = draw(
        st.lists(st.sampled_from([*NUMERIC, *CATEGORICAL]), min_size=1, max_size=6, unique=True)
    )
    space: dict[str, Any] = {}
    for name in names:
        param = draw(numeric_param(name) if name in NUMERIC else categorical_param(name))
        earlier = [n for n in space if "choices" in space[n] and n in CATEGORICAL]
        if earlier and draw(st.integers(0, 2)) == 0:
            ref = draw(st.sampled_from(earlier))
            allowed = draw(
                st.lists(st.sampled_from(space[ref]["choices"]), min_size=1, unique_by=str)
            )
            param["when"] = {ref: allowed}
        elif draw(st.integers(0, 29)) == 17:
            param["when"] = draw(st.sampled_from([{}, {"nosuch": ["x"]}, {names[0]: []}]))
        space[name] = param
    optimizer: dict[str, Any] = {}
    if draw(st.booleans()):
        optimizer["extrapolation"] = draw(st.sampled_from(list(VARIANTS)))
    if draw(st.integers(0, 3)) == 2 or optimizer.get("extrapolation") == "sam":
        optimizer["gamma"] = draw(st.floats(0.01, 0.5))
    job: dict[str, Any] = {
        "workload": "mnist1d",
        "global_batch_size": draw(st.sampled_from([64, 256, 512, 3600, 4096])),
        "workers": draw(st.sampled_from([1, 2, 4])),
        "epochs": draw(st.integers(1, 3)),
    }
    if optimizer:
        job["optimizer"] = optimizer
    search = {
        "sampler": draw(st.sampled_from(["tpe", "tpe", "random", "grid", "qmc", "nsga2", "cmaes"])),
        "num_trials": draw(st.integers(1, 12)),
        "seed": draw(st.integers(0, 2**32 - 1)),
    }
    return {"name": "prop", "job": job, "space": space, "search": search}


def _names_a_field(path: str, message: str) -> bool:
    return bool(path) or any(field in message for field in FIELDS)


@PROPERTY_SETTINGS
@given(spec_data())
# Optuna adjusts a float's high where `step` divides the range only up to rounding; harmless.
@pytest.mark.filterwarnings("ignore:The distribution is specified by:UserWarning")
def test_an_accepted_spec_runs_and_a_rejected_one_names_the_fields(data: dict[str, Any]) -> None:
    try:
        spec = load_spec(data)
    except SpecError as exc:
        assert exc.errors
        for error in exc.errors:
            assert "internal error" not in error.message, error
            assert _names_a_field(error.path, error.message), error
        return
    assert list(SCHEMA.iter_errors(data)) == []
    build_sampler(spec.search, spec.space, num_objectives=len(spec.objectives))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=spec.search.seed))
    for _ in range(4):
        trial = study.ask()
        job = apply_params(spec.job, suggest_params(trial, spec.space))
        assert job.global_batch_size == spec.job.global_batch_size
        study.tell(trial, 0.0)


JSON_LIKE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*prefix, index))
    return found


@PROPERTY_SETTINGS
@given(spec_data(), st.data())
def test_any_value_anywhere_in_a_spec_is_at_worst_a_spec_error(
    data: dict[str, Any], draw: st.DataObject
) -> None:
    broken = copy.deepcopy(data)
    path = draw.draw(st.sampled_from(_paths(broken)[1:]))
    target: Any = broken
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = draw.draw(JSON_LIKE)

    try:
        load_spec(broken)
    except SpecError as exc:
        assert all("internal error" not in error.message for error in exc.errors), exc


@PROPERTY_SETTINGS
@given(JSON_LIKE)
def test_any_json_value_is_at_worst_a_spec_error(value: Any) -> None:
    try:
        load_spec(value)
    except SpecError as exc:
        assert all("internal error" not in error.message for error in exc.errors), exc


@PROPERTY_SETTINGS
@given(st.text(alphabet="[]{}:,&*!|>-#'\"\n ab1.\x00~%", max_size=60) | st.text(max_size=60))
def test_any_text_is_at_worst_a_spec_error(text: str) -> None:
    try:
        load_spec("name: demo\nx: " + text)
    except SpecError as exc:
        assert all("internal error" not in error.message for error in exc.errors), exc
