"""Bounded parsing: every limit holds at its value and refuses one past it, in little time."""

from __future__ import annotations

import datetime
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter

from search_spaces import ParamSpec, SpecError, SweepSpec, load_spec, spec_errors
from search_spaces import validation as validation_module
from search_spaces.errors import shorten
from search_spaces.limits import (
    LIMITS,
    MAX_CHOICES,
    MAX_DEPTH,
    MAX_ERRORS,
    MAX_ITEMS,
    MAX_KEY_LENGTH,
    MAX_MESSAGE_LENGTH,
    MAX_PARAMETERS,
    MAX_SPEC_BYTES,
    MAX_STRING_LENGTH,
    MAX_VALUES,
    STORED_CONTEXT,
)
from search_spaces.spec import spec_hash
from tests.search_spaces.conftest import MINIMAL_SPEC, make_spec

REFERENCE = (Path(__file__).parents[2] / "docs" / "spec-reference.md").read_text("utf-8")
PARAM = TypeAdapter(ParamSpec)
MINIMAL_YAML = (
    "name: demo\n"
    "job: {workload: mnist1d, global_batch_size: 512, epochs: 3}\n"
    "space: {lr: {low: 0.01, high: 1.0, log: true}}\n"
)
LOADERS = [
    name for name in ("_PurePythonLoader", "_LibyamlLoader") if hasattr(validation_module, name)
]


@pytest.fixture(params=LOADERS)
def yaml_loader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Run a test with each YAML loader (libyaml's parser, and the pure-Python fallback)."""
    monkeypatch.setattr(validation_module, "_SpecLoader", getattr(validation_module, request.param))
    yield request.param


def messages(data: Any) -> list[str]:
    return [str(error) for error in spec_errors(data)]


def billion_laughs(levels: int) -> str:
    """Nine aliases of the level below per level: 9**levels strings from a few hundred bytes."""
    names = [
        "lr",
        "momentum",
        "weight_decay",
        "gamma",
        "gamma_ratio",
        "noise_std",
        "warmup_epochs",
        "trust_coefficient",
    ]
    lines = [
        "name: bomb",
        "job: {workload: mnist1d, global_batch_size: 512, epochs: 1}",
        "space:",
        "  decay_factor: {choices: &a0 [lol,lol,lol,lol,lol,lol,lol,lol,lol]}",
    ]
    for level in range(1, levels):
        refs = ",".join([f"*a{level - 1}"] * 9)
        lines.append(f"  {names[level - 1]}: {{choices: &a{level} [{refs}]}}")
    return "\n".join(lines) + "\n"


def nested_list(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


def test_the_docs_table_states_every_limit_with_its_value() -> None:
    section = REFERENCE.split("## Limits", 1)[1].split("\n## ", 1)[0]
    rows = dict(re.findall(r"^\| `(\w+)` \| ([\d,]+)", section, re.MULTILINE))

    assert {name: int(value.replace(",", "")) for name, value in rows.items()} == {
        limit.name: limit.value for limit in LIMITS
    }


@pytest.mark.parametrize("levels", [7, 9])
def test_a_billion_laughs_is_refused_before_anything_is_built(
    yaml_loader: str, levels: int
) -> None:
    text = billion_laughs(levels)
    assert len(text) < 800

    started = time.perf_counter()
    with pytest.raises(SpecError) as caught:
        load_spec(text)

    assert time.perf_counter() - started < 1.0
    [error] = caught.value.errors
    assert error.path == ""
    assert "anchors and aliases are not accepted" in error.message
    assert "(line 4, column" in error.message
    assert len(str(caught.value)) < 300


@pytest.mark.parametrize(
    "text",
    [
        "a: &x 1\nname: demo\n",  # an anchor alone
        "name: demo\nb: *x\n",  # an alias alone (undefined, refused the same way)
        "base: &b {epochs: 3}\njob: {<<: *b, workload: mnist1d}\n",  # a merge key through one
    ],
)
def test_anchors_and_aliases_are_refused(yaml_loader: str, text: str) -> None:
    [message] = messages(text)

    assert "anchors and aliases are not accepted in a spec; write the values out" in message


def test_yaml_nests_up_to_max_depth(yaml_loader: str) -> None:
    at_limit = f"name: demo\nx: {'[' * (MAX_DEPTH - 1)}{']' * (MAX_DEPTH - 1)}\n"
    past_it = f"name: demo\nx: {'[' * MAX_DEPTH}{']' * MAX_DEPTH}\n"

    assert not any("nests deeper" in m for m in messages(at_limit))
    assert [m for m in messages(past_it) if "nests deeper" in m] == [
        "the spec is not valid YAML: the spec nests deeper than 32 levels of mappings and lists: "
        "flatten it (line 2, column 35)"
    ]


@pytest.mark.parametrize("opening", ["[", "{a: "])
def test_yaml_or_json_text_nested_10000_deep_is_a_spec_error(
    yaml_loader: str, opening: str
) -> None:
    closing = "]" if opening == "[" else "}"
    text = '{"name": "demo", "x": ' + opening * 10_000 + "1" + closing * 10_000 + "}"

    [message] = messages(text)

    assert "nest" in message


def test_a_mapping_nests_up_to_max_depth() -> None:
    # The spec is level 1, job 2, workload_options 3: a list there holds the rest.
    at_limit = make_spec(job__workload_options={"hidden": nested_list(MAX_DEPTH - 3)})
    past_it = make_spec(job__workload_options={"hidden": nested_list(MAX_DEPTH - 2)})

    assert not any("nests deeper" in m for m in messages(at_limit))
    assert messages(past_it) == [
        "job.workload_options.hidden" + ".0" * (MAX_DEPTH - 3) + ": nests deeper than 32 levels "
        "of mappings and lists: flatten it"
    ]


def test_a_mapping_nested_10000_deep_is_refused_without_recursion() -> None:
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(10_000):
        node["a"] = {}
        node = node["a"]

    [message] = messages(make_spec(job__workload_options=deep))

    assert "nests deeper than 32 levels" in message


def test_a_spec_text_may_have_max_spec_bytes() -> None:
    padding = MAX_SPEC_BYTES - len(MINIMAL_YAML) - len("# \n")
    at_limit = MINIMAL_YAML + "# " + "x" * padding + "\n"
    assert len(at_limit.encode()) == MAX_SPEC_BYTES

    assert load_spec(at_limit).name == "demo"
    with pytest.raises(SpecError, match=r"at most 262,144 \(256 KiB\) are read"):
        load_spec(at_limit + "\n")


def test_the_size_counts_utf8_bytes_and_applies_to_bytes_and_files(tmp_path: Path) -> None:
    text = MINIMAL_YAML + "# " + "é" * (MAX_SPEC_BYTES // 2) + "\n"  # fewer chars than bytes
    path = tmp_path / "spec.yaml"
    path.write_text(text, encoding="utf-8")

    for data in (text, text.encode(), path):
        with pytest.raises(SpecError, match=r"256 KiB"):
            load_spec(data)


def test_a_huge_text_is_refused_without_being_parsed() -> None:
    started = time.perf_counter()
    with pytest.raises(SpecError, match="256 KiB"):
        load_spec("[" * 50_000_000)

    assert time.perf_counter() - started < 1.0


def test_the_walk_visits_at_most_max_values() -> None:
    shared = list(range(MAX_ITEMS))
    many = {"choices": [[shared] for _ in range(MAX_ITEMS)]}  # 1,000 x 1,000 through one list

    started = time.perf_counter()
    found = messages(make_spec(space={"milestones": many}))

    assert time.perf_counter() - started < 1.0
    assert found == [
        f"the spec holds more than {MAX_VALUES:,} values (a real one: a few hundred): "
        "shorten its lists and mappings"
    ]


def test_lists_and_mappings_hold_up_to_max_items() -> None:
    options_at_limit = {f"option{i}": i for i in range(MAX_ITEMS)}
    options_past_it = {f"option{i}": i for i in range(MAX_ITEMS + 1)}

    assert not any(
        "at most 1,000" in m for m in messages(make_spec(job__workload_options=options_at_limit))
    )
    assert messages(make_spec(job__workload_options=options_past_it)) == [
        "job.workload_options: 1,001 entries; a mapping in a spec has at most 1,000: shorten it"
    ]
    assert messages(make_spec(secondary_objectives=["val_loss"] * (MAX_ITEMS + 1))) == [
        "secondary_objectives: 1,001 items; a list in a spec has at most 1,000: shorten it"
    ]


def test_yaml_lists_and_mappings_stop_at_max_items(yaml_loader: str) -> None:
    def listed(count: int) -> str:
        return MINIMAL_YAML + f"secondary_objectives: [{', '.join(['val_loss'] * count)}]\n"

    def mapped(count: int) -> str:
        options = ", ".join(f"o{i}: {i}" for i in range(count))
        return MINIMAL_YAML.replace("epochs: 3}", f"epochs: 3, workload_options: {{{options}}}}}")

    assert not any("more than 1,000" in m for m in messages(listed(MAX_ITEMS)))
    assert not any("more than 1,000" in m for m in messages(mapped(MAX_ITEMS)))
    [too_long] = messages(listed(MAX_ITEMS + 1))
    [too_big] = messages(mapped(MAX_ITEMS + 1))
    assert too_long.startswith("the spec is not valid YAML: a list has more than 1,000 items")
    assert too_big.startswith("the spec is not valid YAML: a mapping has more than 1,000 entries")


def test_strings_hold_up_to_max_string_length() -> None:
    assert load_spec(make_spec(description="d" * MAX_STRING_LENGTH)).description
    assert messages(make_spec(description="d" * (MAX_STRING_LENGTH + 1))) == [
        "description: 1,001 characters; a string in a spec has at most 1,000: shorten it"
    ]


def test_keys_hold_up_to_max_key_length() -> None:
    at_limit = messages(make_spec(job__workload_options={"k" * MAX_KEY_LENGTH: 1}))
    past_it = messages(make_spec(job__workload_options={"k" * (MAX_KEY_LENGTH + 1): 1}))

    assert len(at_limit) == 1 and "unknown field" in at_limit[0]
    assert past_it == [
        f"job.workload_options.{'k' * 60}…: a key of 101 characters; keys have at most 100"
    ]


def test_the_space_holds_up_to_max_parameters() -> None:
    at_limit = messages(make_spec(space={f"p{i}": [1] for i in range(MAX_PARAMETERS)}))
    past_it = messages(make_spec(space={f"p{i}": [1] for i in range(MAX_PARAMETERS + 1)}))

    assert len(at_limit) == MAX_ERRORS + 1 and "not a searchable name" in at_limit[0]
    assert past_it == [
        "space: the space has 65 parameters; at most 64 can be searched: fix the others in job "
        "(or remove them from the preset with null)"
    ]


def test_a_categorical_holds_up_to_max_choices() -> None:
    assert len(PARAM.validate_python(list(range(MAX_CHOICES))).choices) == MAX_CHOICES
    with pytest.raises(ValueError, match=r"1,001 choices; a categorical takes at most 1,000"):
        PARAM.validate_python(list(range(MAX_CHOICES + 1)))


def test_choices_past_the_limit_are_refused_in_no_time() -> None:
    started = time.perf_counter()
    found = messages(make_spec(space={"lr": {"choices": [1e-4 + i * 1e-5 for i in range(60_000)]}}))

    assert time.perf_counter() - started < 1.0
    assert found == [
        "space.lr.choices: 60,000 items; a list in a spec has at most 1,000: shorten it"
    ]


def test_repeated_choices_are_found_in_linear_time() -> None:
    # A stored spec skips the choice limit: 60,000 choices took tens of seconds when quadratic.
    choices = [f"c{i}" for i in range(60_000)] + ["c7"]

    started = time.perf_counter()
    with pytest.raises(ValueError, match=r"choices repeat 'c7': list each value once"):
        PARAM.validate_python({"choices": choices}, context={STORED_CONTEXT: True})

    assert time.perf_counter() - started < 2.0


@pytest.mark.parametrize(
    ("choices", "repeated"),
    [
        ([True, 1], None),  # a flag and a number: different choices
        ([False, 0, None, "0"], None),
        ([1, 1.0], "1"),
        ([[0.5, 0.75], [0.5, 0.75]], "[0.5, 0.75]"),
        (["x" * 500, "x" * 500], "'" + "x" * 59 + "…"),
    ],
)
def test_repeats_are_told_apart_like_optuna_tells_them_apart(
    choices: list[Any], repeated: str | None
) -> None:
    if repeated is None:
        assert PARAM.validate_python(choices).choices == choices
    else:
        with pytest.raises(ValueError, match=rf"choices repeat {re.escape(repeated)}: list each"):
            PARAM.validate_python(choices)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (float("nan"), "nan is not a finite number"),
        (float("inf"), "inf is not a finite number"),
        ({1, 2}, "a set is not a JSON value"),
        (b"bytes", "a bytes is not a JSON value"),
        (datetime.date(2024, 1, 1), "a date is not a JSON value"),
    ],
    ids=["nan", "inf", "set", "bytes", "date"],
)
def test_values_are_finite_json(value: Any, fragment: str) -> None:
    [message] = messages(make_spec(job__divergence_loss_bound=value))

    assert message.startswith("job.divergence_loss_bound: ") and fragment in message


def test_keys_are_strings() -> None:
    assert messages(make_spec(job__workload_options={1: 2})) == [
        "job.workload_options.1: the key '1' is a int: keys are strings (quote it in YAML)"
    ]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (MINIMAL_YAML + "description: !!binary aGVsbG8=\n", "the tag tag:yaml.org,2002:binary"),
        (MINIMAL_YAML + "description: !!set {a, b}\n", "the tag tag:yaml.org,2002:set"),
        (MINIMAL_YAML + "name: again\n", "the key 'name' appears twice in this mapping"),
        (MINIMAL_YAML + "x: " + "9" * 5000 + "\n", "the spec cannot be read: Exceeds the limit"),
        (MINIMAL_YAML + "x: 1\n---\ny: 2\n", "not valid YAML: but found another document"),
        ("name: [unclosed", "not valid YAML"),
    ],
    ids=["binary", "set", "repeated key", "huge integer", "two documents", "unclosed"],
)
def test_yaml_builds_json_values_only(yaml_loader: str, text: str, fragment: str) -> None:
    [message] = messages(text)

    assert fragment in message


def test_yaml_dates_stay_strings(yaml_loader: str) -> None:
    spec = load_spec(MINIMAL_YAML + "description: 2024-01-01\n")

    assert spec.description == "2024-01-01"


@pytest.mark.parametrize(
    ("spec", "quoted"),
    [
        (make_spec(job__workload="w" * 900), "unknown workload 'www"),
        (make_spec(job__optimizer={"extrapolation": "e" * 900}), "Invalid extrapolation='eee"),
        (make_spec(space={"x" * 99: [1]}), "'xxx"),
        (make_spec(search={"scheduler": {"kind": "k" * 900}}), "unknown kind 'kkk"),
        (make_spec(job__precision="p" * 900), "(got 'ppp"),
        (make_spec(preset="p" * 900), "unknown preset 'ppp"),
        (make_spec(name="N" * 900), "name 'NNN"),
        (make_spec(objective={"metric": "test_" + "m" * 900}), "'test_mmm"),
        (
            make_spec(
                space={
                    "extrapolation": ["none", "gradient"],
                    "gamma_ratio": {
                        "low": 0.1,
                        "high": 0.2,
                        "when": {"extrapolation": ["q" * 900]},
                    },
                }
            ),
            "can never be 'qqq",
        ),
    ],
    ids=[
        "workload",
        "variant",
        "searchable name",
        "union tag",
        "literal",
        "preset",
        "name",
        "metric",
        "condition",
    ],
)
def test_a_message_quotes_at_most_a_short_prefix_of_a_value(
    spec: dict[str, Any], quoted: str
) -> None:
    [error] = spec_errors(spec)

    assert quoted in error.message
    assert re.search(r"(\w)\1{60}", error.message) is None, error  # no run of 61 equal characters


def test_long_messages_are_cut_to_max_message_length() -> None:
    # The trainers' milestone rule quotes the whole list: the message is cut, not the list.
    found = spec_errors(make_spec(space={"milestones": [[0.5], [0.9] + [2.0] * 900]}))

    assert found and all(len(error.message) <= MAX_MESSAGE_LENGTH + 1 for error in found)
    assert any(error.message.endswith("…") for error in found)


def test_at_most_max_errors_are_listed_then_counted() -> None:
    found = spec_errors(make_spec(secondary_objectives=[f"m{i}" for i in range(80)]))

    assert len(found) == MAX_ERRORS + 1
    assert found[-1].path == "" and found[-1].message == "… and 30 more problems"


@pytest.mark.parametrize("data", [None, 5, 1.5, ["a"], object()], ids=repr)
def test_other_inputs_are_spec_errors(data: Any) -> None:
    with pytest.raises(SpecError):
        load_spec(data)


def test_unreadable_files_are_spec_errors(tmp_path: Path) -> None:
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"name: \xff\xfe\n")

    for path, fragment in [
        (tmp_path / "missing.yaml", "No such file"),
        (tmp_path, "Is a directory"),
        (binary, "is not UTF-8 text"),
    ]:
        with pytest.raises(SpecError, match=fragment):
            load_spec(path)


def test_an_internal_error_is_still_a_spec_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(spec: SweepSpec) -> list[Any]:
        raise TypeError("a bug")

    monkeypatch.setattr("search_spaces.spec.run_checks", broken)

    with pytest.raises(SpecError, match=r"an internal error \(TypeError\)") as caught:
        load_spec(MINIMAL_SPEC)

    assert isinstance(caught.value.__cause__, TypeError)


def test_a_stored_spec_from_before_the_limits_stays_readable() -> None:
    stored = load_spec(make_spec(space={"extrapolation": ["none", "gradient"]})).stored_form()
    stored["space"]["extrapolation"]["when"] = {}  # what specs were stored with before
    stored["space"]["extrapolation"]["choices"] = [f"c{i}" for i in range(MAX_CHOICES + 1)]
    stored["description"] = "d" * (MAX_STRING_LENGTH + 1)
    stored["job"]["data_dir"] = "relative/dir"

    again = SweepSpec.from_stored(stored, spec_hash(stored))

    assert len(again.space["extrapolation"].choices) == MAX_CHOICES + 1


def test_the_stored_form_leaves_out_empty_conditions_so_it_loads_again() -> None:
    spec = load_spec(
        make_spec(
            space={
                "extrapolation": ["none", "gradient"],
                "gamma_ratio": {"low": 0.02, "high": 0.2, "when": {"extrapolation": "gradient"}},
            }
        )
    )

    stored = json.loads(json.dumps(spec.stored_form()))

    assert "when" not in stored["space"]["extrapolation"]
    assert stored["space"]["gamma_ratio"]["when"] == {"extrapolation": ["gradient"]}
    assert load_spec(stored) == spec


def test_shorten_keeps_a_prefix() -> None:
    assert shorten("abc") == "'abc'"
    assert shorten("x" * 100) == "'" + "x" * 59 + "…"
    assert len(shorten(nested_list(5000))) <= 61
    assert shorten(10**5000).startswith("<an integer of")


def test_loops_of_conditions_are_found_in_linear_time() -> None:
    # Every parameter depends on all before it: a walk of every path would take 2**40 steps.
    space = {f"p{i}": {"choices": [1], "when": {f"p{j}": [1] for j in range(i)}} for i in range(40)}
    space["p0"]["when"] = {"p39": [1]}  # and one loop through all of them

    started = time.perf_counter()
    found = spec_errors(make_spec(space=space))

    assert time.perf_counter() - started < 2.0
    assert any(
        e.path == "space.p0.when" and "circular condition p0 → p39" in e.message for e in found
    )


def test_a_choice_must_be_a_json_value() -> None:
    with pytest.raises(ValueError, match=r"the choice \{1, 2\} is not a JSON value"):
        PARAM.validate_python([{1, 2}])
