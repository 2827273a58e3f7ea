"""Specification of the learning-rate and gamma schedules in ``trainers.optim.schedules``."""

from __future__ import annotations

import io
import math
from typing import Any, get_args

import pytest
import torch

from trainers.config import GammaScheduleConfig, ScheduleConfig
from trainers.optim.schedules import (
    GAMMA_SCHEDULE_KINDS,
    LR_DECAY_KINDS,
    GammaScheduler,
    build_gamma_scheduler,
    build_lr_scheduler,
    current_gamma,
    linear_scaled_lr,
)

# --------------------------------------------------------------------------------- helpers


def _optimizer(
    lr: float = 1.0, *, gamma: float | None = None, gamma_ratio: float = 0.1, groups: int = 1
) -> torch.optim.Optimizer:
    """A torch SGD standing in for ExtrapSGD: the same per-group gamma options, added by hand."""
    params = [{"params": [torch.zeros(1, requires_grad=True)]} for _ in range(groups)]
    optimizer = torch.optim.SGD(params, lr=lr)
    for group in optimizer.param_groups:
        group["gamma"] = gamma
        group["gamma_ratio"] = gamma_ratio
    return optimizer


def _advance(optimizer: torch.optim.Optimizer, *schedulers: Any) -> None:
    """One training step: the optimizer steps (no gradients, so nothing moves), then schedules."""
    optimizer.step()
    for scheduler in schedulers:
        scheduler.step()


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
        used.append(current_gamma(optimizer.param_groups[0]))
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
    scheduler = build_lr_scheduler(optimizer, schedule, steps_per_epoch=steps_per_epoch, epochs=4)
    lrs = _lrs_used(optimizer, scheduler, warmup_steps + 2)
    assert lrs[warmup_steps - 2] < 0.8
    assert lrs[warmup_steps - 1 :] == pytest.approx([0.8] * 3)


@pytest.mark.parametrize(("steps_per_epoch", "warmup_epochs", "warmup_steps"), WARMUPS)
def test_warmup_rises_linearly_from_peak_over_warmup_steps(
    steps_per_epoch: int, warmup_epochs: float, warmup_steps: int
) -> None:
    optimizer = _optimizer(lr=0.8)
    schedule = ScheduleConfig(warmup_epochs=warmup_epochs)
    scheduler = build_lr_scheduler(optimizer, schedule, steps_per_epoch=steps_per_epoch, epochs=4)
    expected = [0.8 * (step + 1) / warmup_steps for step in range(warmup_steps)]
    assert _lrs_used(optimizer, scheduler, warmup_steps) == pytest.approx(expected)


def test_no_warmup_starts_at_the_peak() -> None:
    optimizer = _optimizer(lr=0.8)
    scheduler = build_lr_scheduler(optimizer, ScheduleConfig(), steps_per_epoch=5, epochs=2)
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
        optimizer, ScheduleConfig(**schedule), steps_per_epoch=steps_per_epoch, epochs=epochs
    )
    for _ in range(step):
        _advance(optimizer, scheduler)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(2.0 * factor, abs=1e-12)


@pytest.mark.parametrize(
    ("schedule", "steps_per_epoch", "epochs", "named"),
    [
        (ScheduleConfig(), 0, 2, "steps_per_epoch"),
        (ScheduleConfig(), 5, 0, "epochs"),
        (ScheduleConfig(warmup_epochs=3), 5, 2, "warmup_epochs"),
    ],
)
def test_build_lr_scheduler_rejects(
    schedule: ScheduleConfig, steps_per_epoch: int, epochs: int, named: str
) -> None:
    with pytest.raises(ValueError, match=named):
        build_lr_scheduler(_optimizer(), schedule, steps_per_epoch=steps_per_epoch, epochs=epochs)


@pytest.mark.parametrize("decay", LR_DECAY_KINDS)
def test_lr_scheduler_resumes_identically_from_its_state_dict(decay: str) -> None:
    schedule = ScheduleConfig(warmup_epochs=1, decay=decay, final_lr_fraction=0.1, power=2)

    def fresh() -> tuple[torch.optim.Optimizer, Any]:
        optimizer = _optimizer(lr=0.5)
        return optimizer, build_lr_scheduler(optimizer, schedule, steps_per_epoch=4, epochs=6)

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


def test_follow_lr_clears_gamma_so_the_optimizer_uses_ratio_times_lr() -> None:
    optimizer = _optimizer(lr=0.4, gamma=0.3, gamma_ratio=0.25, groups=2)
    scheduler = build_gamma_scheduler(
        optimizer, GammaScheduleConfig(kind="follow_lr"), base_gamma=None, total_steps=10
    )
    assert [group["gamma"] for group in optimizer.param_groups] == [None, None]
    assert scheduler.get_last_gamma() == [None, None]


def test_follow_lr_tracks_the_lr_schedule() -> None:
    optimizer = _optimizer(lr=0.4, gamma_ratio=0.25)
    lr_scheduler = build_lr_scheduler(
        optimizer, ScheduleConfig(warmup_epochs=1, decay="cosine"), steps_per_epoch=4, epochs=3
    )
    lrs = _lrs_used(optimizer, lr_scheduler, 12)

    optimizer = _optimizer(lr=0.4, gamma_ratio=0.25)
    lr_scheduler = build_lr_scheduler(
        optimizer, ScheduleConfig(warmup_epochs=1, decay="cosine"), steps_per_epoch=4, epochs=3
    )
    gamma_scheduler = build_gamma_scheduler(
        optimizer, GammaScheduleConfig(kind="follow_lr"), base_gamma=None, total_steps=12
    )
    gammas = _gammas_used(optimizer, lr_scheduler, gamma_scheduler, steps=12)
    assert gammas == pytest.approx([0.25 * lr for lr in lrs])


# (kind, final_fraction, step, expected gamma) with base_gamma=0.2 over 10 steps
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
    optimizer = _optimizer(lr=0.4, groups=2)
    scheduler = build_gamma_scheduler(
        optimizer,
        GammaScheduleConfig(kind=kind, final_fraction=final_fraction),
        base_gamma=0.2,
        total_steps=10,
    )
    for _ in range(step):
        _advance(optimizer, scheduler)
    gammas = [group["gamma"] for group in optimizer.param_groups]
    assert gammas == pytest.approx([expected, expected], abs=1e-12)


@pytest.mark.parametrize("kind", ["constant", "cosine", "linear"])
def test_get_last_gamma_reports_what_was_set(kind: str) -> None:
    optimizer = _optimizer(groups=2)
    scheduler = GammaScheduler(optimizer, kind, base_gamma=0.2, total_steps=10)
    _advance(optimizer, scheduler)
    assert scheduler.get_last_gamma() == [group["gamma"] for group in optimizer.param_groups]


@pytest.mark.parametrize(
    ("kind", "kwargs", "named"),
    [
        ("warmup", {"base_gamma": 0.1}, "unknown gamma schedule kind 'warmup'"),
        ("follow_lr", {"base_gamma": 0.1}, "base_gamma"),
        ("constant", {"base_gamma": None}, "base_gamma"),
        ("cosine", {"base_gamma": None}, "base_gamma"),
        ("linear", {"base_gamma": -0.1}, "base_gamma"),
        ("linear", {"base_gamma": 0.1, "total_steps": 0}, "total_steps"),
        ("linear", {"base_gamma": 0.1, "final_fraction": 1.5}, "final_fraction"),
    ],
)
def test_gamma_scheduler_rejects(kind: str, kwargs: dict[str, Any], named: str) -> None:
    options: dict[str, Any] = {"total_steps": 10, **kwargs}
    with pytest.raises(ValueError, match=named):
        GammaScheduler(_optimizer(), kind, **options)


@pytest.mark.parametrize("kind", GAMMA_SCHEDULE_KINDS)
def test_gamma_scheduler_resumes_identically_from_its_state_dict(kind: str) -> None:
    config = GammaScheduleConfig(kind=kind, final_fraction=0.2)
    base_gamma = None if kind == "follow_lr" else 0.3

    def fresh() -> tuple[torch.optim.Optimizer, GammaScheduler]:
        optimizer = _optimizer(lr=0.5, gamma_ratio=0.2)
        return optimizer, build_gamma_scheduler(
            optimizer, config, base_gamma=base_gamma, total_steps=16
        )

    reference = _gammas_used(*fresh(), steps=20)

    optimizer, scheduler = fresh()
    _gammas_used(optimizer, scheduler, steps=7)
    optimizer_state = _through_checkpoint(optimizer.state_dict())
    scheduler_state = _through_checkpoint(scheduler.state_dict())

    optimizer, scheduler = fresh()
    optimizer.load_state_dict(optimizer_state)
    scheduler.load_state_dict(scheduler_state)
    assert _gammas_used(optimizer, scheduler, steps=13) == pytest.approx(reference[7:])


def test_gamma_scheduler_refuses_another_kinds_state() -> None:
    optimizer = _optimizer()
    linear = GammaScheduler(optimizer, "linear", base_gamma=0.1, total_steps=10)
    cosine = GammaScheduler(optimizer, "cosine", base_gamma=0.1, total_steps=10)
    with pytest.raises(ValueError, match="linear"):
        cosine.load_state_dict(linear.state_dict())


@pytest.mark.parametrize(
    ("group", "expected"),
    [
        ({"lr": 0.5, "gamma": None, "gamma_ratio": 0.1}, 0.05),
        ({"lr": 0.5, "gamma": 0.2, "gamma_ratio": 0.1}, 0.2),
        ({"lr": 0.5, "gamma": 0.0, "gamma_ratio": 0.1}, 0.0),
        ({"lr": 0.0, "gamma": None, "gamma_ratio": 0.1}, 0.0),
    ],
)
def test_current_gamma(group: dict[str, Any], expected: float) -> None:
    assert current_gamma(group) == pytest.approx(expected)
