"""Learning-rate and gamma schedules for :class:`trainers.optim.ExtrapSGD`.

Both schedules advance once per optimizer step (not per epoch): call ``lr_scheduler.step()``
and ``gamma_scheduler.step()`` right after every ``optimizer.step()``.

- :func:`linear_scaled_lr` applies the linear scaling rule to the base learning rate.
- :func:`build_lr_scheduler` turns a :class:`~trainers.config.ScheduleConfig` into a
  :class:`torch.optim.lr_scheduler.LambdaLR`: linear warmup, then one decay from a registry.
- :func:`build_gamma_scheduler` turns a :class:`~trainers.config.GammaScheduleConfig` into a
  :class:`GammaScheduler` that sets each param group's ``gamma``.
- :func:`current_gamma` reads the gamma a param group will use, for reporting.

Example:
    >>> import torch
    >>> from trainers.config import GammaScheduleConfig, ScheduleConfig
    >>> model = torch.nn.Linear(2, 1)
    >>> optimizer = torch.optim.SGD(model.parameters(), lr=linear_scaled_lr(0.1, 1024, 256))
    >>> optimizer.param_groups[0].update(gamma=None, gamma_ratio=0.1)
    >>> lr_scheduler = build_lr_scheduler(
    ...     optimizer, ScheduleConfig(warmup_epochs=1, decay="cosine"), steps_per_epoch=4, epochs=8
    ... )
    >>> gamma_scheduler = build_gamma_scheduler(
    ...     optimizer, GammaScheduleConfig(kind="follow_lr"), base_gamma=None, total_steps=32
    ... )
    >>> group = optimizer.param_groups[0]
    >>> round(group["lr"], 6), round(current_gamma(group), 6)
    (0.1, 0.01)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch.optim.lr_scheduler import LambdaLR, LRScheduler

from trainers.config import GammaScheduleConfig, ScheduleConfig

__all__ = [
    "GAMMA_SCHEDULE_KINDS",
    "LR_DECAY_KINDS",
    "GammaScheduler",
    "build_gamma_scheduler",
    "build_lr_scheduler",
    "current_gamma",
    "linear_scaled_lr",
]


def linear_scaled_lr(
    base_lr: float, global_batch_size: int, reference_batch_size: int | None
) -> float:
    """Apply the linear scaling rule: ``base_lr * global_batch_size / reference_batch_size``.

    Args:
        base_lr: the learning rate tuned at ``reference_batch_size``.
        global_batch_size: samples per optimizer step, summed over all workers.
        reference_batch_size: the batch size ``base_lr`` belongs to; ``None`` turns scaling off
            and returns ``base_lr`` unchanged.

    Returns:
        The learning rate for ``global_batch_size``.

    Raises:
        ValueError: if ``global_batch_size`` or ``reference_batch_size`` is not positive.

    Example:
        >>> linear_scaled_lr(0.1, global_batch_size=4096, reference_batch_size=256)
        1.6
        >>> linear_scaled_lr(0.1, global_batch_size=4096, reference_batch_size=None)
        0.1
    """
    if global_batch_size <= 0:
        raise ValueError(f"global_batch_size must be positive, got {global_batch_size}")
    if reference_batch_size is None:
        return base_lr
    if reference_batch_size <= 0:
        raise ValueError(f"reference_batch_size must be positive, got {reference_batch_size}")
    return base_lr * global_batch_size / reference_batch_size


# --------------------------------------------------------------------------- learning rate


@dataclass(frozen=True)
class _StepPlan:
    """Where warmup ends and the run ends, in optimizer steps, plus the decay options."""

    warmup_steps: int
    total_steps: int
    schedule: ScheduleConfig

    def decay_progress(self, step: int) -> float:
        """Fraction of the post-warmup part of the run done before ``step``, in [0, 1]."""
        decay_steps = max(1, self.total_steps - self.warmup_steps)
        return min(1.0, max(0.0, (step - self.warmup_steps) / decay_steps))


def _blend_to_floor(floor: float, shape: float) -> float:
    # shape falls from 1 to 0; the multiplier falls from 1 to floor.
    return floor + (1.0 - floor) * shape


def _constant_decay(step: int, plan: _StepPlan) -> float:
    return 1.0


def _multistep_decay(step: int, plan: _StepPlan) -> float:
    # Milestones are fractions of the whole run (warmup included), rounded to a step.
    passed = sum(step >= round(m * plan.total_steps) for m in plan.schedule.milestones)
    return plan.schedule.decay_factor**passed


def _cosine_decay(step: int, plan: _StepPlan) -> float:
    progress = plan.decay_progress(step)
    shape = 0.5 * (1.0 + math.cos(math.pi * progress))
    return _blend_to_floor(plan.schedule.final_lr_fraction, shape)


def _polynomial_decay(step: int, plan: _StepPlan) -> float:
    shape = (1.0 - plan.decay_progress(step)) ** plan.schedule.power
    return _blend_to_floor(plan.schedule.final_lr_fraction, shape)


# One pure multiplier per ``ScheduleConfig.decay``; 1.0 during warmup for all but multistep.
_LR_DECAYS: Mapping[str, Callable[[int, _StepPlan], float]] = {
    "constant": _constant_decay,
    "multistep": _multistep_decay,
    "cosine": _cosine_decay,
    "polynomial": _polynomial_decay,
}

LR_DECAY_KINDS: tuple[str, ...] = tuple(_LR_DECAYS)
"""The names ``ScheduleConfig.decay`` may take."""


def _warmup_factor(step: int, warmup_steps: int) -> float:
    # Step 0 already gets 1/warmup_steps of the peak (a zero-lr step would be wasted); step
    # warmup_steps - 1 is the first at the peak.
    if step >= warmup_steps:
        return 1.0
    return (step + 1) / warmup_steps


def build_lr_scheduler(
    optimizer: torch.optim.Optimizer,
    schedule: ScheduleConfig,
    *,
    steps_per_epoch: int,
    epochs: int,
) -> LRScheduler:
    """Build the per-step learning-rate schedule: linear warmup, then ``schedule.decay``.

    The peak is each group's ``lr`` when this is called (already linearly scaled, see
    :func:`linear_scaled_lr`). With ``W = round(warmup_epochs * steps_per_epoch)`` warmup steps
    and ``T = steps_per_epoch * epochs`` steps in all, the optimizer step with 0-based index
    ``t`` uses ``peak * warmup(t) * decay(t)``, where

    - ``warmup(t) = min(1, (t + 1) / W)``: starts at ``peak / W``, reaches the peak at
      ``t = W - 1`` and stays there (1 when ``W = 0``);
    - ``constant``: ``decay(t) = 1``;
    - ``multistep``: ``decay(t) = decay_factor ** k``, ``k`` the number of milestones with
      ``t >= round(milestone * T)``;
    - ``cosine``: ``f + (1 - f) * (1 + cos(pi * p)) / 2``;
    - ``polynomial``: ``f + (1 - f) * (1 - p) ** power``;

    with ``f = final_lr_fraction`` and ``p = clamp((t - W) / (T - W), 0, 1)``, so ``f * peak``
    is reached after the last step (the last step itself is just above it).

    Call ``.step()`` after every optimizer step. The multiplier is a plain function rebuilt from
    the config, so ``state_dict()`` holds only counters and learning rates: to resume, build the
    scheduler again from the same config and load the state (after the optimizer's).

    Args:
        optimizer: the optimizer whose groups' ``lr`` is scheduled.
        schedule: warmup and decay settings; times are in epochs.
        steps_per_epoch: optimizer steps per epoch.
        epochs: epochs in the run.

    Returns:
        A :class:`torch.optim.lr_scheduler.LambdaLR`.

    Raises:
        ValueError: for non-positive ``steps_per_epoch`` or ``epochs``, or a warmup longer than
            the run.

    Example:
        >>> import torch
        >>> from trainers.config import ScheduleConfig
        >>> optimizer = torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=1.0)
        >>> scheduler = build_lr_scheduler(
        ...     optimizer, ScheduleConfig(warmup_epochs=1), steps_per_epoch=4, epochs=2
        ... )
        >>> lrs = []
        >>> for _ in range(6):
        ...     lrs.append(optimizer.param_groups[0]["lr"])
        ...     optimizer.step()
        ...     scheduler.step()
        >>> lrs
        [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    """
    if steps_per_epoch <= 0:
        raise ValueError(f"steps_per_epoch must be positive, got {steps_per_epoch}")
    if epochs <= 0:
        raise ValueError(f"epochs must be positive, got {epochs}")
    plan = _StepPlan(
        warmup_steps=round(schedule.warmup_epochs * steps_per_epoch),
        total_steps=steps_per_epoch * epochs,
        schedule=schedule,
    )
    if plan.warmup_steps > plan.total_steps:
        raise ValueError(
            f"warmup_epochs={schedule.warmup_epochs} is longer than the run (epochs={epochs})"
        )
    decay = _LR_DECAYS[schedule.decay]

    # A closure (not a callable object) so LambdaLR.state_dict() stores no config objects.
    def multiplier(step: int) -> float:
        return _warmup_factor(step, plan.warmup_steps) * decay(step, plan)

    return LambdaLR(optimizer, lr_lambda=multiplier)


# --------------------------------------------------------------------------------- gamma

# A gamma rule maps (base_gamma, progress in [0, 1], final_fraction) to the group's gamma.
_GammaRule = Callable[[float, float, float], float]


def _constant_gamma(base_gamma: float, progress: float, final_fraction: float) -> float:
    return base_gamma


def _cosine_gamma(base_gamma: float, progress: float, final_fraction: float) -> float:
    shape = 0.5 * (1.0 + math.cos(math.pi * progress))
    return base_gamma * _blend_to_floor(final_fraction, shape)


def _linear_gamma(base_gamma: float, progress: float, final_fraction: float) -> float:
    return base_gamma * _blend_to_floor(final_fraction, 1.0 - progress)


# ``None`` means the optimizer's own rule: gamma = gamma_ratio * lr at every extrapolation.
_GAMMA_RULES: Mapping[str, _GammaRule | None] = {
    "follow_lr": None,
    "constant": _constant_gamma,
    "cosine": _cosine_gamma,
    "linear": _linear_gamma,
}

GAMMA_SCHEDULE_KINDS: tuple[str, ...] = tuple(_GAMMA_RULES)
"""The names ``GammaScheduleConfig.kind`` may take."""


class GammaScheduler:
    """Sets every param group's ``gamma`` once per optimizer step.

    - ``follow_lr``: ``gamma = None``, so ExtrapSGD uses ``gamma_ratio * lr`` and gamma follows
      whatever the learning-rate scheduler does;
    - ``constant``: ``gamma = base_gamma``;
    - ``cosine`` / ``linear``: gamma falls from ``base_gamma`` at step 0 to
      ``final_fraction * base_gamma`` at ``total_steps`` (no warmup), then stays there.

    Like a torch LR scheduler, the gamma for step 0 is set on construction; call :meth:`step`
    after every optimizer step. :meth:`state_dict` holds only the step counter (and the kind,
    checked on loading).

    Args:
        optimizer: the optimizer whose groups' ``gamma`` is scheduled.
        kind: one of :data:`GAMMA_SCHEDULE_KINDS`.
        base_gamma: the starting gamma; required for all kinds but ``follow_lr``, which does
            not accept one (it would be silently dropped).
        total_steps: optimizer steps in the run.
        final_fraction: ``cosine`` / ``linear``: the end value as a fraction of ``base_gamma``.

    Raises:
        ValueError: for an unknown kind, a missing, unexpected or negative ``base_gamma``,
            non-positive ``total_steps`` or ``final_fraction`` outside [0, 1].

    Example:
        >>> import torch
        >>> optimizer = torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=0.1)
        >>> scheduler = GammaScheduler(optimizer, "linear", base_gamma=0.2, total_steps=4)
        >>> gammas = []
        >>> for _ in range(5):
        ...     gammas.append(round(current_gamma(optimizer.param_groups[0]), 6))
        ...     scheduler.step()
        >>> gammas
        [0.2, 0.15, 0.1, 0.05, 0.0]
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        kind: str,
        *,
        base_gamma: float | None,
        total_steps: int,
        final_fraction: float = 0.0,
    ) -> None:
        if kind not in _GAMMA_RULES:
            raise ValueError(
                f"unknown gamma schedule kind {kind!r}; choose one of {GAMMA_SCHEDULE_KINDS}"
            )
        rule = _GAMMA_RULES[kind]
        if rule is None and base_gamma is not None:
            raise ValueError(
                f"gamma schedule 'follow_lr' uses gamma_ratio * lr, but base_gamma={base_gamma} "
                "was given; drop the absolute gamma or use kind 'constant'"
            )
        if rule is not None and base_gamma is None:
            raise ValueError(f"gamma schedule {kind!r} needs base_gamma (an absolute gamma)")
        if base_gamma is not None and base_gamma < 0:
            raise ValueError(f"base_gamma must be non-negative, got {base_gamma}")
        if total_steps <= 0:
            raise ValueError(f"total_steps must be positive, got {total_steps}")
        if not 0.0 <= final_fraction <= 1.0:
            raise ValueError(f"final_fraction must be in [0, 1], got {final_fraction}")
        self.optimizer = optimizer
        self.kind = kind
        self.base_gamma = base_gamma
        self.total_steps = total_steps
        self.final_fraction = final_fraction
        self._rule = rule
        self.last_step = 0
        self._last_gamma: list[float | None] = []
        self._apply()

    def gamma_at(self, step: int) -> float | None:
        """The gamma this schedule sets for optimizer step ``step`` (``None``: ratio × lr)."""
        if self._rule is None or self.base_gamma is None:
            return None
        progress = min(1.0, step / self.total_steps)
        return self._rule(self.base_gamma, progress, self.final_fraction)

    def step(self) -> None:
        """Advance one optimizer step and set the groups' ``gamma`` for the next one."""
        self.last_step += 1
        self._apply()

    def get_last_gamma(self) -> list[float | None]:
        """The ``gamma`` last set on each param group (``None`` under ``follow_lr``)."""
        return list(self._last_gamma)

    def state_dict(self) -> dict[str, Any]:
        """The scheduler's state: its kind and how many steps it has taken."""
        return {"kind": self.kind, "last_step": self.last_step}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Resume from :meth:`state_dict` and set the groups' ``gamma`` accordingly.

        Raises:
            ValueError: if the state belongs to another kind of gamma schedule.
        """
        if state_dict["kind"] != self.kind:
            raise ValueError(
                f"cannot load a {state_dict['kind']!r} gamma schedule into a {self.kind!r} one"
            )
        self.last_step = int(state_dict["last_step"])
        self._apply()

    def _apply(self) -> None:
        gamma = self.gamma_at(self.last_step)
        for group in self.optimizer.param_groups:
            group["gamma"] = gamma
        self._last_gamma = [gamma] * len(self.optimizer.param_groups)


def build_gamma_scheduler(
    optimizer: torch.optim.Optimizer,
    gamma_schedule: GammaScheduleConfig,
    *,
    base_gamma: float | None,
    total_steps: int,
) -> GammaScheduler:
    """Build the :class:`GammaScheduler` a :class:`~trainers.config.GammaScheduleConfig` asks for.

    Args:
        optimizer: the optimizer whose groups' ``gamma`` is scheduled.
        gamma_schedule: the kind and, for ``cosine`` / ``linear``, the final fraction.
        base_gamma: ``OptimizerConfig.gamma`` (``None`` for ``follow_lr``).
        total_steps: optimizer steps in the run (``steps_per_epoch * epochs``).

    Returns:
        The scheduler, with step 0's gamma already set on the optimizer.

    Example:
        >>> import torch
        >>> from trainers.config import GammaScheduleConfig
        >>> optimizer = torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=0.1)
        >>> scheduler = build_gamma_scheduler(
        ...     optimizer, GammaScheduleConfig(kind="constant"), base_gamma=0.05, total_steps=10
        ... )
        >>> scheduler.get_last_gamma()
        [0.05]
    """
    kind = gamma_schedule.kind
    if kind is None:  # unset: implied by whether an absolute gamma is given
        kind = "follow_lr" if base_gamma is None else "constant"
    return GammaScheduler(
        optimizer,
        kind,
        base_gamma=base_gamma,
        total_steps=total_steps,
        final_fraction=gamma_schedule.final_fraction,
    )


def current_gamma(group: Mapping[str, Any]) -> float:
    """The gamma a param group extrapolates with now: ``gamma``, or ``gamma_ratio * lr``.

    Args:
        group: one entry of ``optimizer.param_groups``.

    Returns:
        ``group["gamma"]`` if it is set, else ``group["gamma_ratio"] * group["lr"]``.

    Example:
        >>> current_gamma({"lr": 0.5, "gamma": None, "gamma_ratio": 0.1})
        0.05
        >>> current_gamma({"lr": 0.5, "gamma": 0.2, "gamma_ratio": 0.1})
        0.2
    """
    gamma = group["gamma"]
    if gamma is None:
        return float(group["gamma_ratio"]) * float(group["lr"])
    return float(gamma)
