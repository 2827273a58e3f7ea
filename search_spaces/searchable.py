"""The registry of searchable names: what a sweep may vary and where it lands in the job.

A name in a spec's ``space`` is either one of :data:`SEARCHABLE_PARAMS` (``lr``, ``gamma_ratio``
…) or ``workload.<option>``, an option of the job's workload (checked against the workload's
options model when the spec is validated).

Example:
    >>> get_searchable("warmup_epochs").path
    'schedule.warmup_epochs'
    >>> get_searchable("workload.hidden_size").path
    'workload_options.hidden_size'
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from search_spaces.errors import shorten
from trainers.optim.variants import VARIANTS

__all__ = [
    "SEARCHABLE_PARAMS",
    "WORKLOAD_PREFIX",
    "ParamKind",
    "SearchableParam",
    "UnknownSearchableError",
    "get_searchable",
    "searchable_names",
]

ParamKind = Literal["float", "int", "categorical"]
WORKLOAD_PREFIX = "workload."
_ANY_KIND: tuple[ParamKind, ...] = ("float", "int", "categorical")
_NUMBER: tuple[ParamKind, ...] = ("float", "int", "categorical")
_CHOICE: tuple[ParamKind, ...] = ("categorical",)


@dataclass(frozen=True)
class SearchableParam:
    """One name a sweep may search over.

    Attributes:
        name: the key used in a spec's ``space``.
        path: dotted location in :class:`trainers.config.TrainJobConfig`.
        description: what the value means, for the spec reference and ``--help``.
        kinds: the parameter types that make sense for it (a flag is only ``categorical``).
    """

    name: str
    path: str
    description: str
    kinds: tuple[ParamKind, ...] = _NUMBER

    @property
    def path_parts(self) -> tuple[str, ...]:
        """``path`` split at the dots."""
        return tuple(self.path.split("."))


class UnknownSearchableError(ValueError):
    """A name that is neither registered nor ``workload.<option>``."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(
            f"{shorten(name)} is not a searchable name; use one of: "
            f"{', '.join(searchable_names())}, "
            f"or {WORKLOAD_PREFIX}<option> for an option of the workload"
        )

    def __reduce__(self) -> tuple[type[UnknownSearchableError], tuple[str]]:
        return (UnknownSearchableError, (self.name,))


_PARAMS = (
    SearchableParam("lr", "optimizer.lr", "base learning rate (before linear scaling)"),
    SearchableParam("momentum", "optimizer.momentum", "heavy-ball momentum μ"),
    SearchableParam("nesterov", "optimizer.nesterov", "Nesterov momentum (needs μ > 0)", _CHOICE),
    SearchableParam("weight_decay", "optimizer.weight_decay", "L2 weight decay"),
    SearchableParam(
        "extrapolation",
        "optimizer.extrapolation",
        f"variant: {', '.join(VARIANTS)}",
        _CHOICE,
    ),
    SearchableParam("gamma", "optimizer.gamma", "absolute extrapolation step (SAM: the radius)"),
    SearchableParam("gamma_ratio", "optimizer.gamma_ratio", "gamma = gamma_ratio · lr"),
    SearchableParam("noise", "optimizer.noise", "noise kind: gaussian or uniform", _CHOICE),
    SearchableParam("noise_std", "optimizer.noise_std", "σ of the injected noise"),
    SearchableParam(
        "extrapolation_momentum",
        "optimizer.extrapolation_momentum",
        "extrapolate along g + μ·buf instead of g",
        _CHOICE,
    ),
    SearchableParam("trust_coefficient", "optimizer.trust_coefficient", "LARS trust coefficient"),
    SearchableParam("warmup_epochs", "schedule.warmup_epochs", "linear LR warmup length (epochs)"),
    SearchableParam(
        "decay", "schedule.decay", "LR decay: constant, multistep, cosine, polynomial", _CHOICE
    ),
    SearchableParam(
        "milestones", "schedule.milestones", "multistep: fractions of the run (lists)", _CHOICE
    ),
    SearchableParam("decay_factor", "schedule.decay_factor", "multistep: lr *= this"),
    SearchableParam(
        "gamma_schedule",
        "gamma_schedule.kind",
        "how gamma moves: follow_lr, constant, cosine, linear",
        _CHOICE,
    ),
    SearchableParam(
        "gamma_final_fraction",
        "gamma_schedule.final_fraction",
        "cosine/linear gamma schedule: final gamma as a fraction of the first",
    ),
    SearchableParam(
        "second_batch", "second_batch", "second gradient on the same or a fresh batch", _CHOICE
    ),
    SearchableParam(
        "extrapolation_scope",
        "extrapolation_scope",
        "local (per-worker gradient) or global (all-reduced) extrapolation",
        _CHOICE,
    ),
)

SEARCHABLE_PARAMS: MappingProxyType[str, SearchableParam] = MappingProxyType(
    {param.name: param for param in _PARAMS}
)
"""The registered names, in documentation order (``workload.<option>`` is resolved apart)."""


def searchable_names() -> list[str]:
    """The registered names, in documentation order."""
    return list(SEARCHABLE_PARAMS)


def get_searchable(name: str) -> SearchableParam:
    """Look up a searchable name.

    Args:
        name: a registered name or ``workload.<option>`` (the option is not checked here; the
            spec checks it against the workload's options model).

    Raises:
        UnknownSearchableError: the name is neither; the message lists the valid ones.
    """
    if name in SEARCHABLE_PARAMS:
        return SEARCHABLE_PARAMS[name]
    option = name.removeprefix(WORKLOAD_PREFIX)
    if name.startswith(WORKLOAD_PREFIX) and option.isidentifier():
        return SearchableParam(
            name, f"workload_options.{option}", f"workload option {option!r}", _ANY_KIND
        )
    raise UnknownSearchableError(name)
