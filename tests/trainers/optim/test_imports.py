"""What importing the optimizer package loads: the registry needs no torch, the optimizer no
pydantic, numpy, yaml or other part of the project."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
OPTIM = REPO / "trainers" / "optim"

# The optimizer package may use torch and the standard library, nothing else.
NOT_FOR_THE_OPTIMIZER = (
    "pydantic",
    "numpy",
    "yaml",
    "trainers.config",
    "trainers.workloads",
    "search_spaces",
    "service",
)

_USE_THE_OPTIMIZER = """
import torch
from trainers.optim import (
    VARIANTS, ExtrapSGD, GammaScheduler, build_lr_scheduler, effective_gamma, linear_scaled_lr
)
model = torch.nn.Linear(3, 1)
opt = ExtrapSGD(model.parameters(), lr=linear_scaled_lr(0.1, 512, 256), gamma=0.05)
lr_scheduler = build_lr_scheduler(opt, steps_per_epoch=2, epochs=2, decay="cosine")
gamma_scheduler = GammaScheduler(opt, "linear", total_steps=4)
for _ in range(2):
    model(torch.randn(4, 3)).sum().backward()
    opt.extrapolate()
    opt.zero_grad()
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    lr_scheduler.step()
    gamma_scheduler.step()
assert effective_gamma(opt.param_groups[0]) < 0.05
opt.state_dict()
"""


# The same use of torch's own SGD and LambdaLR: what torch loads by itself (numpy, lazily).
_USE_TORCH_SGD = """
import torch
model = torch.nn.Linear(3, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
lr_scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
for _ in range(2):
    opt.zero_grad()
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    lr_scheduler.step()
opt.state_dict()
"""


def _modules_after(code: str, *, baseline: str = "") -> list[str]:
    """The modules that running ``code`` in a fresh interpreter adds after ``baseline`` ran."""
    probe = (
        "import json, sys\n"
        f"{baseline}\n"
        "before = set(sys.modules)\n"
        f"{code}\n"
        "print(json.dumps(sorted(set(sys.modules) - before)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True
    )
    modules: list[str] = json.loads(result.stdout.strip().splitlines()[-1])
    return modules


def _loaded(modules: list[str], package: str) -> list[str]:
    return [m for m in modules if m == package or m.startswith(f"{package}.")]


@pytest.mark.parametrize("statement", ["import trainers.optim.variants", "import trainers.config"])
def test_variant_registry_and_job_config_import_without_torch(statement: str) -> None:
    assert _loaded(_modules_after(statement), "torch") == []


def test_optimizer_and_schedules_load_only_torch_and_the_standard_library() -> None:
    # torch itself loads numpy: count only what the optimizer package adds beyond torch's SGD.
    modules = _modules_after(_USE_THE_OPTIMIZER, baseline=_USE_TORCH_SGD)
    assert "trainers.optim.extrap_sgd" in modules and "trainers.optim.schedules" in modules
    for package in NOT_FOR_THE_OPTIMIZER:
        assert _loaded(modules, package) == [], package


def _imported_names(path: Path) -> set[str]:
    """Top-level names of every module ``path`` imports, function-level imports included."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", sorted(OPTIM.glob("*.py")), ids=lambda p: p.name)
def test_optimizer_sources_import_only_torch_the_standard_library_and_themselves(
    path: Path,
) -> None:
    for name in _imported_names(path):
        top = name.split(".")[0]
        allowed = (
            top in sys.stdlib_module_names
            or top in ("__future__", "torch")
            or name == "trainers.optim"
            or name.startswith("trainers.optim.")
        )
        assert allowed, f"{path.name} imports {name}"
