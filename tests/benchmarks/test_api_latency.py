"""Smoke test of benchmarks/api_latency.py: it runs and reports every figure.

Runs ``--quick`` in a subprocess and checks the JSON's shape; speed is never asserted (a quick
run on a shared machine is noise; the full run reports the figures).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "api_latency.py"


def test_quick_run_reports_latency_percentiles() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--clients", "10"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(done.stdout)
    assert report["endpoint"] == "GET /v1/sweeps/{id}"
    assert report["clients"] == 10
    assert report["requests"] > 0 and report["errors"] == 0
    for key in ("p50_ms", "p90_ms", "p99_ms", "max_ms", "throughput_rps"):
        assert math.isfinite(report[key]) and report[key] > 0, key
    assert report["p50_ms"] <= report["p99_ms"] <= report["max_ms"]
