"""What the benchmarks of issue 12 share: stdout for the JSON alone, the machine, the data.

Standard library only at import time (``gpu_check.py`` does not use it; the sweep benchmarks
import it without torch).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
DATA_DIR = REPO / ".cache" / "bench-data"
"""Generated benchmark data (ignored by git): MNIST-1D is generated once, then read back."""

RAY_ENV = {
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5",
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
}
"""Every Ray the benchmarks start runs with these (a private, local-only Ray; fast polling)."""


@contextlib.contextmanager
def json_stdout() -> Iterator[IO[str]]:
    """Yield a stream on the real stdout and send everything else written to fd 1 to stderr.

    Ray, torch and child processes print to stdout; the JSON document must be alone there.
    """
    sys.stdout.flush()
    stream = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    try:
        yield stream
    finally:
        stream.close()


def emit(document: dict[str, Any], stream: IO[str]) -> None:
    """Write ``document`` (with the command line) as the one JSON document of the run."""
    document.setdefault("command", shlex.join(getattr(sys, "orig_argv", [PYTHON, *sys.argv])))
    json.dump(document, stream, indent=2, default=str)
    stream.write("\n")
    stream.flush()


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a benchmark's child process: no outside Ray, the repo importable."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN")}
    env.pop("RAY_AUTH_TOKEN_PATH", None)
    env.update(RAY_ENV)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine() -> dict[str, Any]:
    """This machine, as benchmarks/results/README.md records it."""
    cpu_model = None
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    memory_gib = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_gib = int(line.split()[1]) / 1024**2
                break
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model,
        "memory_gib": memory_gib,
        "load_average_at_start": os.getloadavg(),
        "python": platform.python_version(),
        "torch": _version("torch"),
        "ray": _version("ray"),
        "platform": platform.platform(),
    }


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def ensure_mnist1d(num_samples: int, data_dir: Path = DATA_DIR) -> Path:
    """Generate (once) and cache MNIST-1D with ``num_samples`` in ``data_dir``, in a subprocess.

    The product's workload generates and caches it; the benchmarks then measure with the data
    cached, as a sweep on a machine that has run before would.
    """
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from trainers.workloads import load_workload\n"
        "load_workload('mnist1d', {'num_samples': int(sys.argv[1])})"
        ".load_splits(Path(sys.argv[2]))\n"
    )
    subprocess.run(
        [PYTHON, "-c", code, str(num_samples), str(data_dir)],
        env=child_env(),
        check=True,
        stdout=sys.stderr,
    )
    return data_dir
