"""The extrapolation optimizer family and its schedules.

``ExtrapSGD`` implements the unified framework of Lin et al. (ICML 2020); ``VARIANTS`` is the
registry of its ``extrapolation`` values; ``schedules`` holds the lr and gamma schedules. The
contract is written out in ``docs/optimizer.md``.

Importing this package is light: the variant registry (:mod:`trainers.optim.variants`) needs
no torch, so the job config and the API can list and check variant names cheaply. The
torch-backed names (the optimizer, :func:`effective_gamma`, the schedules) are imported on
first access. The functional update lives in its module, as ``torch.optim.sgd.sgd`` does:
``trainers.optim.extrap_sgd.extrap_sgd`` (``trainers.optim.extrap_sgd`` names the module).

Example:
    >>> from trainers.optim import VARIANTS, ExtrapSGD
    >>> "sam" in VARIANTS
    True
    >>> ExtrapSGD.__name__
    'ExtrapSGD'
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from trainers.optim.variants import VARIANTS, VariantInfo, variant_info

if TYPE_CHECKING:
    from trainers.optim.extrap_sgd import ExtrapSGD, effective_gamma, extrapolate_
    from trainers.optim.schedules import (
        GAMMA_SCHEDULE_KINDS,
        LR_DECAY_KINDS,
        GammaScheduler,
        build_lr_scheduler,
        linear_scaled_lr,
    )

__all__ = [
    "GAMMA_SCHEDULE_KINDS",
    "LR_DECAY_KINDS",
    "VARIANTS",
    "ExtrapSGD",
    "GammaScheduler",
    "VariantInfo",
    "build_lr_scheduler",
    "effective_gamma",
    "extrapolate_",
    "linear_scaled_lr",
    "variant_info",
]

# The torch-backed names, by the module each lives in.
_EXTRAP_SGD = frozenset({"ExtrapSGD", "effective_gamma", "extrapolate_"})
_SCHEDULES = frozenset(
    {
        "GAMMA_SCHEDULE_KINDS",
        "LR_DECAY_KINDS",
        "GammaScheduler",
        "build_lr_scheduler",
        "linear_scaled_lr",
    }
)


def __getattr__(name: str) -> Any:
    # PEP 562: torch is imported on first use, keeping `import trainers.optim.variants` light.
    if name in _EXTRAP_SGD:
        from trainers.optim import extrap_sgd

        return getattr(extrap_sgd, name)
    if name in _SCHEDULES:
        from trainers.optim import schedules

        return getattr(schedules, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
