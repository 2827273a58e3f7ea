"""The registry of extrapolation variants: one frozen record per name.

The optimizer, the job config (``OptimizerConfig.extrapolation``), the searchable-name
descriptions and the docs all read this table, so a variant's name and properties are stated
once. Nothing here imports torch: the API and the config validate variant names with it.

Example:
    >>> list(VARIANTS)
    ['none', 'gradient', 'noise', 'gradient+noise', 'past', 'sam']
    >>> [info.name for info in VARIANTS.values() if info.two_pass]
    ['gradient', 'gradient+noise', 'sam']
    >>> variant_info("past").needs_grad
    False
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

__all__ = ["VARIANTS", "VariantInfo", "variant_info"]


@dataclass(frozen=True)
class VariantInfo:
    """What one value of ``ExtrapSGD(extrapolation=...)`` does.

    Attributes:
        name: the value users write.
        two_pass: backward at x_t, ``extrapolate()``, backward at x_{t+1/2}, ``step()``
            (True); or ``extrapolate()``, one backward, ``step()`` (False).
        needs_grad: ``extrapolate()`` reads ``.grad`` (the gradient at x_t).
        uses_gamma: the move is scaled by gamma (or gamma_ratio * lr).
        uses_noise: a random perturbation drawn from the optimizer's generator is added.
        description: one line for listings.
    """

    name: str
    two_pass: bool
    needs_grad: bool
    uses_gamma: bool
    uses_noise: bool
    description: str


_ALL = (
    VariantInfo("none", False, False, False, False, "plain SGD: nothing moves"),
    VariantInfo(
        "gradient", True, True, True, False, "extragradient: x - gamma * g(x), local gradient"
    ),
    VariantInfo("noise", False, False, False, True, "noise injection (SmoothOut-like): x + xi"),
    VariantInfo(
        "gradient+noise", True, True, True, True, "extragradient plus noise: x - gamma * g(x) + xi"
    ),
    VariantInfo(
        "past", False, False, True, False, "single-call extrapolation with the previous gradient"
    ),
    VariantInfo(
        "sam", True, True, True, False, "SAM ascent: x + gamma * g(x) / ||g(x)||, gamma the radius"
    ),
)

VARIANTS: MappingProxyType[str, VariantInfo] = MappingProxyType({v.name: v for v in _ALL})


def variant_info(name: str) -> VariantInfo:
    """Return the record for ``name``; ``ValueError`` listing the valid names otherwise."""
    try:
        return VARIANTS[name]
    except (KeyError, TypeError):
        valid = ", ".join(repr(n) for n in VARIANTS)
        raise ValueError(f"Invalid extrapolation={name!r}; choose one of {valid}") from None
