"""Running a benchmark script as the smoke tests do: a subprocess, its JSON on stdout."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = ROOT / "benchmarks"


def clean_env() -> dict[str, str]:
    """The test session's environment without its Ray: a benchmark starts its own."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")
        and not key.startswith("EXTRAP_")
    }
    env["RAY_AUTH_MODE"] = "disabled"
    return env


def run_benchmark(script: str, *args: str, timeout: float) -> dict[str, Any]:
    """Run ``benchmarks/<script> *args``; it must exit 0 and print one JSON document."""
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args],
        cwd=ROOT,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-6000:]
    document: dict[str, Any] = json.loads(done.stdout)  # stdout holds the JSON and nothing else
    return document


def positive(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


def non_negative(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )
