"""The extrapolation optimizer family and its schedules.

``ExtrapSGD`` implements the unified framework of Lin et al. (ICML 2020); ``VARIANTS`` is the
registry of its ``extrapolation`` values; ``schedules`` holds the lr and gamma schedules.
"""

from __future__ import annotations

from trainers.optim._variants import VARIANTS, VariantInfo, variant_info
from trainers.optim.extrap_sgd import ExtrapSGD, extrap_sgd, extrapolate_
from trainers.optim.schedules import (
    GAMMA_SCHEDULE_KINDS,
    LR_DECAY_KINDS,
    GammaScheduler,
    build_gamma_scheduler,
    build_lr_scheduler,
    current_gamma,
    linear_scaled_lr,
)

__all__ = [
    "GAMMA_SCHEDULE_KINDS",
    "LR_DECAY_KINDS",
    "VARIANTS",
    "ExtrapSGD",
    "GammaScheduler",
    "VariantInfo",
    "build_gamma_scheduler",
    "build_lr_scheduler",
    "current_gamma",
    "extrap_sgd",
    "extrapolate_",
    "linear_scaled_lr",
    "variant_info",
]
