"""Training workloads: a model, its data, its loss and its test metric.

Importing this package is light (pydantic only): listing workloads and validating their options
never import torch. :class:`Workload` and :func:`to_device` are loaded on first access.

Example:
    >>> from trainers.workloads import list_workloads, load_workload
    >>> [info.name for info in list_workloads()][:2]
    ['lstm-ptb', 'mnist1d']
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
    from trainers.workloads._base import Batch, Workload, to_device

__all__ = [
    "BUILTIN_WORKLOADS",
    "ENTRY_POINT_GROUP",
    "Batch",
    "InvalidWorkloadOptionsError",
    "LSTMPTBOptions",
    "MNIST1DOptions",
    "MissingDataError",
    "ResNetCIFAROptions",
    "TransformerMTOptions",
    "UnknownWorkloadError",
    "Workload",
    "WorkloadInfo",
    "default_data_dir",
    "get_workload_info",
    "list_workloads",
    "load_workload",
    "to_device",
    "validate_workload_options",
]

_HEAVY = frozenset({"Batch", "Workload", "to_device"})


def __getattr__(name: str) -> Any:
    # The torch-backed names are imported on first use, keeping `import trainers.workloads` light.
    if name in _HEAVY:
        from trainers.workloads import _base

        return getattr(_base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
