"""The workload registry: listing, lookup, option validation, plug-ins, the light import."""

from __future__ import annotations

import importlib
import pickle
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

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
BUILTIN_NAMES = ["lstm-ptb", "mnist1d", "resnet20-cifar10", "resnet20-cifar100", "transformer-mt"]


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

_PLUGIN_MODULE = """
from __future__ import annotations

from pydantic import BaseModel, ConfigDict

import torch
from trainers.workloads import WorkloadInfo
from trainers.workloads._base import ClassificationWorkload


class DemoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    width: int = 4


class DemoWorkload(ClassificationWorkload[DemoOptions]):
    def build_model(self):
        return torch.nn.Linear(3, self.options.width)

    def load_datasets(self, data_dir):
        raise NotImplementedError


INFO = WorkloadInfo(
    name="demo-plugin",
    description="a plug-in workload",
    metric="accuracy",
    metric_mode="max",
    options_model=DemoOptions,
    cpu_defaults={"width": 2},
    gpu_defaults=None,
    expected_files=(),
    factory="extrap_demo_plugin:DemoWorkload",
)
DemoWorkload.info = INFO
SHADOW = WorkloadInfo(**{**INFO.__dict__, "name": "mnist1d"})
NOT_AN_INFO = {"name": "dict-plugin"}
"""

_ENTRY_POINTS = """
[extrap_tune.workloads]
demo-plugin = extrap_demo_plugin:INFO
mnist1d = extrap_demo_plugin:SHADOW
dict-plugin = extrap_demo_plugin:NOT_AN_INFO
broken = extrap_demo_plugin_missing:INFO
"""


@pytest.fixture
def plugin_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    (tmp_path / "extrap_demo_plugin.py").write_text(_PLUGIN_MODULE)
    dist_info = tmp_path / "extrap_demo_plugin-0.1.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: extrap-demo-plugin\nVersion: 0.1\n"
    )
    (dist_info / "entry_points.txt").write_text(_ENTRY_POINTS)
    monkeypatch.syspath_prepend(str(tmp_path))
    _registry._plugin_workloads.cache_clear()
    yield
    _registry._plugin_workloads.cache_clear()
    sys.modules.pop("extrap_demo_plugin", None)


@pytest.mark.usefixtures("plugin_on_path")
def test_entry_point_plugin_is_listed_and_loaded() -> None:
    with pytest.warns(UserWarning) as warned:
        info = get_workload_info("demo-plugin")
    assert isinstance(info, WorkloadInfo)
    assert [info.name for info in list_workloads()] == [*BUILTIN_NAMES, "demo-plugin"]
    workload = load_workload("demo-plugin", {"width": 3})
    assert workload.build_model().out_features == 3
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
