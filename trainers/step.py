"""One optimizer step of data-parallel training with LOCAL extrapolation.

Plain PyTorch (DDP or a bare module), no Ray: the per-worker loop calls :class:`ExtrapStepper`
once per global batch, and the tests drive it from two gloo processes.

The step, for a two-pass variant (gradient, gradient+noise, sam)::

    with ddp.no_sync():                      # forward AND backward local: nothing communicated
        backward at x_t over the micro-batches
    optimizer.extrapolate()                  # x_{t+1/2} from this worker's own gradient
    zero grads                               # else DDP would average the accumulated sum
    backward at x_{t+1/2} over the micro-batches; the last one outside no_sync() all-reduces
    optimizer.step()                         # back to x_t, then x_{t+1}

and for a one-pass variant (none, noise, past) just the last three lines. With
``scope="global"`` the first pass is all-reduced as well (for comparison with the paper's local
extrapolation). Micro-batch losses are weighted by their unit counts (samples or tokens) so that
accumulated gradients equal those of one big batch.

BatchNorm: for two-pass variants the running statistics are updated by the pass at x_t only;
the pass at the extrapolated point x_{t+1/2} runs in train mode (batch statistics) but its
updates to the running mean/var are undone. The running statistics thus describe the real
iterates, as in SGD, and are updated once per micro-batch per step, as in SGD. One-pass variants
have only the pass at x_{t+1/2}, which updates them.

The step's bookkeeping (loss sums, unit counts, divergence) costs one small all-reduce of six
float64 values (a NaN propagates through it), so that every rank divides by the same global
unit count, decides divergence together (no rank is left waiting at a collective) and counts
gradient evaluations the same way. When every rank's batch holds the same number of units
(classification: units are rows, and every rank gets as many rows), the global count is known
without it, and that all-reduce runs once per window of ``sync_every`` steps instead of once
per step: on two CPU processes it cost about 2 ms a step, and on a GPU each one stalls the
stream. A step then returns None until its window closes, and the window's result covers all
of its steps. With variable unit counts (tokens) the step still needs the global count before
its update, so it synchronises every step.

Divergence: a step diverges when its loss on some rank is non-finite or above the bound. When
the step synchronises on its own (``sync_every=1``, or variable units) its update is skipped
(x_t restored). In a window it is seen when the window closes: the window's later updates
stand, the caller stops the trial there.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from trainers.optim import ExtrapSGD

__all__ = [
    "CONTROL_SYNC_EVERY",
    "ExtrapStepper",
    "StepResult",
    "batchnorm_buffers",
    "frozen_batchnorm_stats",
]

Batch = Any

CONTROL_SYNC_EVERY = 16
"""The product's window (steps per control all-reduce) where units are equal on every rank: a
diverged trial is seen within 16 steps, and 15 control all-reduces in 16 are saved."""
LossFn = Callable[[torch.nn.Module, Batch], tuple[Tensor, int]]


@dataclass(frozen=True)
class StepResult:
    """What one step, or one window of steps, reports; identical on every rank.

    Attributes:
        loss: mean training loss over the global batches, at x_t for two-pass variants and at
            x_{t+1/2} (the only pass) for one-pass variants.
        units: samples (or tokens) in the global batches.
        diverged: some step's loss was NaN/inf or above the bound on some rank.
        gradient_units: samples (or tokens) that went through a backward pass, summed over both
            passes and all ranks: the gradient evaluations.
        steps: optimizer steps covered.
    """

    loss: float
    units: int
    diverged: bool
    gradient_units: int = 0
    steps: int = 1


# The control vector (see _Window.close and _result): loss sum, reported loss sum, units,
# reported units, first-pass units, divergence flag. Slot of the units of the update's pass:
_UNITS = 2
_NO_CONTEXT = contextlib.nullcontext()


@dataclass(frozen=True)
class _Pass:
    """One pass over a step's micro-batches on this rank.

    Attributes:
        loss_sum: sum of count_i * loss_i (a device tensor).
        units: sum of count_i.
        mean_factor: what the accumulated gradients are multiplied by to become this rank's
            mean (1.0 when the one micro-batch's mean loss was backpropagated unweighted).
    """

    loss_sum: Tensor
    units: int
    mean_factor: float


class _Window:
    """The control figures of the steps since the last result: device sums, host counts."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._reset()

    def _reset(self) -> None:
        self.steps = 0
        self.units = self.report_units = self.first_units = 0
        self.loss: Tensor | None = None
        self.report: Tensor | None = None
        self.worst: Tensor | None = None  # the highest step loss (NaN once one was NaN)

    def add(self, second: _Pass, first: _Pass | None) -> None:
        """One step's passes (``first`` is the pass at x_t of a two-pass variant)."""
        reported = first if first is not None else second
        step_loss = reported.loss_sum.double() / max(reported.units, 1)
        if self.loss is None or self.worst is None:
            self.loss, self.worst = second.loss_sum.double(), step_loss
            self.report = first.loss_sum.double() if first is not None else None
        else:
            self.loss = self.loss + second.loss_sum
            if first is not None and self.report is not None:
                self.report = self.report + first.loss_sum
            self.worst = torch.maximum(self.worst, step_loss)  # propagates NaN
        self.steps += 1
        self.units += second.units
        self.report_units += reported.units
        self.first_units += first.units if first is not None else 0

    def close(self, bound: float) -> Tensor:
        """This rank's control vector (float64, on the device); the window starts afresh."""
        assert self.loss is not None and self.worst is not None, "close() of an empty window"
        report = self.report if self.report is not None else self.loss
        bad = torch.logical_not(torch.isfinite(self.loss) & (self.worst <= bound))
        counts = [self.units, self.report_units, self.first_units]
        control = torch.cat(
            [
                torch.stack([self.loss, report]),
                torch.tensor(counts, dtype=torch.float64, device=self.device),
                bad.double().view(1),
            ]
        )
        self._reset()
        return control


def _result(control: Tensor, *, steps: int) -> StepResult:
    """The reduced control vector as a result (one host synchronisation)."""
    loss_sum, report_sum, units, report_units, first_units, bad = control.tolist()
    loss = report_sum / max(report_units, 1.0)
    diverged = bad > 0 or not (math.isfinite(loss_sum) and math.isfinite(loss))
    return StepResult(loss, int(report_units), diverged, int(units + first_units), steps)


def batchnorm_buffers(model: torch.nn.Module) -> list[Tensor]:
    """The running statistics of ``model``'s BatchNorm layers (none for most MLPs)."""
    return [
        buffer
        for module in model.modules()
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and module.track_running_stats
        for buffer in (module.running_mean, module.running_var, module.num_batches_tracked)
        if buffer is not None
    ]


@contextlib.contextmanager
def frozen_batchnorm_stats(buffers: Sequence[Tensor]) -> Iterator[None]:
    """Undo, on exit, whatever the enclosed forwards did to these BatchNorm running statistics
    (:func:`batchnorm_buffers`: found once, not on every step)."""
    saved = [(buffer, buffer.detach().clone()) for buffer in buffers]
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, value in saved:
                buffer.copy_(value)


class ExtrapStepper:
    """Runs one optimizer step of :class:`~trainers.optim.ExtrapSGD` over micro-batches.

    Args:
        model: the (DDP-wrapped, or bare for one process) model.
        optimizer: an :class:`ExtrapSGD` over ``model``'s parameters.
        loss_fn: ``(model, batch) -> (mean loss, unit count)``.
        scope: ``"local"`` (the paper: first gradient not communicated) or ``"global"``.
        clip_grad_norm: clip the communicated gradient to this global norm before ``step()``.
        clip_extrapolation_grad_norm: clip the (local) first gradient before ``extrapolate()``.
        divergence_bound: a loss above this (or non-finite) marks the step diverged.
        autocast_dtype: ``torch.bfloat16`` for mixed precision, or None.
        units_equal_across_ranks: every rank's batch holds the same number of units (true when
            units are rows); lets the control all-reduce wait for the window's end.
        sync_every: steps per window of the control all-reduce (used only with
            ``units_equal_across_ranks``); 1 checks every step.

    Example:
        >>> model = torch.nn.Linear(3, 1)
        >>> opt = ExtrapSGD(model.parameters(), lr=0.1)
        >>> def loss_fn(m, batch):
        ...     x, y = batch
        ...     return torch.nn.functional.mse_loss(m(x), y), len(x)
        >>> stepper = ExtrapStepper(model, opt, loss_fn)
        >>> result = stepper.step([(torch.randn(4, 3), torch.randn(4, 1))])
        >>> result.units, result.diverged
        (4, False)
    """

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: ExtrapSGD,
        loss_fn: LossFn,
        *,
        scope: str = "local",
        clip_grad_norm: float | None = None,
        clip_extrapolation_grad_norm: float | None = None,
        divergence_bound: float = math.inf,
        autocast_dtype: torch.dtype | None = None,
        units_equal_across_ranks: bool = False,
        sync_every: int = 1,
    ) -> None:
        if scope not in ("local", "global"):
            raise ValueError(f"Invalid scope={scope!r}; choose 'local' or 'global'")
        if sync_every < 1:
            raise ValueError(f"Invalid sync_every={sync_every}; it must be at least 1")
        self.model = model
        self.optimizer = optimizer
        self.loss_fn = loss_fn
        self.scope = scope
        self.clip_grad_norm = clip_grad_norm
        self.clip_extrapolation_grad_norm = clip_extrapolation_grad_norm
        self.divergence_bound = divergence_bound
        self.autocast_dtype = autocast_dtype
        self.sync_every = sync_every if units_equal_across_ranks else 1
        self._params = [p for p in model.parameters() if p.requires_grad]
        self._batchnorm = batchnorm_buffers(model)
        self._device = self._params[0].device
        self._distributed = dist.is_available() and dist.is_initialized()
        self._world = dist.get_world_size() if self._distributed else 1
        # A micro-batch's loss is weighted by its unit count unless, in a window (every rank
        # has as many units), one micro-batch carries the rank's share: its mean is then exact.
        self._windowed = self.sync_every > 1
        self._window = _Window(self._device)

    @property
    def pending_steps(self) -> int:
        """Steps taken since the last result (0 after every step when ``sync_every`` is 1)."""
        return self._window.steps

    def step(
        self, micro_batches: Sequence[Batch], second_micro_batches: Sequence[Batch] | None = None
    ) -> StepResult | None:
        """One optimizer step; ``second_micro_batches`` (a fresh batch) feeds the pass at
        x_{t+1/2} of two-pass variants, else the same batch is used for both passes.

        Returns the result of the window this step closed, or None while it is open (see
        :meth:`flush`).
        """
        optimizer = self.optimizer
        optimizer.zero_grad(set_to_none=True)
        first: _Pass | None = None
        if optimizer.two_pass:
            communicate_first = self.scope == "global"
            first = self._accumulate(micro_batches, communicate_last=communicate_first)
            self._scale_grads(first.mean_factor)
            if self.clip_extrapolation_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(self._params, self.clip_extrapolation_grad_norm)
            optimizer.extrapolate()
            optimizer.zero_grad(set_to_none=True)
            frozen = frozen_batchnorm_stats(self._batchnorm) if self._batchnorm else _NO_CONTEXT
            with frozen:
                second = self._accumulate(
                    second_micro_batches or micro_batches, communicate_last=True
                )
        else:
            optimizer.extrapolate()
            second = self._accumulate(micro_batches, communicate_last=True)
        self._window.add(second, first)
        if self._windowed:
            # Every rank holds `second.units` units: the global mean needs no count from others.
            self._update(second.mean_factor)
            return self.flush() if self._window.steps >= self.sync_every else None
        control = self._window.close(self.divergence_bound)
        if self._distributed:
            dist.all_reduce(control)  # the one small control all-reduce of this step
        result = _result(control, steps=1)
        if result.diverged:
            # Restore x_t without an update (no parameter has a gradient); the caller stops.
            optimizer.zero_grad(set_to_none=True)
            optimizer.step()
            return result
        # DDP averaged the per-rank SUMS over `world` ranks; dividing by the mean unit count
        # gives sum_k S_k / sum_k T_k: the exact mean over the global batch, the same on all ranks.
        self._update(self._world / max(float(control[_UNITS]), 1.0))
        return result

    def flush(self) -> StepResult | None:
        """Close the open window: its result (one control all-reduce), or None if it is empty.

        Every rank must call it at the same step (the end of an epoch, or before stopping).
        """
        steps = self._window.steps
        if steps == 0:
            return None
        control = self._window.close(self.divergence_bound)
        if self._distributed:
            dist.all_reduce(control)
        return _result(control, steps=steps)

    def _update(self, grad_factor: float) -> None:
        self._scale_grads(grad_factor)
        if self.clip_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(self._params, self.clip_grad_norm)
        self.optimizer.step()

    def _accumulate(self, micro_batches: Sequence[Batch], *, communicate_last: bool) -> _Pass:
        """One pass of forwards and backwards over the micro-batches (see :class:`_Pass`)."""
        no_sync: Callable[[], contextlib.AbstractContextManager[Any]] = getattr(
            self.model, "no_sync", contextlib.nullcontext
        )
        weighted = not (self._windowed and len(micro_batches) == 1)
        loss_sum: Tensor | None = None
        units = 0
        last = len(micro_batches) - 1
        for i, batch in enumerate(micro_batches):
            sync = communicate_last and i == last
            context = contextlib.nullcontext() if sync else no_sync()
            with context:  # the forward must be inside no_sync() too, not just the backward
                with self._autocast():
                    loss, count = self.loss_fn(self.model, batch)
                (loss.float() * count if weighted else loss).backward()  # type: ignore[no-untyped-call]
            term = loss.detach() * count  # a tensor: no micro-batch waits for the device
            loss_sum = term if loss_sum is None else loss_sum + term
            units += count
        assert loss_sum is not None, "a step needs at least one micro-batch"
        return _Pass(loss_sum, units, 1.0 / max(units, 1) if weighted else 1.0)

    def _scale_grads(self, factor: float) -> None:
        grads = [p.grad for p in self._params if p.grad is not None]
        if grads and factor != 1.0:
            torch._foreach_mul_(grads, factor)

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self._device.type, dtype=self.autocast_dtype)
