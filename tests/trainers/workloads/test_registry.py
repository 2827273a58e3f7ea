"""The workload registry: listing, lookup, option validation, plug-ins, the light import."""

from __future__ import annotations

import importlib
import pickle
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import trainers.workloads as workloads
from trainers.workloads import (
    BUILTIN_WORKLOADS,
    InvalidWorkloadOptionsError,
    MissingDataError,
    UnknownWorkloadError,
    WorkloadInfo,
    _registry,
    default_data_dir,
    get_workload_info,
    list_workloads,
    load_workload,
    validate_workload_options,
)

REPO_ROOT = Path(__file__).resolve().parents[3]
BUILTIN_NAMES = [
    "lstm-ptb",
    "lstm-wikitext2",
    "mnist1d",
    "resnet20-cifar10",
    "resnet20-cifar100",
    "transformer-mt",
]


def test_lists_the_builtin_workloads_sorted() -> None:
    assert [info.name for info in list_workloads()][: len(BUILTIN_NAMES)] == BUILTIN_NAMES


@pytest.mark.parametrize("name", BUILTIN_NAMES)
def test_builtin_info_is_consistent(name: str) -> None:
    info = get_workload_info(name)
    assert info.name == name
    assert (info.metric, info.metric_mode) in {
        ("accuracy", "max"),
        ("perplexity", "min"),
        ("bleu", "max"),
    }
    for preset in (info.cpu_defaults, info.gpu_defaults):
        assert preset is not None
        assert validate_workload_options(name, preset) == dict(preset)
    assert info.options_model.model_config.get("extra") == "forbid"
    info.options_model()  # every field has a default


@pytest.mark.parametrize("name", BUILTIN_NAMES)
def test_builtin_factory_points_at_a_workload_class_of_that_info(name: str) -> None:
    info = get_workload_info(name)
    module_name, _, attribute = info.factory.partition(":")
    workload_class = getattr(importlib.import_module(module_name), attribute)
    assert issubclass(workload_class, workloads.Workload)
    assert workload_class.info is info


@pytest.mark.parametrize(
    ("name", "fixed"),
    [
        ("mnist1d", {"num_samples", "seed", "validation_size", "validation_seed"}),
        ("resnet20-cifar10", {"validation_size", "validation_seed"}),
        ("resnet20-cifar100", {"validation_size", "validation_seed"}),
        ("lstm-ptb", set()),  # its splits are files
        ("lstm-wikitext2", set()),
        ("transformer-mt", set()),
    ],
)
def test_fixed_options_are_the_options_that_define_the_data(name: str, fixed: set[str]) -> None:
    info = get_workload_info(name)
    assert set(info.fixed_options) == fixed
    assert set(info.fixed_options) <= set(info.options_model.model_fields)


def test_fixed_options_must_be_options() -> None:
    info = BUILTIN_WORKLOADS["mnist1d"]
    with pytest.raises(ValueError, match=r"fixed_options \['valid_size'\] are not options"):
        WorkloadInfo(**{**info.__dict__, "fixed_options": ("seed", "valid_size")})


def test_unknown_workload_error_lists_the_registered_names() -> None:
    with pytest.raises(UnknownWorkloadError) as caught:
        get_workload_info("resnet50-imagenet")
    assert isinstance(caught.value, KeyError)
    assert isinstance(caught.value, ValueError)
    message = str(caught.value)
    assert "'resnet50-imagenet'" in message
    for name in BUILTIN_NAMES:
        assert name in message


@pytest.mark.parametrize(
    "error",
    [
        UnknownWorkloadError("nope", ["mnist1d"]),
        InvalidWorkloadOptionsError("mnist1d", [("hidden", "too small")]),
        MissingDataError("lstm-ptb", Path("/data"), ["ptb/ptb.test.txt"], "somewhere"),
    ],
)
def test_errors_survive_pickling_between_processes(error: Exception) -> None:
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error) and str(copy) == str(error)


def test_validation_fills_in_defaults() -> None:
    options = validate_workload_options("mnist1d", {"model": "cnn"})
    assert options == {**BUILTIN_WORKLOADS["mnist1d"].options_model().model_dump(), "model": "cnn"}


@pytest.mark.parametrize(
    ("name", "options", "named"),
    [
        ("mnist1d", {"num_sample": 1000}, "num_sample"),
        ("mnist1d", {"num_samples": 10}, "num_samples"),
        ("mnist1d", {"model": "resnet"}, "model"),
        ("resnet20-cifar10", {"width_multiplier": 0}, "width_multiplier"),
        ("lstm-ptb", {"tie_weights": True, "hidden_size": 100}, "embedding_size"),
        ("transformer-mt", {"d_model": 100, "num_heads": 8}, "num_heads"),
    ],
)
def test_invalid_options_name_the_option(name: str, options: dict[str, object], named: str) -> None:
    with pytest.raises(InvalidWorkloadOptionsError) as caught:
        validate_workload_options(name, options)
    assert isinstance(caught.value, ValueError)
    assert name in str(caught.value)
    assert named in str(caught.value)


def test_load_workload_validates_before_importing() -> None:
    with pytest.raises(InvalidWorkloadOptionsError, match="hidden"):
        load_workload("mnist1d", {"hidden": -1})


def test_load_workload_builds_the_class_with_the_options_model() -> None:
    workload = load_workload("mnist1d", {"num_samples": 1000, "model": "cnn"})
    assert type(workload).__name__ == "MNIST1DWorkload"
    assert workload.options == BUILTIN_WORKLOADS["mnist1d"].options_model(
        num_samples=1000, model="cnn"
    )


def test_light_import_does_not_import_torch() -> None:
    code = textwrap.dedent(
        """
        import sys
        import trainers.workloads
        trainers.workloads.list_workloads()
        trainers.workloads.validate_workload_options("transformer-mt", {"d_model": 64})
        heavy = sorted(m for m in ("torch", "sacrebleu", "mnist1d") if m in sys.modules)
        assert not heavy, heavy
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


def test_heavy_names_load_on_first_access() -> None:
    from trainers.workloads._base import Workload, to_device

    assert workloads.Workload is Workload
    assert workloads.to_device is to_device
    with pytest.raises(AttributeError):
        _ = workloads.NoSuchThing


def test_default_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EXTRAP_DATA_DIR", str(tmp_path))
    assert default_data_dir() == tmp_path
    monkeypatch.delenv("EXTRAP_DATA_DIR")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_data_dir() == tmp_path / ".cache" / "extrap-tune" / "data"


# --- plug-ins through a real dist-info directory on sys.path ---------------------------------
# The plug-in is the complete example of docs/workloads.md, module for module.

_DOCS = (REPO_ROOT / "docs" / "workloads.md").read_text(encoding="utf-8")
_PLUGIN_MODULES = {
    match.group(1): match.group(0)
    for match in re.finditer(r"^# (extrap_blobs/\w+\.py):.*?(?=^```)", _DOCS, re.M | re.S)
}
_BAD_MODULE = """
from trainers.workloads import WorkloadInfo
from extrap_blobs.info import INFO

SHADOW = WorkloadInfo(**{**INFO.__dict__, "name": "mnist1d"})
NOT_AN_INFO = {"name": "dict-plugin"}
"""

_ENTRY_POINTS = """
[extrap_tune.workloads]
blobs = extrap_blobs.info:INFO
mnist1d = extrap_blobs.bad:SHADOW
dict-plugin = extrap_blobs.bad:NOT_AN_INFO
broken = extrap_demo_plugin_missing:INFO
"""


def test_the_docs_show_both_plugin_modules() -> None:
    assert set(_PLUGIN_MODULES) == {"extrap_blobs/info.py", "extrap_blobs/workload.py"}
    assert 'blobs = "extrap_blobs.info:INFO"' in _DOCS


@pytest.fixture
def plugin_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    package = tmp_path / "extrap_blobs"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for relative, source in _PLUGIN_MODULES.items():
        (tmp_path / relative).write_text(source)
    (package / "bad.py").write_text(_BAD_MODULE)
    dist_info = tmp_path / "extrap_blobs-0.1.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: extrap-blobs\nVersion: 0.1\n")
    (dist_info / "entry_points.txt").write_text(_ENTRY_POINTS)
    monkeypatch.syspath_prepend(str(tmp_path))
    _registry._plugin_workloads.cache_clear()
    yield
    _registry._plugin_workloads.cache_clear()
    for module in [name for name in sys.modules if name.split(".")[0] == "extrap_blobs"]:
        sys.modules.pop(module)


@pytest.mark.usefixtures("plugin_on_path")
def test_entry_point_plugin_is_listed_and_loaded(tmp_path: Path) -> None:
    with pytest.warns(UserWarning) as warned:
        info = get_workload_info("blobs")
    assert isinstance(info, WorkloadInfo)
    assert [info.name for info in list_workloads()] == [*BUILTIN_NAMES, "blobs"]
    workload = load_workload("blobs", {"width": 3, "num_samples": 200})
    hidden = next(workload.build_model().children())
    assert isinstance(hidden, torch.nn.Linear) and hidden.out_features == 3
    splits = workload.load_splits(tmp_path)
    assert [len(split) for split in splits] == [160, 40, 50]
    model = workload.build_model()
    before = workload.evaluate(model, splits.validation, device="cpu", batch_size=8)
    assert set(before) == {"loss", "accuracy"}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(30):
        optimizer.zero_grad()
        loss, _ = workload.loss(model, splits.train.take(torch.randperm(len(splits.train))[:32]))
        torch.autograd.backward(loss)
        optimizer.step()
    after = workload.evaluate(model, splits.validation, device="cpu", batch_size=8)
    assert after["loss"] < before["loss"]
    messages = "\n".join(str(warning.message) for warning in warned)
    assert "replace the built-in workload 'mnist1d'" in messages
    assert "not a WorkloadInfo" in messages
    assert "extrap_demo_plugin_missing" in messages and "failed to load" in messages


@pytest.mark.usefixtures("plugin_on_path")
def test_a_plugin_cannot_replace_a_builtin() -> None:
    with pytest.warns(UserWarning) as warned:
        info = get_workload_info("mnist1d")
    assert info is BUILTIN_WORKLOADS["mnist1d"]
    assert any("replace the built-in" in str(warning.message) for warning in warned)
