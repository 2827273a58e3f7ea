"""Specification of the learning-rate and gamma schedules in ``trainers.optim.schedules``."""

from __future__ import annotations

import inspect
import io
import math
from typing import Any, get_args

import pytest
import torch

from trainers.config import ScheduleConfig
from trainers.optim import ExtrapSGD, effective_gamma
from trainers.optim.schedules import (
    GAMMA_SCHEDULE_KINDS,
    LR_DECAY_KINDS,
    GammaScheduler,
    build_lr_scheduler,
    linear_scaled_lr,
)

# --------------------------------------------------------------------------------- helpers


def _optimizer(
    lr: float = 1.0, *, gamma: float | None = None, gamma_ratio: float = 0.1, groups: int = 1
) -> ExtrapSGD:
    """An ExtrapSGD with ``groups`` param groups of one parameter each."""
    params = [{"params": [torch.zeros(1, requires_grad=True)]} for _ in range(groups)]
    return ExtrapSGD(params, lr=lr, extrapolation="none", gamma=gamma, gamma_ratio=gamma_ratio)


def _advance(optimizer: torch.optim.Optimizer, *schedulers: Any) -> None:
    """One training step: the optimizer steps (no gradients, so nothing moves), then schedules."""
    optimizer.step()
    for scheduler in schedulers:
        scheduler.step()


def _lr_scheduler(optimizer: torch.optim.Optimizer, schedule: ScheduleConfig, **run: Any) -> Any:
    """The lr schedule the training loop builds from ``schedule`` (and steps_per_epoch/epochs)."""
    return build_lr_scheduler(optimizer, **run, **schedule.lr_schedule_options())


def _lrs_used(optimizer: torch.optim.Optimizer, scheduler: Any, steps: int) -> list[float]:
    """The learning rate each of the next ``steps`` optimizer steps runs with."""
    used = []
    for _ in range(steps):
        used.append(optimizer.param_groups[0]["lr"])
        _advance(optimizer, scheduler)
    return used


def _gammas_used(optimizer: torch.optim.Optimizer, *schedulers: Any, steps: int) -> list[float]:
    """The effective gamma each of the next ``steps`` optimizer steps runs with."""
    used = []
    for _ in range(steps):
        used.append(effective_gamma(optimizer.param_groups[0]))
        _advance(optimizer, *schedulers)
    return used


def _through_checkpoint(state: dict[str, Any]) -> dict[str, Any]:
    """Save and load a state dict the way a checkpoint does (weights_only: plain data only)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    loaded: dict[str, Any] = torch.load(buffer, weights_only=True)
    return loaded


# ------------------------------------------------------------------------ linear scaling rule


@pytest.mark.parametrize(
    ("base_lr", "global_batch_size", "reference_batch_size", "expected"),
    [
        (0.1, 4096, 256, 1.6),
        (0.1, 256, 256, 0.1),
        (0.2, 128, 256, 0.1),
        (0.1, 4096, None, 0.1),
    ],
)
def test_linear_scaled_lr(
    base_lr: float, global_batch_size: int, reference_batch_size: int | None, expected: float
) -> None:
    assert linear_scaled_lr(base_lr, global_batch_size, reference_batch_size) == pytest.approx(
        expected
    )


@pytest.mark.parametrize(
    ("global_batch_size", "reference_batch_size", "named"),
    [
        (0, 256, "global_batch_size"),
        (-8, 256, "global_batch_size"),
        (0, None, "global_batch_size"),
        (256, 0, "reference_batch_size"),
        (256, -5, "reference_batch_size"),
    ],
)
def test_linear_scaled_lr_rejects_non_positive_sizes(
    global_batch_size: int, reference_batch_size: int | None, named: str
) -> None:
    with pytest.raises(ValueError, match=named):
        linear_scaled_lr(0.1, global_batch_size, reference_batch_size)


# --------------------------------------------------------------------------------- lr warmup


def test_lr_decay_kinds_match_the_config() -> None:
    assert set(LR_DECAY_KINDS) == set(get_args(ScheduleConfig.model_fields["decay"].annotation))


# (steps_per_epoch, warmup_epochs, warmup_steps)
WARMUPS = [(4, 2.0, 8), (10, 0.5, 5), (3, 1.0, 3), (7, 1.0, 7)]


@pytest.mark.parametrize(("steps_per_epoch", "warmup_epochs", "warmup_steps"), WARMUPS)
def test_warmup_reaches_the_peak_at_its_last_step(
    steps_per_epoch: int, warmup_epochs: float, warmup_steps: int
) -> None:
    optimizer = _optimizer(lr=0.8)
    schedule = ScheduleConfig(warmup_epochs=warmup_epochs)
    scheduler = _lr_scheduler(optimizer, schedule, steps_per_epoch=steps_per_epoch, epochs=4)
    lrs = _lrs_used(optimizer, scheduler, warmup_steps + 2)
    assert lrs[warmup_steps - 2] < 0.8
    assert lrs[warmup_steps - 1 :] == pytest.approx([0.8] * 3)


@pytest.mark.parametrize(("steps_per_epoch", "warmup_epochs", "warmup_steps"), WARMUPS)
def test_warmup_rises_linearly_from_peak_over_warmup_steps(
    steps_per_epoch: int, warmup_epochs: float, warmup_steps: int
) -> None:
    optimizer = _optimizer(lr=0.8)
    schedule = ScheduleConfig(warmup_epochs=warmup_epochs)
    scheduler = _lr_scheduler(optimizer, schedule, steps_per_epoch=steps_per_epoch, epochs=4)
    expected = [0.8 * (step + 1) / warmup_steps for step in range(warmup_steps)]
    assert _lrs_used(optimizer, scheduler, warmup_steps) == pytest.approx(expected)


def test_no_warmup_starts_at_the_peak() -> None:
    optimizer = _optimizer(lr=0.8)
    scheduler = build_lr_scheduler(optimizer, steps_per_epoch=5, epochs=2)
    assert _lrs_used(optimizer, scheduler, 2) == pytest.approx([0.8, 0.8])


# --------------------------------------------------------------------------------- lr decays

_COS_QUARTER = 0.5 * (1 + math.cos(math.pi / 4))  # 0.853553...

# (schedule kwargs, steps_per_epoch, epochs, step, expected lr / peak). Runs of 100 steps unless
# warmup is set; the optimizer step with 0-based index `step` uses the value.
DECAY_CASES = [
    pytest.param({"decay": "constant"}, 10, 10, 0, 1.0, id="constant-start"),
    pytest.param({"decay": "constant"}, 10, 10, 99, 1.0, id="constant-end"),
    pytest.param({"decay": "cosine"}, 10, 10, 0, 1.0, id="cosine-start"),
    pytest.param({"decay": "cosine"}, 10, 10, 25, _COS_QUARTER, id="cosine-quarter"),
    pytest.param({"decay": "cosine"}, 10, 10, 50, 0.5, id="cosine-midpoint"),
    pytest.param({"decay": "cosine"}, 10, 10, 100, 0.0, id="cosine-floor"),
    pytest.param(
        {"decay": "cosine", "final_lr_fraction": 0.1}, 10, 10, 50, 0.55, id="cosine-floored-mid"
    ),
    pytest.param(
        {"decay": "cosine", "final_lr_fraction": 0.1}, 10, 10, 100, 0.1, id="cosine-floor-0.1"
    ),
    pytest.param(
        {"decay": "cosine", "final_lr_fraction": 0.1}, 10, 10, 120, 0.1, id="cosine-past-end"
    ),
    pytest.param(
        {"decay": "cosine", "warmup_epochs": 1}, 10, 11, 60, 0.5, id="cosine-mid-after-warmup"
    ),
    pytest.param({"decay": "multistep"}, 10, 10, 49, 1.0, id="multistep-before-first"),
    pytest.param({"decay": "multistep"}, 10, 10, 50, 0.1, id="multistep-after-first"),
    pytest.param({"decay": "multistep"}, 10, 10, 74, 0.1, id="multistep-before-second"),
    pytest.param({"decay": "multistep"}, 10, 10, 75, 0.01, id="multistep-after-second"),
    pytest.param({"decay": "multistep"}, 10, 10, 99, 0.01, id="multistep-end"),
    pytest.param(
        {"decay": "multistep", "milestones": [0.3], "decay_factor": 0.5},
        10,
        10,
        30,
        0.5,
        id="multistep-custom",
    ),
    pytest.param({"decay": "polynomial"}, 10, 10, 30, 0.7, id="polynomial-power-1"),
    pytest.param({"decay": "polynomial", "power": 2}, 10, 10, 50, 0.25, id="polynomial-p2-mid"),
    pytest.param({"decay": "polynomial", "power": 2}, 10, 10, 75, 0.0625, id="polynomial-p2-3q"),
    pytest.param({"decay": "polynomial", "power": 2}, 10, 10, 100, 0.0, id="polynomial-floor"),
    pytest.param(
        {"decay": "polynomial", "power": 2, "final_lr_fraction": 0.2},
        10,
        10,
        50,
        0.4,
        id="polynomial-floored-mid",
    ),
    pytest.param(
        {"decay": "polynomial", "power": 2, "final_lr_fraction": 0.2},
        10,
        10,
        100,
        0.2,
        id="polynomial-floor-0.2",
    ),
]


@pytest.mark.parametrize(("schedule", "steps_per_epoch", "epochs", "step", "factor"), DECAY_CASES)
def test_decay_value_at_step(
    schedule: dict[str, Any], steps_per_epoch: int, epochs: int, step: int, factor: float
) -> None:
    optimizer = _optimizer(lr=2.0)
    scheduler = build_lr_scheduler(
        optimizer, steps_per_epoch=steps_per_epoch, epochs=epochs, **schedule
    )
    for _ in range(step):
        _advance(optimizer, scheduler)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(2.0 * factor, abs=1e-12)


# (build_lr_scheduler kwargs beyond the optimizer, the argument the error must name)
BAD_LR_OPTIONS = [
    pytest.param({"steps_per_epoch": 0, "epochs": 2}, "steps_per_epoch", id="no-steps"),
    pytest.param({"steps_per_epoch": 5, "epochs": 0}, "epochs", id="no-epochs"),
    pytest.param({"warmup_epochs": 3}, "warmup_epochs", id="warmup-longer-than-run"),
    pytest.param({"warmup_epochs": -1}, "warmup_epochs", id="negative-warmup"),
    pytest.param({"decay": "step"}, "decay='step'.*constant.*polynomial", id="unknown-decay"),
    pytest.param({"milestones": (0.5, 1.0)}, "milestones", id="milestone-at-end"),
    pytest.param({"milestones": (0.0, 0.5)}, "milestones", id="milestone-at-start"),
    pytest.param({"milestones": (0.75, 0.5)}, "milestones must be increasing", id="unsorted"),
    pytest.param({"decay_factor": 0.0}, "decay_factor", id="decay-factor-zero"),
    pytest.param({"decay_factor": 1.5}, "decay_factor", id="decay-factor-above-one"),
    pytest.param({"power": 0.0}, "power", id="power-zero"),
    pytest.param({"final_lr_fraction": -0.1}, "final_lr_fraction", id="floor-negative"),
    pytest.param({"final_lr_fraction": 1.1}, "final_lr_fraction", id="floor-above-one"),
]


@pytest.mark.parametrize(("options", "named"), BAD_LR_OPTIONS)
def test_build_lr_scheduler_rejects_naming_the_argument(
    options: dict[str, Any], named: str
) -> None:
    kwargs: dict[str, Any] = {"steps_per_epoch": 5, "epochs": 2, **options}
    with pytest.raises(ValueError, match=named):
        build_lr_scheduler(_optimizer(), **kwargs)


def test_lr_schedule_options_are_exactly_the_schedule_keywords() -> None:
    keywords = set(inspect.signature(build_lr_scheduler).parameters) - {
        "optimizer",
        "steps_per_epoch",
        "epochs",
    }
    assert set(ScheduleConfig().lr_schedule_options()) == keywords


def test_lr_schedule_defaults_agree_with_the_config() -> None:
    parameters = inspect.signature(build_lr_scheduler).parameters
    for name, value in ScheduleConfig().lr_schedule_options().items():
        assert value == parameters[name].default, name


@pytest.mark.parametrize("decay", LR_DECAY_KINDS)
def test_lr_scheduler_resumes_identically_from_its_state_dict(decay: str) -> None:
    schedule = ScheduleConfig(warmup_epochs=1, decay=decay, final_lr_fraction=0.1, power=2)

    def fresh() -> tuple[torch.optim.Optimizer, Any]:
        optimizer = _optimizer(lr=0.5)
        return optimizer, _lr_scheduler(optimizer, schedule, steps_per_epoch=4, epochs=6)

    reference = _lrs_used(*fresh(), 24)

    optimizer, scheduler = fresh()
    _lrs_used(optimizer, scheduler, 10)
    optimizer_state = _through_checkpoint(optimizer.state_dict())
    scheduler_state = _through_checkpoint(scheduler.state_dict())

    optimizer, scheduler = fresh()
    optimizer.load_state_dict(optimizer_state)
    scheduler.load_state_dict(scheduler_state)
    assert _lrs_used(optimizer, scheduler, 14) == pytest.approx(reference[10:])


# ------------------------------------------------------------------------------------- gamma


def test_gamma_schedule_kinds_match_the_config() -> None:
    from trainers.config import GammaScheduleKind

    assert set(GAMMA_SCHEDULE_KINDS) == set(get_args(GammaScheduleKind))


@pytest.mark.parametrize(("kind", "gamma"), [("follow_lr", None), ("constant", 0.3)])
def test_follow_lr_and_constant_never_write_gamma(kind: str, gamma: float | None) -> None:
    optimizer = _optimizer(lr=0.4, gamma=gamma, gamma_ratio=0.25, groups=2)
    before = [dict(group) for group in optimizer.param_groups]
    scheduler = GammaScheduler(optimizer, kind, total_steps=10)
    for _ in range(12):
        _advance(optimizer, scheduler)
    assert [dict(group) for group in optimizer.param_groups] == before
    assert scheduler.get_last_gamma() == [gamma, gamma]


def test_follow_lr_tracks_the_lr_schedule() -> None:
    schedule = ScheduleConfig(warmup_epochs=1, decay="cosine")
    optimizer = _optimizer(lr=0.4, gamma_ratio=0.25)
    lrs = _lrs_used(optimizer, _lr_scheduler(optimizer, schedule, steps_per_epoch=4, epochs=3), 12)

    optimizer = _optimizer(lr=0.4, gamma_ratio=0.25)
    lr_scheduler = _lr_scheduler(optimizer, schedule, steps_per_epoch=4, epochs=3)
    gamma_scheduler = GammaScheduler(optimizer, "follow_lr", total_steps=12)
    gammas = _gammas_used(optimizer, lr_scheduler, gamma_scheduler, steps=12)
    assert gammas == pytest.approx([0.25 * lr for lr in lrs])


@pytest.mark.parametrize("kind", ["cosine", "linear"])
def test_decaying_kinds_record_the_starting_gamma_once(kind: str) -> None:
    optimizer = _optimizer(gamma=0.2, groups=2)
    optimizer.param_groups[1]["gamma"] = 0.4
    scheduler = GammaScheduler(optimizer, kind, total_steps=10)
    assert [g["gamma"] for g in optimizer.param_groups] == [0.2, 0.4]  # nothing written yet
    assert [g["initial_gamma"] for g in optimizer.param_groups] == [0.2, 0.4]
    _advance(optimizer, scheduler)
    again = GammaScheduler(optimizer, kind, total_steps=10)  # keeps the recorded start
    assert [g["initial_gamma"] for g in optimizer.param_groups] == [0.2, 0.4]
    assert again.get_last_gamma() == [g["gamma"] for g in optimizer.param_groups]


# (kind, final_fraction, step, expected gamma) with a starting gamma of 0.2 over 10 steps
GAMMA_CASES = [
    pytest.param("constant", 0.0, 0, 0.2, id="constant-start"),
    pytest.param("constant", 0.0, 5, 0.2, id="constant-mid"),
    pytest.param("constant", 0.0, 10, 0.2, id="constant-end"),
    pytest.param("cosine", 0.0, 0, 0.2, id="cosine-start"),
    pytest.param("cosine", 0.0, 2, 0.1 * (1 + math.cos(0.2 * math.pi)), id="cosine-step-2"),
    pytest.param("cosine", 0.0, 5, 0.1, id="cosine-midpoint"),
    pytest.param("cosine", 0.0, 10, 0.0, id="cosine-end"),
    pytest.param("cosine", 0.5, 5, 0.15, id="cosine-floored-mid"),
    pytest.param("cosine", 0.5, 10, 0.1, id="cosine-floored-end"),
    pytest.param("cosine", 0.5, 13, 0.1, id="cosine-past-end"),
    pytest.param("linear", 0.0, 0, 0.2, id="linear-start"),
    pytest.param("linear", 0.0, 2, 0.16, id="linear-step-2"),
    pytest.param("linear", 0.0, 5, 0.1, id="linear-midpoint"),
    pytest.param("linear", 0.0, 10, 0.0, id="linear-end"),
    pytest.param("linear", 0.25, 5, 0.125, id="linear-floored-mid"),
    pytest.param("linear", 0.25, 10, 0.05, id="linear-floored-end"),
]


@pytest.mark.parametrize(("kind", "final_fraction", "step", "expected"), GAMMA_CASES)
def test_gamma_value_at_step(kind: str, final_fraction: float, step: int, expected: float) -> None:
    optimizer = _optimizer(lr=0.4, gamma=0.2, groups=2)
    scheduler = GammaScheduler(optimizer, kind, total_steps=10, final_fraction=final_fraction)
    for _ in range(step):
        _advance(optimizer, scheduler)
    gammas = [effective_gamma(group) for group in optimizer.param_groups]
    assert gammas == pytest.approx([expected, expected], abs=1e-12)


@pytest.mark.parametrize("kind", ["constant", "cosine", "linear"])
def test_get_last_gamma_reports_the_groups_gamma(kind: str) -> None:
    optimizer = _optimizer(gamma=0.2, groups=2)
    scheduler = GammaScheduler(optimizer, kind, total_steps=10)
    _advance(optimizer, scheduler)
    assert scheduler.get_last_gamma() == [group["gamma"] for group in optimizer.param_groups]


# (kind, the groups' gamma, other kwargs, what the error says)
BAD_GAMMA_SCHEDULES = [
    pytest.param("warmup", None, {}, "unknown gamma schedule kind 'warmup'.*follow_lr", id="kind"),
    pytest.param("follow_lr", 0.1, {}, "gamma=0.1; use kind 'constant'", id="follow-lr-gamma"),
    pytest.param("constant", None, {}, "'constant' needs an absolute gamma", id="constant-none"),
    pytest.param("cosine", None, {}, "'cosine' needs an absolute gamma", id="cosine-none"),
    pytest.param("linear", None, {}, "'linear' needs an absolute gamma", id="linear-none"),
    pytest.param("linear", 0.1, {"total_steps": 0}, "total_steps", id="total-steps"),
    pytest.param("linear", 0.1, {"final_fraction": 1.5}, "final_fraction", id="final-fraction"),
]


@pytest.mark.parametrize(("kind", "gamma", "kwargs", "message"), BAD_GAMMA_SCHEDULES)
def test_gamma_scheduler_rejects(
    kind: str, gamma: float | None, kwargs: dict[str, Any], message: str
) -> None:
    options: dict[str, Any] = {"total_steps": 10, **kwargs}
    with pytest.raises(ValueError, match=message):
        GammaScheduler(_optimizer(gamma=gamma), kind, **options)


def test_gamma_scheduler_refuses_an_optimizer_without_gamma() -> None:
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    with pytest.raises(ValueError, match="no 'gamma' option"):
        GammaScheduler(optimizer, "follow_lr", total_steps=10)


@pytest.mark.parametrize("kind", GAMMA_SCHEDULE_KINDS)
def test_gamma_scheduler_resumes_identically_from_its_state_dict(kind: str) -> None:
    gamma = None if kind == "follow_lr" else 0.3
    schedule = ScheduleConfig(warmup_epochs=1, decay="cosine")

    def fresh() -> tuple[torch.optim.Optimizer, Any, GammaScheduler]:
        optimizer = _optimizer(lr=0.5, gamma=gamma, gamma_ratio=0.2)
        lr_scheduler = _lr_scheduler(optimizer, schedule, steps_per_epoch=4, epochs=4)
        return (
            optimizer,
            lr_scheduler,
            GammaScheduler(optimizer, kind, total_steps=16, final_fraction=0.2),
        )

    reference = _gammas_used(*fresh(), steps=20)

    optimizer, lr_scheduler, scheduler = fresh()
    _gammas_used(optimizer, lr_scheduler, scheduler, steps=7)
    optimizer_state = _through_checkpoint(optimizer.state_dict())
    lr_state = _through_checkpoint(lr_scheduler.state_dict())
    scheduler_state = _through_checkpoint(scheduler.state_dict())

    optimizer, lr_scheduler, scheduler = fresh()
    optimizer.load_state_dict(optimizer_state)
    lr_scheduler.load_state_dict(lr_state)
    scheduler.load_state_dict(scheduler_state)
    assert _gammas_used(optimizer, lr_scheduler, scheduler, steps=13) == reference[7:]


def test_gamma_scheduler_refuses_another_kinds_state() -> None:
    optimizer = _optimizer(gamma=0.1)
    linear = GammaScheduler(optimizer, "linear", total_steps=10)
    cosine = GammaScheduler(optimizer, "cosine", total_steps=10)
    with pytest.raises(ValueError, match="linear"):
        cosine.load_state_dict(linear.state_dict())


def test_decaying_gamma_needs_the_optimizer_state_saved_with_it() -> None:
    optimizer = _optimizer(gamma=0.1)
    scheduler = GammaScheduler(optimizer, "cosine", total_steps=10)
    del optimizer.param_groups[0]["initial_gamma"]  # as after loading an older optimizer state
    with pytest.raises(ValueError, match="initial_gamma"):
        scheduler.load_state_dict(scheduler.state_dict())
