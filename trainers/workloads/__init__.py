"""Training workloads: a model, its data in three splits, its loss and its metric.

Importing this package is light: every name is loaded on first access (PEP 562). Listing
workloads and validating their options import pydantic, never torch; the torch-backed names
(:class:`Workload`, :class:`ClassificationWorkload`, :class:`TensorSplit`, :class:`Splits`,
:func:`stratified_split`, :func:`evaluation_mode`, :func:`to_device`, ``Batch``) import torch;
and a torch-only submodule such as :mod:`trainers.workloads._resnet` loads neither pydantic
nor numpy. docs/workloads.md describes the built-in workloads and the plug-in interface.

Example:
    >>> from trainers.workloads import list_workloads, load_workload
    >>> [info.name for info in list_workloads()][:3]
    ['lstm-ptb', 'lstm-wikitext2', 'mnist1d']
    >>> workload = load_workload("mnist1d", {"num_samples": 1000})  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trainers.workloads._base import (
        Batch,
        ClassificationWorkload,
        Splits,
        TensorSplit,
        Workload,
        evaluation_mode,
        stratified_split,
        to_device,
    )
    from trainers.workloads._errors import (
        InvalidWorkloadOptionsError,
        MissingDataError,
        UnknownWorkloadError,
    )
    from trainers.workloads._options import (
        LSTMPTBOptions,
        LSTMWikiText2Options,
        MNIST1DOptions,
        ResNetCIFAROptions,
        TransformerMTOptions,
    )
    from trainers.workloads._registry import (
        BUILTIN_WORKLOADS,
        ENTRY_POINT_GROUP,
        WorkloadInfo,
        default_data_dir,
        get_workload_info,
        list_workloads,
        load_workload,
        validate_workload_options,
    )

__all__ = [
    "BUILTIN_WORKLOADS",
    "ENTRY_POINT_GROUP",
    "Batch",
    "ClassificationWorkload",
    "InvalidWorkloadOptionsError",
    "LSTMPTBOptions",
    "LSTMWikiText2Options",
    "MNIST1DOptions",
    "MissingDataError",
    "ResNetCIFAROptions",
    "Splits",
    "TensorSplit",
    "TransformerMTOptions",
    "UnknownWorkloadError",
    "Workload",
    "WorkloadInfo",
    "default_data_dir",
    "evaluation_mode",
    "get_workload_info",
    "list_workloads",
    "load_workload",
    "stratified_split",
    "to_device",
    "validate_workload_options",
]

_ERRORS = frozenset({"InvalidWorkloadOptionsError", "MissingDataError", "UnknownWorkloadError"})
_OPTIONS = frozenset(
    {
        "LSTMPTBOptions",
        "LSTMWikiText2Options",
        "MNIST1DOptions",
        "ResNetCIFAROptions",
        "TransformerMTOptions",
    }
)
_REGISTRY = frozenset(
    {
        "BUILTIN_WORKLOADS",
        "ENTRY_POINT_GROUP",
        "WorkloadInfo",
        "default_data_dir",
        "get_workload_info",
        "list_workloads",
        "load_workload",
        "validate_workload_options",
    }
)
_HEAVY = frozenset(
    {
        "Batch",
        "ClassificationWorkload",
        "Splits",
        "TensorSplit",
        "Workload",
        "evaluation_mode",
        "stratified_split",
        "to_device",
    }
)


def __getattr__(name: str) -> Any:
    # PEP 562: every name is imported on first use. The registry and the options need pydantic
    # only; the torch-backed names come through _base (the one lazy import the import contracts
    # allow). Importing a submodule (``trainers.workloads._resnet``, torch only) thus loads
    # neither pydantic nor numpy.
    if name in _ERRORS:
        from trainers.workloads import _errors

        return getattr(_errors, name)
    if name in _OPTIONS:
        from trainers.workloads import _options

        return getattr(_options, name)
    if name in _REGISTRY:
        from trainers.workloads import _registry

        return getattr(_registry, name)
    if name in _HEAVY:
        from trainers.workloads import _base

        return getattr(_base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
