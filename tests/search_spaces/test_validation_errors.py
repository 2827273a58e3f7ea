"""Every way a spec can be wrong gives the right path and a message with the fix."""

from __future__ import annotations

from typing import Any

import pytest

from search_spaces import SpecError, load_spec, spec_errors
from tests.search_spaces.conftest import make_spec

LR = {"low": 0.01, "high": 1.0, "log": True}
MOMENTUM = {"low": 0.5, "high": 0.99}
GAMMA_RATIO = {"low": 0.02, "high": 0.25, "log": True}

# (id, spec, expected path, a fragment of the message)
BAD_SPECS: list[tuple[str, dict[str, Any], str, str]] = [
    (
        "low above high",
        make_spec(space={"lr": {"low": 1.0, "high": 0.1}}),
        "space.lr.low",
        "make low ≤ high",
    ),
    (
        "int low above high",
        make_spec(space={"workload.hidden": {"low": 200, "high": 100}}),
        "space.workload.hidden.low",
        "above high",
    ),
    (
        "log with low 0",
        make_spec(space={"lr": {"low": 0.0, "high": 1.0, "log": True}}),
        "space.lr.low",
        "log scale needs low > 0",
    ),
    (
        "log with negative low",
        make_spec(space={"lr": {"type": "float", "low": -1, "high": 1, "log": True}}),
        "space.lr.low",
        "or set log: false",
    ),
    (
        "log with step",
        make_spec(space={"lr": {"low": 0.1, "high": 1.0, "log": True, "step": 0.1}}),
        "space.lr.step",
        "drop step or log",
    ),
    (
        "step does not fit",
        make_spec(space={"lr": {"low": 0.1, "high": 1.0, "step": 0.4}}),
        "space.lr.high",
        "set high to 0.9",
    ),
    (
        "unknown param type",
        make_spec(space={"lr": {"type": "double", "low": 0.1, "high": 1}}),
        "space.lr",
        "type float, int or categorical",
    ),
    (
        "repeated choice",
        make_spec(space={"extrapolation": ["none", "none"]}),
        "space.extrapolation.choices",
        "list each value once",
    ),
    ("empty space", make_spec(space={}), "space", "add at least one parameter"),
    (
        "unknown searchable name",
        make_spec(space={"learning_rate": LR}),
        "space.learning_rate",
        "use one of: lr, momentum",
    ),
    (
        "flag searched as float",
        make_spec(space={"nesterov": {"low": 0.0, "high": 1.0}}),
        "space.nesterov.type",
        "takes categorical values",
    ),
    (
        "when on an unknown parameter",
        make_spec(
            space={
                "lr": LR,
                "gamma_ratio": {**GAMMA_RATIO, "when": {"extrapolation": ["gradient"]}},
            }
        ),
        "space.gamma_ratio.when.extrapolation",
        "not a parameter of this space",
    ),
    (
        "when on a value never taken",
        make_spec(
            space={
                "extrapolation": ["none", "gradient"],
                "gamma_ratio": {**GAMMA_RATIO, "when": {"extrapolation": ["past"]}},
            }
        ),
        "space.gamma_ratio.when.extrapolation",
        "can never be 'past'",
    ),
    (
        "when on a numeric parameter",
        make_spec(space={"lr": LR, "momentum": {**MOMENTUM, "when": {"lr": [0.1]}}}),
        "space.momentum.when.lr",
        "only refer to categorical parameters",
    ),
    (
        "when on itself",
        make_spec(
            space={
                "extrapolation": {"choices": ["none", "past"], "when": {"extrapolation": ["past"]}}
            }
        ),
        "space.extrapolation.when.extrapolation",
        "cannot depend on itself",
    ),
    (
        "circular when",
        make_spec(
            space={
                "extrapolation": {"choices": ["none", "gradient"], "when": {"noise": ["gaussian"]}},
                "noise": {
                    "choices": ["gaussian", "uniform"],
                    "when": {"extrapolation": ["gradient"]},
                },
            }
        ),
        "space.extrapolation.when",
        "circular condition extrapolation → noise → extrapolation",
    ),
    (
        "never active",
        make_spec(
            space={
                "extrapolation": ["none", "gradient+noise"],
                "noise": {
                    "choices": ["gaussian", "uniform"],
                    "when": {"extrapolation": ["gradient+noise"]},
                },
                "noise_std": {
                    "low": 0.01,
                    "high": 0.1,
                    "when": {"noise": ["uniform"], "extrapolation": ["none"]},
                },
            }
        ),
        "space.noise_std.when",
        "never active",
    ),
    (
        "batch over workers",
        make_spec(job__workers=3),
        "job.global_batch_size",
        "choose a multiple of 3",
    ),
    (
        "micro batch",
        make_spec(job__max_micro_batch=100),
        "job.global_batch_size",
        "not a multiple of max_micro_batch=100",
    ),
    (
        "job nesterov without momentum",
        make_spec(job__optimizer={"nesterov": True, "momentum": 0.0}),
        "job.optimizer.nesterov",
        "needs momentum > 0",
    ),
    (
        "job sam without gamma",
        make_spec(job__optimizer={"extrapolation": "sam"}),
        "job.optimizer.extrapolation",
        "needs an absolute gamma",
    ),
    (
        "job gamma schedule without gamma",
        make_spec(job__gamma_schedule={"kind": "cosine"}),
        "job.gamma_schedule.kind",
        "needs an absolute optimizer.gamma",
    ),
    ("job field type", make_spec(job__epochs=0), "job.epochs", "greater than 0"),
    ("unknown job field", make_spec(job__epoch=3), "job.epoch", "the allowed fields are"),
    (
        "unknown workload",
        make_spec(job__workload="mnist2d"),
        "job.workload",
        "registered workloads: lstm-ptb, lstm-wikitext2, mnist1d",
    ),
    (
        "unknown workload option",
        make_spec(job__workload_options={"hiden": 10}),
        "job.workload_options.hiden",
        "the allowed fields are: model, num_samples",
    ),
    (
        "bad workload option",
        make_spec(job__workload_options={"num_samples": 10}),
        "job.workload_options.num_samples",
        "greater than or equal to 1000",
    ),
    (
        "unknown searched workload option",
        make_spec(space={"workload.hiden": [10, 20]}),
        "space.workload.hiden",
        "use one of workload.model",
    ),
    (
        "searched workload option out of range",
        make_spec(space={"workload.hidden": {"low": 0, "high": 100}}),
        "space.workload.hidden.low",
        "workload.hidden=0",
    ),
    (
        "cmaes with categoricals",
        make_spec(
            space={"lr": LR, "momentum": MOMENTUM, "extrapolation": ["none", "gradient"]},
            search={"sampler": "cmaes"},
        ),
        "search.sampler",
        "use tpe or tpe-multivariate",
    ),
    (
        "cmaes with one parameter",
        make_spec(search={"sampler": "cmaes"}),
        "search.sampler",
        "at least 2 numeric parameters",
    ),
    (
        "grid with continuous floats",
        make_spec(search={"sampler": "grid"}),
        "search.sampler",
        "add a step to each",
    ),
    (
        "single-objective sampler, two objectives",
        make_spec(
            space={"lr": LR, "momentum": MOMENTUM},
            search={"sampler": "cmaes"},
            secondary_objectives=["epoch_seconds"],
        ),
        "search.sampler",
        "use nsga2, tpe or random",
    ),
    (
        "asha with two objectives",
        make_spec(search={"scheduler": "asha"}, secondary_objectives=["epoch_seconds"]),
        "search.scheduler.kind",
        "use scheduler: fifo",
    ),
    (
        "median with two objectives",
        make_spec(search={"scheduler": "median"}, secondary_objectives=["val_loss"]),
        "search.scheduler.kind",
        "use scheduler: fifo",
    ),
    (
        "grace period beyond the run",
        make_spec(search={"scheduler": {"kind": "asha", "grace_period": 5}}),
        "search.scheduler.grace_period",
        "longer than the run",
    ),
    (
        "unknown scheduler",
        make_spec(search={"scheduler": "hyperband"}),
        "search.scheduler",
        "use one of 'fifo', 'asha', 'median'",
    ),
    (
        "unknown sampler",
        make_spec(search={"sampler": "cma"}),
        "search.sampler",
        "use one of tpe, tpe-multivariate, cmaes",
    ),
    (
        "unknown sampler option",
        make_spec(search={"sampler_options": {"n_startup": 3}}),
        "search.sampler_options.n_startup",
        "n_startup_trials",
    ),
    (
        "option of another sampler",
        make_spec(search={"sampler": "random", "sampler_options": {"n_startup_trials": 3}}),
        "search.sampler_options.n_startup_trials",
        "remove it",
    ),
    (
        "zero trials",
        make_spec(search={"num_trials": 0}),
        "search.num_trials",
        "greater than or equal to 1",
    ),
    (
        "metric the workload does not report",
        make_spec(objective={"metric": "val_bleu"}),
        "objective.metric",
        "use one of val_accuracy, val_loss",
    ),
    (
        "bookkeeping metric",
        make_spec(objective={"metric": "lr", "mode": "min"}),
        "objective.metric",
        "use one of val_accuracy",
    ),
    (
        "metric without a known mode",
        make_spec(objective={"metric": "f1"}),
        "objective.mode",
        "required",
    ),
    (
        "bad secondary metric",
        make_spec(secondary_objectives=["val_bleu"]),
        "secondary_objectives.0.metric",
        "does not report 'val_bleu'",
    ),
    (
        "repeated objective",
        make_spec(secondary_objectives=["val_accuracy"]),
        "secondary_objectives.0.metric",
        "already an objective",
    ),
    (
        "a test figure as the objective",
        make_spec(objective={"metric": "test_accuracy"}),
        "objective.metric",
        "optimize the validation figure 'val_accuracy' instead",
    ),
    (
        "a bare metric as the objective",
        make_spec(objective="accuracy"),
        "objective.metric",
        "use 'val_accuracy'",
    ),
    (
        "a test loss as a secondary objective",
        make_spec(secondary_objectives=["test_loss"]),
        "secondary_objectives.0.metric",
        "'test_loss' is a test figure",
    ),
    (
        "sam reachable without gamma",
        make_spec(space={"extrapolation": ["none", "sam"]}),
        "space.extrapolation",
        "extrapolation=sam is reachable but no absolute gamma is set for it: add a `gamma` "
        "parameter with when: {extrapolation: [sam]} or set job.optimizer.gamma",
    ),
    (
        "sam gamma conditional on the wrong variant",
        make_spec(
            space={
                "extrapolation": ["gradient", "sam"],
                "gamma": {"low": 0.01, "high": 0.5, "when": {"extrapolation": ["gradient"]}},
            }
        ),
        "space.extrapolation",
        "extrapolation=sam is reachable",
    ),
    (
        "nesterov with momentum low 0",
        make_spec(space={"nesterov": [True, False], "momentum": {"low": 0.0, "high": 0.9}}),
        "space.momentum.low",
        "nesterov=true is reachable with momentum=0.0",
    ),
    (
        "absolute gamma schedule without gamma",
        make_spec(space={"gamma_schedule": ["follow_lr", "cosine"]}),
        "space.gamma_schedule",
        "gamma_schedule=cosine is reachable but no absolute gamma",
    ),
    (
        "follow_lr with an absolute gamma",
        make_spec(
            job__optimizer={"gamma": 0.01}, space={"gamma_schedule": ["follow_lr", "cosine"]}
        ),
        "space.gamma_schedule",
        "follow_lr would ignore",
    ),
    (
        "milestones out of range",
        make_spec(space={"milestones": [[0.5, 0.75], [0.5, 1.5]]}),
        "space.milestones",
        "milestones=[0.5, 1.5]",
    ),
    (
        "numeric high end outside the job's range",
        make_spec(space={"decay_factor": {"low": 0.1, "high": 2.0}}),
        "space.decay_factor.high",
        "job.schedule.decay_factor: Input should be less than or equal to 1",
    ),
    (
        "when names no condition",
        make_spec(space={"lr": {**LR, "when": {}}}),
        "space.lr.when",
        "remove the `when` key",
    ),
    (
        "noise scale without a noise variant",
        make_spec(space={"lr": LR, "noise_std": {"low": 1e-4, "high": 1e-2, "log": True}}),
        "space.noise_std",
        "only the variants noise, gradient+noise use it, and the trials that search it run "
        "gradient",
    ),
    (
        "noise kind with only none and past",
        make_spec(space={"extrapolation": ["none", "past"], "noise": ["gaussian", "uniform"]}),
        "space.noise",
        "add one of them to space.extrapolation's choices",
    ),
    (
        "gamma ratio with only none and noise",
        make_spec(space={"extrapolation": ["none", "noise"], "gamma_ratio": GAMMA_RATIO}),
        "space.gamma_ratio",
        "run noise and none",
    ),
    (
        "gamma ratio where an absolute gamma is set",
        make_spec(job__optimizer={"gamma": 0.05}, space={"gamma_ratio": GAMMA_RATIO}),
        "space.gamma_ratio",
        "applies only without one",
    ),
    (
        "extrapolation momentum with past and sam only",
        make_spec(
            job__optimizer={"gamma": 0.05},
            space={"extrapolation": ["past", "sam"], "extrapolation_momentum": [True, False]},
        ),
        "space.extrapolation_momentum",
        "only the variants gradient, gradient+noise use it",
    ),
    (
        "second batch without a two-pass variant",
        make_spec(
            job__optimizer={"extrapolation": "none"}, space={"second_batch": ["same", "fresh"]}
        ),
        "space.second_batch",
        "set job.optimizer.extrapolation to one of them",
    ),
    (
        "global batch larger than the training split",
        make_spec(job__workload_options={"num_samples": 1000}, job__global_batch_size=1024),
        "job.global_batch_size",
        "global_batch_size=1,024 is larger than the training split of mnist1d (720 samples)",
    ),
    (
        "cifar global batch larger than the training split",
        make_spec(
            job__workload="resnet20-cifar10",
            job__global_batch_size=46_000,
            job__workers=2,
            job__workload_options={"validation_size": 5000},
        ),
        "job.global_batch_size",
        "(45,000 samples)",
    ),
    (
        "integer option with interior values that do not divide",
        make_spec(
            job__workload="transformer-mt",
            space={"lr": LR, "workload.num_heads": {"low": 2, "high": 8}},
        ),
        "space.workload.num_heads",
        "e.g. workload.num_heads=3: d_model=512 is not divisible by num_heads=3; search only "
        "valid values (e.g. workload.num_heads: {choices: [2, 4, 8]})",
    ),
    (
        "two integer options that must divide each other",
        make_spec(
            job__workload="transformer-mt",
            space={
                "workload.d_model": {"low": 64, "high": 72, "step": 4},
                "workload.num_heads": {"low": 4, "high": 8, "step": 4},
            },
        ),
        "space.workload.d_model",
        "workload.d_model=68 (with workload.num_heads=8): d_model=68 is not divisible by "
        "num_heads=8",
    ),
    (
        "integer option with too many values to check",
        make_spec(space={"workload.hidden": {"low": 1, "high": 20_000}}),
        "space.workload.hidden",
        "at most 10,000 are: narrow the range or raise step (e.g. step: 20)",
    ),
    (
        "grid too large",
        make_spec(
            space={
                "momentum": {"low": 0.0, "high": 0.99, "step": 0.01},
                "lr": {"low": 0.01, "high": 1.0, "step": 0.01},
                "warmup_epochs": {"low": 0.0, "high": 5.0, "step": 0.5},
            },
            search={"sampler": "grid"},
        ),
        "search.sampler",
        "this space has 110,000 (100 × 100 × 11); at most 100,000",
    ),
    (
        "relative data_dir",
        make_spec(job__data_dir="data/mnist"),
        "job.data_dir",
        "is not an absolute path",
    ),
    (
        "data_dir in another user's home",
        make_spec(job__data_dir="~nosuchuser/x"),
        "job.data_dir",
        "starts with ~, which is not expanded",
    ),
    (
        "a NUL character in data_dir",
        make_spec(job__data_dir="/data\x00/x"),
        "job.data_dir",
        "contains a NUL character",
    ),
    (
        "a NUL character in a description",
        make_spec(description="a\x00b"),
        "description",
        "contains a NUL character",
    ),
    (
        "a NUL character in a searched name",
        make_spec(space={"l\x00r": LR}),
        "space.l\\x00r",
        "the key contains a NUL character",
    ),
    (
        "a preset with a space that is not a mapping",
        make_spec(preset="sam", space=["lr"]),
        "space",
        "is a list: write it as a mapping",
    ),
    (
        "negative sampler seed",
        make_spec(search={"seed": -1}),
        "search.seed",
        "greater than or equal to 0",
    ),
    ("sampler seed of 2**32", make_spec(search={"seed": 2**32}), "search.seed", "less than"),
    ("name with a trailing newline", make_spec(name="demo\n"), "name", "is not a slug"),
    ("bad slug", make_spec(name="My Sweep"), "name", "is not a slug"),
    ("unknown version", make_spec(version=3), "version", "Input should be 2"),
    ("version 1 (tuned on test figures)", make_spec(version=1), "version", "validation"),
    ("unknown top-level field", make_spec(trials=3), "trials", "the allowed fields are"),
    ("missing job", {"name": "demo", "space": {"lr": LR}}, "job", "is required"),
    (
        "unknown preset",
        make_spec(preset="paper"),
        "preset",
        "unknown preset 'paper': use one of extrap-",
    ),
    (
        "removing what the preset lacks",
        make_spec(preset="sam", space={"noise_std": None}),
        "space.noise_std",
        "the preset has no 'noise_std'",
    ),
    (
        "null without a preset",
        make_spec(space={"lr": LR, "momentum": None}),
        "space.momentum",
        "null only removes a parameter of the spec's preset",
    ),
]


@pytest.mark.parametrize(
    ("spec", "path", "fragment"),
    [pytest.param(spec, path, fragment, id=name) for name, spec, path, fragment in BAD_SPECS],
)
def test_bad_spec_reports_path_and_fix(spec: dict[str, Any], path: str, fragment: str) -> None:
    with pytest.raises(SpecError) as caught:
        load_spec(spec)

    found = {(error.path, error.message) for error in caught.value.errors}
    assert any(p == path and fragment in m for p, m in found), found


def test_each_bad_spec_fails_for_one_reason() -> None:
    counts = {name: len(spec_errors(spec)) for name, spec, _, _ in BAD_SPECS}

    assert {name: n for name, n in counts.items() if n != 1} == {}


def test_field_errors_are_reported_together() -> None:
    spec = make_spec(name="Bad Name", job__epochs=0, space={"lr": {"low": 2.0, "high": 1.0}})

    paths = {error.path for error in spec_errors(spec)}

    assert paths == {"name", "job.epochs", "space.lr.low"}


def test_many_failing_combinations_are_summarized() -> None:
    space = {"milestones": [[0.5, 0.75], *([0.1 * i, 2.0] for i in range(1, 9))]}

    errors = spec_errors(make_spec(space=space))

    assert len(errors) == 6
    assert errors[-1].message == "… and 3 more invalid combinations"


# A searched setting with a job whose variant never uses it: (name, parameter, job optimizer).
UNUSED = [
    ("gamma", {"low": 0.01, "high": 0.1}, {"extrapolation": "none"}),
    ("gamma_ratio", GAMMA_RATIO, {"extrapolation": "noise"}),
    (
        "gamma_schedule",
        {"choices": ["constant", "cosine"]},
        {"extrapolation": "none", "gamma": 0.1},
    ),
    ("gamma_final_fraction", {"low": 0.0, "high": 0.5}, {"extrapolation": "none"}),
    ("noise", {"choices": ["gaussian", "uniform"]}, {"extrapolation": "sam", "gamma": 0.1}),
    ("noise_std", {"low": 1e-4, "high": 1e-2}, {"extrapolation": "past"}),
    ("extrapolation_momentum", {"choices": [True, False]}, {"extrapolation": "past"}),
    ("second_batch", {"choices": ["same", "fresh"]}, {"extrapolation": "past"}),
    ("extrapolation_scope", {"choices": ["local", "global"]}, {"extrapolation": "noise"}),
]


@pytest.mark.parametrize(("name", "param", "optimizer"), UNUSED, ids=[u[0] for u in UNUSED])
def test_a_setting_no_reachable_variant_uses_is_refused(
    name: str, param: dict[str, Any], optimizer: dict[str, Any]
) -> None:
    errors = spec_errors(make_spec(job__optimizer=optimizer, space={name: param}))

    assert [(e.path, "has no effect in any trial" in e.message) for e in errors] == [
        (f"space.{name}", True)
    ]
