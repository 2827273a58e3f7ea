"""Smoke test of benchmarks/gpu_check.sh and gpu_check.py on the CPU (``--device cpu --quick``).

The GPU machines carry Python and torch alone, so the script may import nothing of the project
that needs pydantic, numpy, Ray, MLflow or Optuna; that is checked here, in this environment
where those are installed, by what importing the script loads.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ._run import BENCHMARKS, ROOT, clean_env, positive

# Modules the GPU check must not load (torch may load numpy by itself where it is installed,
# so numpy is judged by the project modules that need it).
FORBIDDEN = (
    "pydantic",
    "ray",
    "mlflow",
    "optuna",
    "yaml",
    "trainers.config",
    "trainers.run",
    "trainers.checkpoint",
    "trainers.workloads._options",
    "trainers.workloads._registry",
    "trainers.workloads._base",
    "trainers.workloads.resnet_cifar",
)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("gpu-check-out")
    env = {**clean_env(), "OUT": str(out), "PYTHON": sys.executable}
    done = subprocess.run(
        ["bash", str(BENCHMARKS / "gpu_check.sh"), "--device", "cpu", "--quick"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert done.stdout == ""  # with OUT set, the JSON goes to $OUT/gpu_check.json
    document: dict[str, Any] = json.loads((out / "gpu_check.json").read_text())
    return document


def test_top_level(report: dict[str, Any]) -> None:
    assert report["benchmark"] == "gpu_check"
    assert report["quick"] is True
    assert report["machine"]["device"] == "cpu"
    assert report["skipped"] == []
    assert positive(report["max_rss_mib"])
    assert isinstance(report["misses"], list)


def test_optimizer_ratios(report: dict[str, Any]) -> None:
    resnet = report["optimizer"]["resnet20"]
    assert resnet["params"] > 200_000
    ratios = resnet["ratio_vs_torch_sgd_foreach"]
    assert set(ratios) == {"none", "gradient", "noise", "gradient+noise", "past", "sam"}
    for settings in ratios.values():
        assert set(settings) == {"foreach_true", "foreach_false", "foreach_none"}
        assert all(positive(value) for value in settings.values())


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_training_throughput(report: dict[str, Any], precision: str) -> None:
    figures = report["training"][precision]
    configs = {"plain_sgd", "plain_none", "product_none", "plain_gradient", "product_gradient"}
    assert set(figures["images_per_second"]) == configs
    assert all(positive(v) for v in figures["images_per_second"].values())
    assert positive(figures["throughput_ratios"]["product_none_vs_plain_none"])
    assert positive(figures["throughput_ratios"]["product_gradient_vs_plain_gradient"])
    # on a CPU there is no CUDA allocator to ask
    assert all(m["peak_mib"] is None for m in figures["peak_memory"].values())


def test_imports_torch_and_the_torch_only_trainers_alone() -> None:
    code = (
        "import json, runpy, sys\n"
        f"runpy.run_path({str(BENCHMARKS / 'gpu_check.py')!r}, run_name='gpu_check')\n"
        f"print(json.dumps([m for m in {FORBIDDEN!r} if m in sys.modules]))\n"
    )
    env = {**clean_env(), "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=os.path.dirname(ROOT),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_shell_script_is_executable() -> None:
    assert os.access(Path(BENCHMARKS / "gpu_check.sh"), os.X_OK)
