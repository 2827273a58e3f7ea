"""The API's import path stays light: no torch, Ray, MLflow or Optuna."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("torch", "ray", "mlflow", "optuna")


def test_importing_the_api_does_not_import_heavy_packages() -> None:
    code = (
        "import sys, json; import service.server.api.main; import service.cli.admin; "
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
