"""Benchmark: per trial, the time from its start to its first optimizer step, split into parts.

Run ``.venv/bin/python benchmarks/trial_startup.py`` (about 2 minutes on 2 cores) or with
``--quick`` (a smoke run of about a minute whose figures are noise). It prints one JSON document
on stdout (everything else goes to stderr) and exits 0 whatever the figures: targets are
reported beside them, never asserted.

``sweep`` -- a sweep of ``--trials`` (8) one-epoch trials of the same 2-worker job, run one at a
time by the product's own code path (``service.runtime.local.run_here``, what ``extrap run``
calls) on a fresh local Ray started here (``ray_init_seconds``), with the data cached on disk
beforehand. The first trial is cold (its trainable actor, worker actors, process group and data
are new); the later ones are warm (the same actors, ``reset_config``). Per trial:

``startup_seconds``  the product's own figure (each trial's MLflow metric): from the driver's
                     ``on_trial_start`` to rank 0's first optimizer step.
``parts``            that interval split by the Ray task events of the trial's actors (the
                     state API, after the sweep; timestamps of submission and completion as the
                     submitting process records them; a part is null where Ray lost the
                     events, which happens to the last trial's when its actors are killed
                     before they flush -- flushed every 100 ms here, not every second):
                     cold -- ``trainable_actor_start`` (its creation task: placement, process
                     start, imports; before ``on_trial_start``, so outside startup_seconds),
                     ``tune_dispatch`` (on_trial_start -> Tune submits ``train``),
                     ``worker_actors_start`` (the TrainWorker creation tasks: processes,
                     ``import torch``), ``process_group_and_imports`` (``pid``, ``rendezvous``,
                     ``setup``: init_process_group, torch._dynamo, the trainers),
                     ``data_load_and_build`` (rank 0's ``start``: the splits from the cache file
                     into memory, model and optimizer), ``first_step`` (rank 0's ``run_epoch``
                     submitted -> its first step done) and ``other`` (the rest of
                     startup_seconds: driver and Tune glue in between);
                     warm -- ``reset`` (the previous trial's ``end`` and ``reset_config``,
                     before on_trial_start), ``tune_dispatch``, ``build`` (rank 0's ``start``),
                     ``first_step``, ``other``; and ``previous_trial_end_to_first_step`` (the
                     previous trial's last epoch returned -> this one's first step).
``data_load_seconds_derived``: the cold ``data_load_and_build`` minus the median warm ``build``.

``plain`` -- the baseline: the same job started ``--repeats`` (3) times as 2 plain
``torch.distributed`` processes (``subprocess``, gloo, one thread each): interpreter start,
``import torch``, ``init_process_group``, the data from the same cache file (numpy, plain
slicing), the model + DDP + ``torch.optim.SGD``, the first step. Medians over the repeats of the
slower rank's time from spawn to each mark.

``summary``: ``cold_trial_seconds`` (startup_seconds of trial 1), ``warm_trial_seconds_median``
(trials 2..), ``cold_from_trainable_submitted_seconds`` (trial 1 from its trainable's creation
task), the plain start's median, and the ratios of each to it. Targets (issue 12): warm <= 2 s,
the sweep's first trial <= 15 s.

Job: MNIST-1D (13,750 samples: 10,000 training, 1,000 validation, 2,750 test), the MLP
40-256-256-10, global batch 512 over 2 workers x 1 CPU, ``extrapolation: none``, lr searched
(TPE); ``--quick``: 2,000 samples, hidden 32, batch 200, 3 trials, 1 repeat.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import (
    DATA_DIR,
    PYTHON,
    RAY_ENV,
    child_env,
    emit,
    ensure_mnist1d,
    json_stdout,
    machine,
    median,
    ratio,
)

TARGETS = {"warm_trial_seconds_max": 2.0, "cold_trial_seconds_max": 15.0}
MNIST1D_SEED = 42  # the workload's default data seed: the cache file both starts read
PLAIN_MARKS = ("interpreter", "import_torch", "process_group", "data_load", "build", "first_step")


@dataclass(frozen=True)
class Setup:
    """The job and how much to measure."""

    num_samples: int = 13_750
    validation_size: int = 1_000
    hidden: int = 256
    global_batch_size: int = 512
    trials: int = 8
    repeats: int = 3
    lr: float = 0.1
    data_dir: str = str(DATA_DIR)

    def spec(self) -> dict[str, Any]:
        return {
            "version": 2,
            "name": "bench-trial-startup",
            "job": {
                "workload": "mnist1d",
                "workload_options": {
                    "num_samples": self.num_samples,
                    "hidden": self.hidden,
                    "validation_size": self.validation_size,
                },
                "data_dir": self.data_dir,
                "global_batch_size": self.global_batch_size,
                "workers": 2,
                "cpus_per_worker": 1,
                "epochs": 1,
                "optimizer": {"lr": self.lr, "momentum": 0.9, "extrapolation": "none"},
            },
            "space": {"lr": {"low": 0.01, "high": 0.2, "log": True}},
            "objective": {"metric": "val_accuracy", "mode": "max"},
            "search": {
                "num_trials": self.trials,
                "max_concurrent_trials": 1,
                "scheduler": "fifo",
                "seed": 0,
            },
        }


QUICK = {"num_samples": 2000, "validation_size": 160, "hidden": 32, "global_batch_size": 200}
QUICK_COUNTS = {"trials": 3, "repeats": 1}


# -- the plain torch.distributed start (baseline) --------------------------------------------


def plain_rank(argv: list[str]) -> int:
    """One rank of the plain start; writes its marks (``time.time()``) as JSON to ``--out``."""
    marks = {"interpreter": time.time()}
    parser = argparse.ArgumentParser()
    for name in ("--rank", "--port", "--num-samples", "--validation-size", "--hidden", "--batch"):
        parser.add_argument(name, type=int, required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)

    import torch

    marks["import_torch"] = time.time()
    import numpy as np
    import torch.distributed as dist
    import torch.nn.functional as F
    from torch import nn
    from torch.nn.parallel import DistributedDataParallel

    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{args.port}", rank=args.rank, world_size=2
    )
    marks["process_group"] = time.time()
    path = Path(args.data_dir, "mnist1d", f"mnist1d-{args.num_samples}-{MNIST1D_SEED}.npz")
    with np.load(path) as arrays:
        x, y = torch.from_numpy(arrays["x"]), torch.from_numpy(arrays["y"])
    x_train, y_train = x[: len(x) - args.validation_size], y[: len(y) - args.validation_size]
    x_train = (x_train - x_train.mean()) / x_train.std()
    marks["data_load"] = time.time()
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(x.shape[1], args.hidden),
        nn.ReLU(),
        nn.Linear(args.hidden, args.hidden),
        nn.ReLU(),
        nn.Linear(args.hidden, 10),
    )
    ddp = DistributedDataParallel(model)
    optimizer = torch.optim.SGD(ddp.parameters(), lr=0.1, momentum=0.9)
    marks["build"] = time.time()
    share = args.batch // 2
    rows = torch.randperm(len(y_train))[args.rank * share : (args.rank + 1) * share]
    optimizer.zero_grad(set_to_none=True)
    F.cross_entropy(ddp(x_train[rows]), y_train[rows]).backward()  # type: ignore[no-untyped-call]
    optimizer.step()
    marks["first_step"] = time.time()
    dist.destroy_process_group()
    Path(args.out).write_text(json.dumps(marks), encoding="utf-8")
    return 0


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def measure_plain(setup: Setup) -> dict[str, Any]:
    """``setup.repeats`` plain starts; per mark, the slower rank's seconds since spawn."""
    runs: list[dict[str, float]] = []
    for _ in range(setup.repeats):
        with tempfile.TemporaryDirectory(prefix="plain-start-") as tmp:
            port = _free_port()
            spawned = time.time()
            procs = [
                subprocess.Popen(
                    [
                        PYTHON,
                        __file__,
                        "--plain-rank",
                        *("--rank", str(rank), "--port", str(port)),
                        *("--num-samples", str(setup.num_samples)),
                        *("--validation-size", str(setup.validation_size)),
                        *("--hidden", str(setup.hidden), "--batch", str(setup.global_batch_size)),
                        *("--data-dir", setup.data_dir, "--out", f"{tmp}/rank{rank}.json"),
                    ],
                    env=child_env(OMP_NUM_THREADS="1"),
                    stdout=sys.stderr,
                )
                for rank in range(2)
            ]
            codes = [proc.wait(timeout=300) for proc in procs]
            if any(codes):
                raise RuntimeError(f"a plain rank failed: exit codes {codes}")
            ranks = [json.loads(Path(tmp, f"rank{r}.json").read_text()) for r in range(2)]
        runs.append({mark: max(r[mark] for r in ranks) - spawned for mark in PLAIN_MARKS})
    cumulative = {mark: median([run[mark] for run in runs]) for mark in PLAIN_MARKS}
    parts: dict[str, float | None] = {}
    previous = 0.0
    for mark in PLAIN_MARKS:
        value = cumulative[mark]
        parts[mark] = None if value is None else value - previous
        previous = value if value is not None else previous
    return {
        "repeats": setup.repeats,
        "start_to_first_step_seconds": cumulative["first_step"],
        "parts": parts,
        "seconds_since_spawn": runs,
    }


# -- the product's sweep ---------------------------------------------------------------------


def _tasks() -> list[dict[str, Any]]:
    import ray
    from ray.util.state import list_tasks

    # This process's Ray by its address: other Rays may run on the machine.
    address = ray.get_runtime_context().gcs_address
    found = list_tasks(address=address, detail=True, limit=10_000, raise_on_missing_output=False)
    return [task if isinstance(task, dict) else asdict(task) for task in found]


def _collect_tasks(expected_epochs: int, patience_s: float = 15.0) -> list[dict[str, Any]]:
    """The task events once every run_epoch call has its end recorded (they arrive late)."""
    deadline = time.monotonic() + patience_s
    while True:
        tasks = _tasks()
        done = [
            t
            for t in tasks
            if t["func_or_class_name"] == "TrainWorker.run_epoch" and t["end_time_ms"]
        ]
        if len(done) >= expected_epochs or time.monotonic() > deadline:
            return tasks
        time.sleep(1.0)


def _seconds(ms: float | None) -> float | None:
    return None if ms is None else ms / 1000.0


def _first_step_times(trial_root: Path) -> dict[str, float]:
    """``first_step_time`` of every trial, from the results Tune stored (``result.json``)."""
    found: dict[str, float] = {}
    for path in trial_root.glob("*/result.json"):
        for line in path.read_text(encoding="utf-8").splitlines():
            result = json.loads(line)
            if isinstance(result.get("first_step_time"), float):
                found[path.parent.name] = result["first_step_time"]
                break
    return found


class _Timeline:
    """The task events of one sweep, by actor and method, in submission order."""

    def __init__(self, tasks: list[dict[str, Any]]) -> None:
        self.tasks = sorted(tasks, key=lambda t: t["creation_time_ms"] or 0)
        self.pid_of_actor = {
            t["actor_id"]: t["worker_pid"]
            for t in self.tasks
            if t["type"] == "ACTOR_CREATION_TASK" and t["worker_pid"]
        }

    def calls(
        self, method: str, *, after: float, before: float, pid: int | None = None
    ) -> list[dict[str, Any]]:
        """Tasks of ``Class.method`` (``method`` may omit the class) submitted in the window."""
        out = []
        for task in self.tasks:
            name = task["func_or_class_name"] or ""
            if not (name == method or name.endswith(f".{method}")):
                continue
            submitted = _seconds(task["creation_time_ms"])
            if submitted is None or not after <= submitted <= before:
                continue
            if pid is not None and self.pid_of_actor.get(task["actor_id"]) != pid:
                continue
            out.append(task)
        return out


def _submitted(task: dict[str, Any] | None) -> float | None:
    return None if task is None else _seconds(task["creation_time_ms"])


def _span(task: dict[str, Any] | None) -> float | None:
    if task is None or task["end_time_ms"] is None:
        return None
    return (float(task["end_time_ms"]) - float(task["creation_time_ms"])) / 1000.0


def _first(tasks: list[dict[str, Any]]) -> dict[str, Any] | None:
    return tasks[0] if tasks else None


def _last_end(tasks: list[dict[str, Any]]) -> float | None:
    ends = [float(t["end_time_ms"]) for t in tasks if t["end_time_ms"]]
    return max(ends) / 1000.0 if ends else None


def _since(later: float | None, earlier: float | None) -> float | None:
    return None if later is None or earlier is None else later - earlier


def _trial_parts(
    timeline: _Timeline,
    *,
    started: float,
    first_step: float,
    previous_start: float,
    rank0_pid: int,
    cold: bool,
) -> dict[str, float | None]:
    """The parts of one trial's start (see the module docstring).

    ``started`` is the driver's on_trial_start; what happens before it (the trainable's
    creation, or the reset of a reused one) is searched from ``previous_start`` on.
    """
    train = _first(timeline.calls("train", after=started, before=first_step))
    start = _first(
        timeline.calls("TrainWorker.start", pid=rank0_pid, after=started, before=first_step)
    )
    epoch = _first(
        timeline.calls("TrainWorker.run_epoch", pid=rank0_pid, after=started, before=first_step)
    )
    parts: dict[str, float | None] = {}
    if cold:
        creations = timeline.calls("__init__", after=previous_start, before=started)
        trainable = [t for t in creations if "Trainable" in (t["func_or_class_name"] or "")]
        parts["trainable_actor_start"] = _span(_first(trainable))
        inits = timeline.calls("TrainWorker.__init__", after=started, before=first_step)
        inits_end = _last_end(inits)
        first_init = _submitted(_first(inits))
        setups_end = _last_end(
            timeline.calls("TrainWorker.setup", after=started, before=first_step)
        )
        parts["tune_dispatch"] = _since(_submitted(train), started)
        parts["worker_actors_start"] = _since(inits_end, first_init)
        parts["process_group_and_imports"] = _since(setups_end, inits_end)
        parts["data_load_and_build"] = _span(start)
        inside = [
            "tune_dispatch",
            "worker_actors_start",
            "process_group_and_imports",
            "data_load_and_build",
        ]
    else:
        reset = _first(timeline.calls("reset", after=previous_start, before=started))
        parts["reset"] = _span(reset)
        parts["tune_dispatch"] = _since(_submitted(train), started)
        parts["build"] = _span(start)
        inside = ["tune_dispatch", "build"]
    parts["first_step"] = _since(first_step, _submitted(epoch))
    known = [parts[key] for key in (*inside, "first_step")]
    # None where an actor's task events were lost (Ray drops some of a killed actor's last).
    parts["other"] = (
        (first_step - started) - sum(v for v in known if v is not None)
        if all(value is not None for value in known)
        else None
    )
    return parts


def _analyse(
    records: list[Any], first_steps: dict[str, float], timeline: _Timeline
) -> list[dict[str, Any]]:
    """Per trial (in order): its figures and the parts of its start."""
    known = []
    for record in records:
        startup = record.last.get("startup_seconds")
        first_step = first_steps.get(record.trial_id)
        if startup is not None and first_step is not None and record.worker_pids:
            known.append((record, first_step - startup, first_step))
    trials: list[dict[str, Any]] = []
    previous_epoch_end: float | None = None
    for index, (record, started, first_step) in enumerate(known):
        rank0 = record.worker_pids[0]
        previous_start = known[index - 1][1] if index else 0.0
        next_start = known[index + 1][1] if index + 1 < len(known) else float("inf")
        entry: dict[str, Any] = {
            "number": record.number,
            "status": record.status,
            "cold": index == 0,
            "worker_pids": record.worker_pids,
            "startup_seconds": record.last.get("startup_seconds"),
            "train_seconds": record.last.get("train_seconds"),
            "parts": _trial_parts(
                timeline,
                started=started,
                first_step=first_step,
                previous_start=previous_start,
                rank0_pid=rank0,
                cold=index == 0,
            ),
            "previous_trial_end_to_first_step": _since(first_step, previous_epoch_end),
        }
        epochs = timeline.calls(
            "TrainWorker.run_epoch", after=started, before=next_start, pid=rank0
        )
        previous_epoch_end = _last_end(epochs)
        trials.append(entry)
    return trials


def measure_sweep(setup: Setup, *, keep: bool = False) -> dict[str, Any]:
    """Run the sweep in this process on a fresh local Ray; per trial, its start-up parts.

    Its home (MLflow store, Tune storage, and the task events as ``tasks.json``) is removed
    afterwards unless ``keep``.
    """
    for key, value in RAY_ENV.items():
        os.environ[key] = value
    for key in ("RAY_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):  # a fresh, local Ray
        os.environ.pop(key, None)
    # Task events are flushed every second by default: the last trial's would be lost when the
    # sweep ends and its actors are killed within that second.
    os.environ["RAY_task_events_report_interval_ms"] = "100"  # noqa: SIM112  # Ray spells it so
    home = Path(tempfile.mkdtemp(prefix="bench-trial-startup-"))
    os.environ["EXTRAP_HOME"] = str(home)
    os.environ["EXTRAP_STORAGE_PATH"] = str(home / "runs")
    os.environ["EXTRAP_MLFLOW_TRACKING_URI"] = f"sqlite:///{home}/mlflow.db"
    import ray

    from search_spaces import load_spec
    from service.runtime.local import run_here
    from service.runtime.ray_env import ensure_ray

    spec = load_spec(setup.spec())
    # Ray's state API (list_tasks: the per-task timings below) is served by the dashboard,
    # which a local Ray of the runtime leaves out unless asked.
    os.environ.setdefault("EXTRAP_RAY_DASHBOARD", "1")
    started = time.perf_counter()
    ensure_ray(1)
    ray_init_seconds = time.perf_counter() - started
    try:
        swept = time.perf_counter()
        outcome = run_here(spec, sweep_id="startup", on_event=lambda event: None)
        sweep_seconds = time.perf_counter() - swept
        tasks = _collect_tasks(expected_epochs=2 * setup.trials)
    finally:
        ray.shutdown()
    (home / "tasks.json").write_text(json.dumps(tasks, default=str), encoding="utf-8")
    first_steps = _first_step_times(home / "runs" / "startup" / "trials-0000")
    records = sorted(outcome.trials.values(), key=lambda record: record.number)
    try:
        trials = _analyse(records, first_steps, _Timeline(tasks))
    finally:
        if not keep:
            shutil.rmtree(home, ignore_errors=True)
    return {
        "ray_init_seconds": ray_init_seconds,
        "sweep_seconds": sweep_seconds,
        "state": outcome.state,
        "reason": outcome.reason,
        "trials": trials,
        "tasks_seen": len(tasks),
        "home": str(home) if keep else None,
    }


def _summary(sweep: dict[str, Any], plain: dict[str, Any] | None) -> dict[str, Any]:
    trials = [t for t in sweep["trials"] if t.get("startup_seconds") is not None]
    cold = trials[0] if trials else None
    warm = [float(t["startup_seconds"]) for t in trials[1:]]
    warm_builds = [t["parts"].get("build") for t in trials[1:] if "parts" in t]
    warm_build = median([b for b in warm_builds if b is not None])
    cold_parts = cold.get("parts", {}) if cold else {}
    cold_seconds = cold["startup_seconds"] if cold else None
    trainable = cold_parts.get("trainable_actor_start")
    plain_seconds = plain["start_to_first_step_seconds"] if plain else None
    load_build = cold_parts.get("data_load_and_build")
    gaps = [
        t["previous_trial_end_to_first_step"]
        for t in trials
        if t.get("previous_trial_end_to_first_step") is not None
    ]
    summary = {
        "cold_trial_seconds": cold_seconds,
        "cold_from_trainable_submitted_seconds": (
            cold_seconds + trainable if cold_seconds is not None and trainable else None
        ),
        "warm_trial_seconds_median": median(warm),
        "warm_trial_seconds_max": max(warm) if warm else None,
        "previous_trial_end_to_first_step_median": median(gaps),
        "data_load_seconds_derived": (
            load_build - warm_build if load_build is not None and warm_build is not None else None
        ),
        "plain_start_seconds": plain_seconds,
        "cold_vs_plain": ratio(cold_seconds, plain_seconds),
        "warm_vs_plain": ratio(median(warm), plain_seconds),
    }
    misses = []
    if summary["warm_trial_seconds_median"] is not None and (
        summary["warm_trial_seconds_median"] > TARGETS["warm_trial_seconds_max"]
    ):
        misses.append(f"warm median {summary['warm_trial_seconds_median']:.2f} s > 2 s")
    if cold_seconds is not None and cold_seconds > TARGETS["cold_trial_seconds_max"]:
        misses.append(f"cold trial {cold_seconds:.2f} s > 15 s")
    summary["misses"] = misses
    return summary


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--plain-rank"]:
        return plain_rank(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smoke run: a minute, noisy figures")
    parser.add_argument("--trials", type=int, default=None, help="trials of the sweep (8)")
    parser.add_argument("--repeats", type=int, default=None, help="plain starts (3)")
    parser.add_argument("--skip-plain", action="store_true", help="leave out the baseline")
    parser.add_argument("--data-dir", default=str(DATA_DIR))
    parser.add_argument("--keep", action="store_true", help="keep the sweep's home (see JSON)")
    args = parser.parse_args(argv)

    values: dict[str, Any] = {**QUICK, **QUICK_COUNTS} if args.quick else {}
    if args.trials is not None:
        values["trials"] = args.trials
    if args.repeats is not None:
        values["repeats"] = args.repeats
    setup = Setup(**values, data_dir=args.data_dir)

    with json_stdout() as stream:
        started = time.perf_counter()
        document: dict[str, Any] = {
            "benchmark": "trial_startup",
            "quick": args.quick,
            "machine": machine(),
            "setup": asdict(setup),
            "spec": setup.spec(),
            "targets": TARGETS,
            "errors": [],
        }
        ensure_mnist1d(setup.num_samples, Path(setup.data_dir))
        plain = None
        if not args.skip_plain:  # first, while no Ray runs on the machine
            try:
                plain = measure_plain(setup)
            except Exception as error:
                document["errors"].append(f"plain: {type(error).__name__}: {error}")
        document["plain"] = plain
        document["sweep"] = document["summary"] = None
        try:
            document["sweep"] = measure_sweep(setup, keep=args.keep)
            document["summary"] = _summary(document["sweep"], plain)
        except Exception as error:
            import traceback

            traceback.print_exc()
            document["errors"].append(f"sweep: {type(error).__name__}: {error}")
        document["elapsed_s"] = time.perf_counter() - started
        emit(document, stream)
    return 1 if document["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
