"""The console script's quick exit (``service.cli.main.run``) once torch or Ray is loaded."""

from __future__ import annotations

import subprocess
import sys

# A stand-in for torch in sys.modules (the exit path is what is under test, not torch), an idle
# concurrent.futures worker (a non-daemon thread that only threading's exit hooks stop: Tune and
# MLflow leave such workers), an exit handler, and output that must not be lost.
_SCRIPT = """
import atexit, concurrent.futures, sys, types
sys.modules.setdefault("torch", types.ModuleType("torch"))
pool = concurrent.futures.ThreadPoolExecutor(1)
pool.submit(int).result()
atexit.register(lambda: print("exit handler ran", flush=True))
print("before", end="")
from service.cli.main import run
run(sys.argv[1:])
"""


def test_the_quick_exit_stops_idle_workers_runs_exit_handlers_and_keeps_the_output() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT, "no-such-command"],
        capture_output=True,
        text=True,
        timeout=60,  # the exit used to wait forever for the idle worker
    )
    assert done.returncode == 2, done.stderr  # the usage error's code, kept
    assert done.stdout.startswith("before") and "exit handler ran" in done.stdout
    assert "No such command" in done.stderr
