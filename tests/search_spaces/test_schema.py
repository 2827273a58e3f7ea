"""The published JSON schema carries the limits and field rules the validator enforces."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from search_spaces import SweepSpec, load_spec, spec_errors
from search_spaces.limits import (
    MAX_CHOICES,
    MAX_ITEMS,
    MAX_KEY_LENGTH,
    MAX_PARAMETERS,
    MAX_STRING_LENGTH,
    VALUE_SCHEMA,
)
from tests.search_spaces.conftest import make_spec

EXAMPLES = sorted((Path(__file__).parents[2] / "examples").glob("*.yaml"))
SCHEMA = SweepSpec.json_schema()
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
LR = {"type": "float", "low": 0.01, "high": 1.0, "log": True}


def schema_errors(data: Any) -> list[str]:
    return [error.message for error in VALIDATOR.iter_errors(data)]


def test_the_schema_is_a_valid_json_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


def test_the_schema_states_the_limits() -> None:
    defs = SCHEMA["$defs"]
    name = SCHEMA["properties"]["name"]
    space = SCHEMA["properties"]["space"]
    data_dir = defs["TrainJobConfig"]["properties"]["data_dir"]["anyOf"][0]
    when = defs["FloatParam"]["properties"]["when"]

    assert (name["pattern"], name["maxLength"]) == ("^[a-z0-9][a-z0-9._-]{0,63}$", 64)
    assert space["maxProperties"] == MAX_PARAMETERS
    assert space["propertyNames"]["maxLength"] == MAX_KEY_LENGTH
    assert defs["CategoricalParam"]["properties"]["choices"]["maxItems"] == MAX_CHOICES
    assert when["minProperties"] == 1 and when["additionalProperties"]["minItems"] == 1
    assert data_dir["pattern"] == "^/[^\\u0000]*$"
    assert defs["SearchConfig"]["properties"]["seed"] == {
        **defs["SearchConfig"]["properties"]["seed"],
        "minimum": 0,
        "exclusiveMaximum": 2**32,
    }
    assert SCHEMA["properties"]["description"]["anyOf"][0]["maxLength"] == MAX_STRING_LENGTH
    assert defs["TrainJobConfig"]["properties"]["workload_options"]["maxProperties"] == MAX_ITEMS
    assert VALUE_SCHEMA in defs


def test_the_openapi_form_refers_to_its_own_components() -> None:
    # The service builds its OpenAPI components with this ref template (SweepSpec and $defs).
    schema = SweepSpec.model_json_schema(ref_template="#/components/schemas/{model}")

    assert "#/components/schemas/SpecValue" in str(schema)
    assert "#/$defs/" not in str(schema)
    assert VALUE_SCHEMA in schema["$defs"]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_every_valid_example_fits_the_schema_in_its_stored_form(path: Path) -> None:
    assert schema_errors(load_spec(path).stored_form()) == []


@pytest.mark.parametrize(
    "spec",
    [
        make_spec(space={"lr": LR}),
        make_spec(space={"workload.hidden": {"low": 32, "high": 128}}),  # int without `type`
        make_spec(
            space={
                "extrapolation": {"choices": ["none", "gradient"]},
                "gamma_ratio": {**LR, "when": {"extrapolation": ["gradient"]}},
                "milestones": {"choices": [[0.5, 0.75], [0.3, 0.6, 0.9]]},
            },
            job__data_dir="/data",
        ),
    ],
    ids=["float", "untyped int", "conditional"],
)
def test_valid_specs_fit_the_schema(spec: dict[str, Any]) -> None:
    assert spec_errors(spec) == []
    assert schema_errors(spec) == []


def _with(spec: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    spec = copy.deepcopy(spec)
    *parents, leaf = path.split(".")
    target = spec
    for part in parents:
        target = target.setdefault(part, {})
    target[leaf] = value
    return spec


BASE = make_spec(
    space={"lr": LR, "extrapolation": {"choices": ["none", "gradient"]}}, search={"seed": 0}
)

# (id, a spec that breaks one limit or field rule): the validator and the schema refuse it.
BROKEN: list[tuple[str, dict[str, Any]]] = [
    ("long description", _with(BASE, "description", "d" * (MAX_STRING_LENGTH + 1))),
    ("NUL in a string", _with(BASE, "description", "a\x00b")),
    ("long name", _with(BASE, "name", "n" * 65)),
    ("name not a slug", _with(BASE, "name", "My Sweep")),
    ("relative data_dir", _with(BASE, "job.data_dir", "data")),
    ("home data_dir", _with(BASE, "job.data_dir", "~me/data")),
    ("too many choices", _with(BASE, "space.extrapolation.choices", list(range(MAX_CHOICES + 1)))),
    ("empty condition", _with(BASE, "space.lr.when", {})),
    ("too many parameters", _with(BASE, "space", {f"p{i}": LR for i in range(65)})),
    ("long key", _with(BASE, "job.workload_options", {"k" * (MAX_KEY_LENGTH + 1): 1})),
    ("long list", _with(BASE, "secondary_objectives", ["val_loss"] * (MAX_ITEMS + 1))),
    ("long nested string", _with(BASE, "space.extrapolation.choices", [["x" * 1001]])),
    ("big mapping", _with(BASE, "search.sampler_options", {f"o{i}": 1 for i in range(1001)})),
    ("negative seed", _with(BASE, "search.seed", -1)),
    ("zero epochs", _with(BASE, "job.epochs", 0)),
    ("unknown field", _with(BASE, "trials", 3)),
]


@pytest.mark.parametrize("spec", [spec for _, spec in BROKEN], ids=[name for name, _ in BROKEN])
def test_a_spec_breaking_a_limit_fails_the_validator_and_the_schema(spec: dict[str, Any]) -> None:
    assert spec_errors(spec) != []
    assert schema_errors(spec) != []
