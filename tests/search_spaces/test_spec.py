"""SweepSpec: defaults of a minimal spec, objectives, schema, round trips."""

from __future__ import annotations

import json
import pickle

import pytest

from search_spaces import (
    FieldError,
    SpecError,
    SweepSpec,
    UnknownPresetError,
    UnknownSearchableError,
    load_spec,
)
from tests.search_spaces.conftest import SpecFactory


def test_minimal_spec_gets_sane_defaults(spec_data: SpecFactory) -> None:
    spec = load_spec(spec_data())

    assert spec.version == 2
    assert (spec.objective.metric, spec.objective.mode) == ("val_accuracy", "max")
    assert spec.mlflow_experiment == "demo"
    assert spec.search.sampler == "tpe"
    assert spec.search.scheduler.kind == "fifo"
    assert spec.secondary_objectives == []


@pytest.mark.parametrize(
    ("workload", "metric", "mode"),
    [("lstm-ptb", "val_perplexity", "min"), ("transformer-mt", "val_bleu", "max")],
)
def test_objective_defaults_to_the_workloads_metric(
    spec_data: SpecFactory, workload: str, metric: str, mode: str
) -> None:
    spec = load_spec(spec_data(job__workload=workload))

    assert (spec.objective.metric, spec.objective.mode) == (metric, mode)


@pytest.mark.parametrize(
    ("objective", "expected"),
    [
        ("val_loss", ("val_loss", "min")),
        ({"metric": "epoch_seconds"}, ("epoch_seconds", "min")),
        ({"metric": "val_accuracy", "mode": "min"}, ("val_accuracy", "min")),
    ],
)
def test_objective_mode_defaults_from_the_metric(
    spec_data: SpecFactory, objective: object, expected: tuple[str, str]
) -> None:
    spec = load_spec(spec_data(objective=objective))

    assert (spec.objective.metric, spec.objective.mode) == expected


def test_secondary_objectives_make_a_multi_objective_spec(spec_data: SpecFactory) -> None:
    spec = load_spec(spec_data(secondary_objectives=["samples_per_second"]))

    assert [(o.metric, o.mode) for o in spec.objectives] == [
        ("val_accuracy", "max"),
        ("samples_per_second", "max"),
    ]


def test_scheduler_shorthand_is_a_kind(spec_data: SpecFactory) -> None:
    spec = load_spec(spec_data(search={"scheduler": "asha"}))

    assert spec.search.scheduler.model_dump() == {
        "kind": "asha",
        "grace_period": 1,
        "reduction_factor": 3.0,
    }


def test_yaml_text_is_accepted() -> None:
    spec = load_spec(
        "name: demo\n"
        "job: {workload: mnist1d, global_batch_size: 512, epochs: 3}\n"
        "space:\n  extrapolation: [none, past]\n"
    )

    assert spec.space["extrapolation"].type == "categorical"


@pytest.mark.parametrize("text", ["name: [unclosed", "just a string"])
def test_text_that_is_not_a_yaml_mapping_is_a_spec_error(text: str) -> None:
    with pytest.raises(SpecError) as caught:
        load_spec(text)

    assert caught.value.errors[0].path == ""


def test_dumped_spec_validates_to_the_same_spec(spec_data: SpecFactory) -> None:
    spec = load_spec(spec_data(preset="extrap-paper", space={"noise_std": None}))

    again = load_spec(json.loads(spec.model_dump_json()))

    assert again == spec
    assert again.based_on == "extrap-paper"
    assert "noise_std" not in again.space


def test_json_schema_describes_the_spec() -> None:
    schema = SweepSpec.json_schema()

    json.dumps(schema)
    assert {"name", "job", "space", "objective", "search"} <= set(schema["properties"])
    assert set(schema["required"]) == {"name", "job"}
    assert "cmaes" in json.dumps(schema)


def test_spec_error_prints_one_line_per_problem() -> None:
    error = SpecError([FieldError("space.lr.low", "too low"), FieldError("name", "bad")])

    assert str(error) == "space.lr.low: too low\nname: bad"


@pytest.mark.parametrize(
    "error",
    [
        SpecError([FieldError("space.lr.low", "too low")]),
        UnknownSearchableError("learning_rate"),
        UnknownPresetError("paper"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_errors_survive_pickling(error: ValueError) -> None:
    again = pickle.loads(pickle.dumps(error))

    assert (type(again), str(again)) == (type(error), str(error))


def test_tracking_takes_over_mlflow_experiment(spec_data: SpecFactory) -> None:
    assert load_spec(spec_data()).tracking.experiment == load_spec(spec_data()).name
    legacy = load_spec(spec_data(mlflow_experiment="old-name"))
    assert legacy.tracking.experiment == legacy.mlflow_experiment == "old-name"
    new = load_spec(spec_data(tracking={"experiment": "new", "register_model": "mnist1d-best"}))
    assert (new.mlflow_experiment, new.tracking.register_model) == ("new", "mnist1d-best")
    stored = new.stored_form()
    assert "mlflow_experiment" not in stored and load_spec(stored) == new


def test_both_experiment_keys_are_refused(spec_data: SpecFactory) -> None:
    with pytest.raises(SpecError, match=r"keep tracking\.experiment"):
        load_spec(spec_data(mlflow_experiment="a", tracking={"experiment": "b"}))


def test_confirmation_counts_against_the_trial_budget(spec_data: SpecFactory) -> None:
    spec = load_spec(spec_data(search={"num_trials": 8, "confirm": {"top_k": 2, "seeds": 3}}))
    assert spec.search.confirm is not None and spec.search.total_trials == 14
    assert load_spec(spec_data()).search.confirm is None
    with pytest.raises(SpecError, match=r"search\.confirm\.seeds"):
        load_spec(spec_data(search={"confirm": {"seeds": 1}}))
