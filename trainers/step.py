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

After the communicated backward one small all-reduce carries the loss sums and unit counts (a
NaN propagates through it), so that every rank divides by the same global unit count, decides
divergence together (no rank is left waiting at a barrier) and counts the step's gradient
evaluations the same way.
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

__all__ = ["ExtrapStepper", "StepResult", "frozen_batchnorm_stats"]

Batch = Any
LossFn = Callable[[torch.nn.Module, Batch], tuple[Tensor, int]]


@dataclass(frozen=True)
class StepResult:
    """What one step reports; identical on every rank.

    Attributes:
        loss: mean training loss over the global batch, at x_t for two-pass variants and at
            x_{t+1/2} (the only pass) for one-pass variants.
        units: samples (or tokens) in the global batch.
        diverged: the loss was NaN/inf or above the bound on some rank; the update was skipped.
        gradient_units: samples (or tokens) that went through a backward pass in this step,
            summed over both passes and all ranks: the step's gradient evaluations.
    """

    loss: float
    units: int
    diverged: bool
    gradient_units: int = 0


@contextlib.contextmanager
def frozen_batchnorm_stats(model: torch.nn.Module) -> Iterator[None]:
    """Undo, on exit, whatever the enclosed forwards did to BatchNorm running statistics."""
    saved = [
        (buffer, buffer.detach().clone())
        for module in model.modules()
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and module.track_running_stats
        for buffer in (module.running_mean, module.running_var, module.num_batches_tracked)
        if buffer is not None
    ]
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
    ) -> None:
        if scope not in ("local", "global"):
            raise ValueError(f"Invalid scope={scope!r}; choose 'local' or 'global'")
        self.model = model
        self.optimizer = optimizer
        self.loss_fn = loss_fn
        self.scope = scope
        self.clip_grad_norm = clip_grad_norm
        self.clip_extrapolation_grad_norm = clip_extrapolation_grad_norm
        self.divergence_bound = divergence_bound
        self.autocast_dtype = autocast_dtype
        self._params = [p for p in model.parameters() if p.requires_grad]
        self._device = self._params[0].device

    def step(
        self, micro_batches: Sequence[Batch], second_micro_batches: Sequence[Batch] | None = None
    ) -> StepResult:
        """One optimizer step; ``second_micro_batches`` (a fresh batch) feeds the pass at
        x_{t+1/2} of two-pass variants, else the same batch is used for both passes."""
        optimizer = self.optimizer
        optimizer.zero_grad(set_to_none=True)
        first: tuple[Tensor, int] | None = None
        if optimizer.two_pass:
            communicate_first = self.scope == "global"
            first = self._accumulate(micro_batches, communicate_last=communicate_first)
            self._scale_grads(1.0 / max(first[1], 1))
            if self.clip_extrapolation_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(self._params, self.clip_extrapolation_grad_norm)
            optimizer.extrapolate()
            optimizer.zero_grad(set_to_none=True)
            with frozen_batchnorm_stats(self.model):
                second = self._accumulate(
                    second_micro_batches or micro_batches, communicate_last=True
                )
        else:
            optimizer.extrapolate()
            second = self._accumulate(micro_batches, communicate_last=True)

        reported = first if first is not None else second
        first_units = first[1] if first is not None else 0
        units = torch.tensor(
            [second[1], reported[1], first_units], dtype=torch.float64, device=self._device
        )
        stats = torch.cat([torch.stack([second[0], reported[0]]), units])
        distributed = dist.is_available() and dist.is_initialized()
        world = dist.get_world_size() if distributed else 1
        if distributed:
            dist.all_reduce(stats)  # the one small control all-reduce (NaN propagates through it)
        loss_sum, report_sum, units_total, report_units, first_total = stats.tolist()
        backward_units = int(units_total + first_total)
        loss = report_sum / max(report_units, 1.0)
        diverged = not (
            math.isfinite(loss_sum) and math.isfinite(loss) and loss <= self.divergence_bound
        )
        if diverged:
            # Restore x_t without an update (no parameter has a gradient); the caller stops.
            optimizer.zero_grad(set_to_none=True)
            optimizer.step()
            return StepResult(loss, int(report_units), True, backward_units)
        # DDP averaged the per-rank SUMS over `world` ranks; dividing by the mean unit count
        # gives sum_k S_k / sum_k T_k: the exact mean over the global batch, the same on all ranks.
        self._scale_grads(world / max(units_total, 1.0))
        if self.clip_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(self._params, self.clip_grad_norm)
        optimizer.step()
        return StepResult(loss, int(report_units), False, backward_units)

    def _accumulate(
        self, micro_batches: Sequence[Batch], *, communicate_last: bool
    ) -> tuple[Tensor, int]:
        """Backward of sum_i count_i * loss_i; returns (loss sum as a tensor, so that no
        micro-batch waits for the device, and the unit count) on this rank."""
        no_sync: Callable[[], contextlib.AbstractContextManager[Any]] = getattr(
            self.model, "no_sync", contextlib.nullcontext
        )
        loss_sum = torch.zeros((), dtype=torch.float64, device=self._device)
        units = 0
        last = len(micro_batches) - 1
        for i, batch in enumerate(micro_batches):
            sync = communicate_last and i == last
            context = contextlib.nullcontext() if sync else no_sync()
            with context:  # the forward must be inside no_sync() too, not just the backward
                with self._autocast():
                    loss, count = self.loss_fn(self.model, batch)
                (loss.float() * count).backward()  # type: ignore[no-untyped-call]
            loss_sum += loss.detach().double() * count
            units += count
        return loss_sum, units

    def _scale_grads(self, factor: float) -> None:
        grads = [p.grad for p in self._params if p.grad is not None]
        if grads and factor != 1.0:
            torch._foreach_mul_(grads, factor)

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self._device.type, dtype=self.autocast_dtype)
