"""Learning-rate and gamma schedules for :class:`trainers.optim.ExtrapSGD`.

Both schedules advance once per optimizer step (not per epoch): call ``lr_scheduler.step()``
and ``gamma_scheduler.step()`` right after every ``optimizer.step()``. They take plain
arguments (the job config maps itself onto them), so this module needs only torch.

- :func:`linear_scaled_lr` applies the linear scaling rule to the base learning rate.
- :func:`build_lr_scheduler` builds a :class:`torch.optim.lr_scheduler.LambdaLR`: linear
  warmup, then one decay from :data:`LR_DECAY_KINDS`.
- :class:`GammaScheduler` moves each param group's ``gamma`` by one of
  :data:`GAMMA_SCHEDULE_KINDS`. The optimizer's constructor sets the starting gamma; the
  scheduler only ever writes it in :meth:`GammaScheduler.step`, and only for the kinds that
  decay it.

The gamma a group extrapolates with is :func:`trainers.optim.effective_gamma`.

Example:
    >>> import torch
    >>> from trainers.optim import ExtrapSGD, effective_gamma
    >>> model = torch.nn.Linear(2, 1)
    >>> optimizer = ExtrapSGD(
    ...     model.parameters(), lr=linear_scaled_lr(0.1, 1024, 256), gamma_ratio=0.1
    ... )
    >>> lr_scheduler = build_lr_scheduler(
    ...     optimizer, steps_per_epoch=4, epochs=8, warmup_epochs=1, decay="cosine"
    ... )
    >>> gamma_scheduler = GammaScheduler(optimizer, "follow_lr", total_steps=32)
    >>> group = optimizer.param_groups[0]
    >>> round(group["lr"], 6), round(effective_gamma(group), 6)
    (0.1, 0.01)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.optim.lr_scheduler import LambdaLR, LRScheduler

__all__ = [
    "GAMMA_SCHEDULE_KINDS",
    "LR_DECAY_KINDS",
    "GammaScheduler",
    "build_lr_scheduler",
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
    milestones: tuple[float, ...]
    decay_factor: float
    power: float
    final_lr_fraction: float

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
    passed = sum(step >= round(m * plan.total_steps) for m in plan.milestones)
    return plan.decay_factor**passed


def _cosine_decay(step: int, plan: _StepPlan) -> float:
    progress = plan.decay_progress(step)
    shape = 0.5 * (1.0 + math.cos(math.pi * progress))
    return _blend_to_floor(plan.final_lr_fraction, shape)


def _polynomial_decay(step: int, plan: _StepPlan) -> float:
    shape = (1.0 - plan.decay_progress(step)) ** plan.power
    return _blend_to_floor(plan.final_lr_fraction, shape)


# One pure multiplier per ``decay``; 1.0 during warmup for all but multistep.
_LR_DECAYS: Mapping[str, Callable[[int, _StepPlan], float]] = {
    "constant": _constant_decay,
    "multistep": _multistep_decay,
    "cosine": _cosine_decay,
    "polynomial": _polynomial_decay,
}

LR_DECAY_KINDS: tuple[str, ...] = tuple(_LR_DECAYS)
"""The names ``build_lr_scheduler(decay=...)`` accepts."""


def _warmup_factor(step: int, warmup_steps: int) -> float:
    # Step 0 already gets 1/warmup_steps of the peak (a zero-lr step would be wasted); step
    # warmup_steps - 1 is the first at the peak.
    if step >= warmup_steps:
        return 1.0
    return (step + 1) / warmup_steps


def _check_lr_options(
    *,
    steps_per_epoch: int,
    epochs: int,
    warmup_epochs: float,
    decay: str,
    milestones: tuple[float, ...],
    decay_factor: float,
    power: float,
    final_lr_fraction: float,
) -> None:
    if steps_per_epoch <= 0:
        raise ValueError(f"steps_per_epoch must be positive, got {steps_per_epoch}")
    if epochs <= 0:
        raise ValueError(f"epochs must be positive, got {epochs}")
    if warmup_epochs < 0:
        raise ValueError(f"warmup_epochs must be non-negative, got {warmup_epochs}")
    if decay not in _LR_DECAYS:
        raise ValueError(f"unknown decay={decay!r}; choose one of {LR_DECAY_KINDS}")
    outside = [m for m in milestones if not 0.0 < m < 1.0]
    if outside:
        raise ValueError(f"milestones must be fractions of the run in (0, 1), got {outside}")
    if list(milestones) != sorted(milestones):
        raise ValueError(f"milestones must be increasing, got {list(milestones)}")
    if not 0.0 < decay_factor <= 1.0:
        raise ValueError(f"decay_factor must be in (0, 1], got {decay_factor}")
    if power <= 0:
        raise ValueError(f"power must be positive, got {power}")
    if not 0.0 <= final_lr_fraction <= 1.0:
        raise ValueError(f"final_lr_fraction must be in [0, 1], got {final_lr_fraction}")


def build_lr_scheduler(
    optimizer: torch.optim.Optimizer,
    *,
    steps_per_epoch: int,
    epochs: int,
    warmup_epochs: float = 0.0,
    decay: str = "constant",
    milestones: Sequence[float] = (0.5, 0.75),
    decay_factor: float = 0.1,
    power: float = 1.0,
    final_lr_fraction: float = 0.0,
) -> LRScheduler:
    """Build the per-step learning-rate schedule: linear warmup, then ``decay``.

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
    the arguments, so ``state_dict()`` holds only counters and learning rates: to resume, build
    the scheduler again with the same arguments and load the state (after the optimizer's).

    Args:
        optimizer: the optimizer whose groups' ``lr`` is scheduled.
        steps_per_epoch: optimizer steps per epoch.
        epochs: epochs in the run.
        warmup_epochs: length of the linear warmup, in epochs (may be fractional).
        decay: one of :data:`LR_DECAY_KINDS`.
        milestones: ``multistep``: when to decay, as increasing fractions of the run in (0, 1).
        decay_factor: ``multistep``: the lr is multiplied by this at each milestone, in (0, 1].
        power: ``polynomial``: the exponent, > 0.
        final_lr_fraction: ``cosine`` / ``polynomial``: the floor as a fraction of the peak,
            in [0, 1].

    Returns:
        A :class:`torch.optim.lr_scheduler.LambdaLR`.

    Raises:
        ValueError: naming the argument, for non-positive ``steps_per_epoch`` or ``epochs``,
            a negative ``warmup_epochs`` or one longer than the run, an unknown ``decay``
            (the message lists :data:`LR_DECAY_KINDS`), ``milestones`` that are not
            increasing fractions in (0, 1), ``decay_factor`` outside (0, 1], ``power <= 0``
            or ``final_lr_fraction`` outside [0, 1].

    Example:
        >>> import torch
        >>> optimizer = torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=1.0)
        >>> scheduler = build_lr_scheduler(
        ...     optimizer, steps_per_epoch=4, epochs=2, warmup_epochs=1
        ... )
        >>> lrs = []
        >>> for _ in range(6):
        ...     lrs.append(optimizer.param_groups[0]["lr"])
        ...     optimizer.step()
        ...     scheduler.step()
        >>> lrs
        [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    """
    milestones = tuple(milestones)
    _check_lr_options(
        steps_per_epoch=steps_per_epoch,
        epochs=epochs,
        warmup_epochs=warmup_epochs,
        decay=decay,
        milestones=milestones,
        decay_factor=decay_factor,
        power=power,
        final_lr_fraction=final_lr_fraction,
    )
    plan = _StepPlan(
        warmup_steps=round(warmup_epochs * steps_per_epoch),
        total_steps=steps_per_epoch * epochs,
        milestones=milestones,
        decay_factor=decay_factor,
        power=power,
        final_lr_fraction=final_lr_fraction,
    )
    if plan.warmup_steps > plan.total_steps:
        raise ValueError(f"warmup_epochs={warmup_epochs} is longer than the run (epochs={epochs})")
    decay_rule = _LR_DECAYS[decay]

    # A closure (not a callable object) so LambdaLR.state_dict() stores no plan objects.
    def multiplier(step: int) -> float:
        return _warmup_factor(step, plan.warmup_steps) * decay_rule(step, plan)

    return LambdaLR(optimizer, lr_lambda=multiplier)


# --------------------------------------------------------------------------------- gamma


def _cosine_gamma(progress: float, final_fraction: float) -> float:
    shape = 0.5 * (1.0 + math.cos(math.pi * progress))
    return _blend_to_floor(final_fraction, shape)


def _linear_gamma(progress: float, final_fraction: float) -> float:
    return _blend_to_floor(final_fraction, 1.0 - progress)


@dataclass(frozen=True)
class _GammaKind:
    """One gamma schedule kind.

    Attributes:
        absolute: the groups carry an absolute ``gamma`` (True) or ``gamma=None``, i.e.
            ``gamma_ratio * lr`` (False).
        factor: maps (progress in [0, 1], final_fraction) to the multiplier of each group's
            ``initial_gamma``; ``None`` for the kinds that never write ``gamma``.
    """

    absolute: bool
    factor: Callable[[float, float], float] | None


_GAMMA_KINDS: Mapping[str, _GammaKind] = {
    "follow_lr": _GammaKind(absolute=False, factor=None),
    "constant": _GammaKind(absolute=True, factor=None),
    "cosine": _GammaKind(absolute=True, factor=_cosine_gamma),
    "linear": _GammaKind(absolute=True, factor=_linear_gamma),
}

GAMMA_SCHEDULE_KINDS: tuple[str, ...] = tuple(_GAMMA_KINDS)
"""The names ``GammaScheduler(kind=...)`` accepts."""


def _check_groups_fit(optimizer: torch.optim.Optimizer, kind: str, spec: _GammaKind) -> None:
    for index, group in enumerate(optimizer.param_groups):
        if "gamma" not in group:
            raise ValueError(
                f"param group {index} has no 'gamma' option: GammaScheduler schedules the "
                "gamma of an ExtrapSGD optimizer"
            )
        gamma = group["gamma"]
        if spec.absolute and gamma is None:
            raise ValueError(
                f"gamma schedule {kind!r} needs an absolute gamma, but param group {index} has "
                "gamma=None (gamma_ratio * lr); set ExtrapSGD(gamma=...) or use kind 'follow_lr'"
            )
        if not spec.absolute and gamma is not None:
            raise ValueError(
                f"gamma schedule 'follow_lr' uses gamma_ratio * lr, but param group {index} has "
                f"gamma={gamma}; use kind 'constant' to keep an absolute gamma"
            )


class GammaScheduler:
    """Moves every param group's ``gamma`` once per optimizer step.

    The optimizer's constructor sets each group's starting ``gamma``
    (``ExtrapSGD(gamma=...)``); this scheduler never takes a gamma of its own. On construction
    it checks that the groups' ``gamma`` fits ``kind``:

    - ``follow_lr``: the groups must have ``gamma=None``, so ExtrapSGD uses
      ``gamma_ratio * lr`` at every extrapolation and gamma follows the learning-rate schedule.
      Nothing is ever written.
    - ``constant``: the groups must have an absolute ``gamma``, which stays. Nothing is ever
      written.
    - ``cosine`` / ``linear``: the groups must have an absolute ``gamma``. Each group's starting
      value is recorded once as ``group["initial_gamma"]`` (as torch's LR schedulers keep
      ``initial_lr``; a group that already has one keeps it). :meth:`step` then sets
      ``gamma = initial_gamma * m(p)`` with ``p = min(1, step / total_steps)`` and
      ``f = final_fraction``: ``m(p) = f + (1 - f) * (1 + cos(pi * p)) / 2`` (cosine) or
      ``m(p) = f + (1 - f) * (1 - p)`` (linear). So gamma falls from its starting value at step
      0 to ``f`` times it at ``total_steps`` (no warmup), and stays there.

    Call :meth:`step` after every optimizer step. :meth:`state_dict` holds the kind and the step
    counter; the current ``gamma`` and ``initial_gamma`` live in the optimizer's param groups,
    so they travel with the optimizer's ``state_dict()``. To resume, build the optimizer and
    this scheduler as before, then load the optimizer's state and this one's.

    Args:
        optimizer: the optimizer whose groups' ``gamma`` is scheduled (an ExtrapSGD, or any
            optimizer whose groups carry ``gamma`` and ``gamma_ratio``).
        kind: one of :data:`GAMMA_SCHEDULE_KINDS`.
        total_steps: optimizer steps in the run.
        final_fraction: ``cosine`` / ``linear``: the end value as a fraction of the start.

    Raises:
        ValueError: for an unknown kind (the message lists :data:`GAMMA_SCHEDULE_KINDS`), a
            group whose ``gamma`` does not fit the kind, non-positive ``total_steps`` or
            ``final_fraction`` outside [0, 1].

    Example:
        >>> import torch
        >>> from trainers.optim import ExtrapSGD, effective_gamma
        >>> optimizer = ExtrapSGD(torch.nn.Linear(2, 1).parameters(), lr=0.1, gamma=0.2)
        >>> scheduler = GammaScheduler(optimizer, "linear", total_steps=4)
        >>> gammas = []
        >>> for _ in range(5):
        ...     gammas.append(round(effective_gamma(optimizer.param_groups[0]), 6))
        ...     scheduler.step()
        >>> gammas
        [0.2, 0.15, 0.1, 0.05, 0.0]
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        kind: str,
        *,
        total_steps: int,
        final_fraction: float = 0.0,
    ) -> None:
        spec = _GAMMA_KINDS.get(kind)
        if spec is None:
            raise ValueError(
                f"unknown gamma schedule kind {kind!r}; choose one of {GAMMA_SCHEDULE_KINDS}"
            )
        if total_steps <= 0:
            raise ValueError(f"total_steps must be positive, got {total_steps}")
        if not 0.0 <= final_fraction <= 1.0:
            raise ValueError(f"final_fraction must be in [0, 1], got {final_fraction}")
        _check_groups_fit(optimizer, kind, spec)
        self.optimizer = optimizer
        self.kind = kind
        self.total_steps = total_steps
        self.final_fraction = final_fraction
        self._spec = spec
        self.last_step = 0
        if spec.factor is not None:
            for group in optimizer.param_groups:
                group.setdefault("initial_gamma", group["gamma"])

    def step(self) -> None:
        """Advance one optimizer step; ``cosine`` / ``linear`` set the groups' next ``gamma``."""
        self.last_step += 1
        factor = self._spec.factor
        if factor is None:
            return
        multiplier = factor(min(1.0, self.last_step / self.total_steps), self.final_fraction)
        for group in self.optimizer.param_groups:
            group["gamma"] = group["initial_gamma"] * multiplier

    def get_last_gamma(self) -> list[float | None]:
        """Each param group's ``gamma`` now (``None`` under ``follow_lr``: ratio × lr)."""
        return [group["gamma"] for group in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        """The scheduler's state: its kind and how many steps it has taken."""
        return {"kind": self.kind, "last_step": self.last_step}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Resume the step counter from :meth:`state_dict`.

        The groups' ``gamma`` and ``initial_gamma`` come back with the optimizer's own
        ``load_state_dict()``; nothing is written here.

        Raises:
            ValueError: if the state belongs to another kind of gamma schedule, or (for
                ``cosine`` / ``linear``) a param group has no ``initial_gamma``.
        """
        if state_dict["kind"] != self.kind:
            raise ValueError(
                f"cannot load a {state_dict['kind']!r} gamma schedule into a {self.kind!r} one"
            )
        if self._spec.factor is not None:
            for index, group in enumerate(self.optimizer.param_groups):
                if "initial_gamma" not in group:
                    raise ValueError(
                        f"param group {index} has no 'initial_gamma': load an optimizer state "
                        f"saved together with this {self.kind!r} gamma schedule"
                    )
        self.last_step = int(state_dict["last_step"])
