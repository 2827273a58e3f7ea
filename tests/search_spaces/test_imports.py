"""search_spaces stays light: no torch, Ray or FastAPI when validating a spec."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]

SCRIPT = """
import sys
from pathlib import Path
import search_spaces
spec = search_spaces.load_spec(Path("examples/mnist1d-cpu.yaml"))
search_spaces.load_spec({"name": "x", "preset": "extrap-paper",
                         "job": {"workload": "mnist1d", "global_batch_size": 512, "epochs": 3}})
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {"torch", "ray", "fastapi", "optuna"})
print(",".join(heavy))
"""


def test_validating_a_spec_imports_no_heavy_package() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, check=True
    )

    assert result.stdout.strip() == ""
