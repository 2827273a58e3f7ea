"""Training workloads: a model, its data in three splits, its loss and its metric.

Importing this package is light (pydantic only): listing workloads and validating their options
never import torch. The torch-backed names (:class:`Workload`, :class:`ClassificationWorkload`,
:class:`TensorSplit`, :class:`Splits`, :func:`stratified_split`, :func:`evaluation_mode`,
:func:`to_device`, ``Batch``) are loaded on first access. docs/workloads.md describes the
built-in workloads and the plug-in interface.

Example:
    >>> from trainers.workloads import list_workloads, load_workload
    >>> [info.name for info in list_workloads()][:3]
    ['lstm-ptb', 'lstm-wikitext2', 'mnist1d']
    >>> workload = load_workload("mnist1d", {"num_samples": 1000})  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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
    # The torch-backed names are imported on first use, keeping `import trainers.workloads` light.
    # All through _base (which re-exports _data's): the one lazy import the import contracts allow.
    if name in _HEAVY:
        from trainers.workloads import _base

        return getattr(_base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
