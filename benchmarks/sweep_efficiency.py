"""Benchmark: a whole sweep's wall time, ``extrap run`` against the plain Ray Tune + Train script.

Run ``.venv/bin/python benchmarks/sweep_efficiency.py`` (about 25 minutes on 2 cores: the plain
script takes most of it) or with ``--quick`` (a smoke run of 3-4 minutes whose figures are
noise: one 1 x 1 sweep of each kind, a 2-trial efficiency sweep of tiny epochs). It prints one
JSON document on stdout (everything else goes to stderr) and exits 0 whatever the figures:
targets are reported beside them, never asserted.

``sizes`` -- per sweep size (``--sizes``, ``6x5,24x5``: trials x epochs, one trial at a time),
two child processes, one after the other, each with its own fresh local Ray (the benchmark
checks that no process of the first is left before it starts the second):

``plain``   the plain script of issue 12, written below (``plain_sweep``): Ray Tune +
            ``OptunaSearch`` (TPE, seeded) + a Tune function trainable holding
            ``{"cpu": 0, "train_driver": 1}`` that runs a Ray Train V2 ``TorchTrainer`` with 2
            DDP workers x 1 CPU and ``TuneReportCallback``, ``MLflowLoggerCallback``,
            ``ray.init(num_cpus=2, resources={"train_driver": 1})``,
            ``RAY_TRAIN_HEALTH_CHECK_INTERVAL_S=0.5``; in each worker a ``DataLoader`` over a
            ``TensorDataset`` (``prepare_data_loader``, ``prepare_model``), torch's SGD, and the
            validation and test accuracy every epoch.
``extrap``  ``extrap run SPEC --json`` on the same sweep (``extrapolation: none``, so that both
            train plain SGD with momentum), through a thin shim (``--extrap-shim``) that
            records when ``ray.init`` starts and returns and then calls the CLI's own app.

Both train the same data (MNIST-1D, 13,750 samples: 10,000 training, 1,000 validation, 2,750
test), model (MLP 40-256-256-10), global batch (512) and search space (lr, log-uniform in
[0.01, 0.2]). Per run: ``wall_seconds`` (spawn to exit), ``time_to_first_result_seconds``
(spawn to the first epoch's metrics in MLflow, as the driver logged them),
``training_seconds`` (the sum of every epoch's training and validation time as the workers
measured it), ``epochs_trained``, ``worker_pss_peak_mib`` (the highest sum, over samples taken
every second, of the proportional set size of the worker processes: ``ray::TrainWorker`` for
``extrap``, ``ray::RayTrainWorker`` for the plain script), ``tree_pss_peak_mib`` (all the run's
processes, sampled every 5 s), and ``split``: ``imports`` (spawn -> ``ray.init`` called),
``ray_start``, ``to_first_step`` (Ray up -> rank 0's first optimizer step of the first trial:
Tune, the trainable, the worker group, data, build), ``training``, ``between_trials`` (the rest
up to the last epoch's result: checkpoints, reports, MLflow, trial starts after the first) and
``teardown`` (last result -> exit); they add up to the wall. ``wall_ratio`` = plain / extrap.
``marginal_trial_seconds``: from the two sizes, (extra wall - extra training) / extra trials,
for each run kind.

``efficiency`` -- a sweep of ``--efficiency-trials`` (8) trials of about
``--efficiency-seconds`` (60) s of training each with ``extrap run``: MNIST-1D 80,000 samples
(57,600 training), the same MLP, batch 512, ``extrapolation: gradient`` (the job of
``benchmarks/epoch_overhead.py``). The plain loop's epoch time is measured first, in this run
(``epoch_overhead.py --loops plain``); epochs = round(seconds / that). ``efficiency`` = trials x
epochs x plain epoch / (wall x concurrent slots), slots = 1 here (2 CPUs, 2 workers a trial).

Targets (issue 12): extrap 6 x 5 <= 30 s wall and >= 4x faster than plain; 24 x 5 >= 8x;
marginal <= 1.5 s a trial; efficiency >= 0.90.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import (
    DATA_DIR,
    PYTHON,
    child_env,
    emit,
    ensure_mnist1d,
    json_stdout,
    machine,
    ratio,
)

HERE = Path(__file__).resolve().parent
MNIST1D_SEED = 42  # the workload's default data seed
TARGETS = {
    "extrap_6x5_wall_seconds_max": 30.0,
    "wall_ratio_6x5_min": 4.0,
    "wall_ratio_24x5_min": 8.0,
    "marginal_trial_seconds_max": 1.5,
    "efficiency_min": 0.90,
}
WORKER_TITLES = {"extrap": "ray::TrainWorker", "plain": "ray::RayTrainWorker"}
MIB = 1024.0**2


@dataclass(frozen=True)
class Job:
    """The job every trial trains (both run kinds)."""

    num_samples: int = 13_750
    validation_size: int = 1_000
    hidden: int = 256
    global_batch_size: int = 512
    lr_low: float = 0.01
    lr_high: float = 0.2
    extrapolation: str = "none"

    def spec(self, name: str, trials: int, epochs: int, data_dir: str) -> dict[str, Any]:
        return {
            "version": 2,
            "name": name,
            "job": {
                "workload": "mnist1d",
                "workload_options": {
                    "num_samples": self.num_samples,
                    "hidden": self.hidden,
                    "validation_size": self.validation_size,
                },
                "data_dir": data_dir,
                "global_batch_size": self.global_batch_size,
                "workers": 2,
                "cpus_per_worker": 1,
                "epochs": epochs,
                "optimizer": {
                    "lr": self.lr_low,
                    "momentum": 0.9,
                    "extrapolation": self.extrapolation,
                },
            },
            "space": {"lr": {"low": self.lr_low, "high": self.lr_high, "log": True}},
            "objective": {"metric": "val_accuracy", "mode": "max"},
            "search": {
                "num_trials": trials,
                "max_concurrent_trials": 1,
                "scheduler": "fifo",
                "seed": 0,
            },
        }


SIZES_JOB = Job()
EFFICIENCY_JOB = Job(
    num_samples=80_000, validation_size=6_400, lr_low=0.01, lr_high=0.1, extrapolation="gradient"
)
QUICK_JOB = Job(num_samples=2000, validation_size=160, hidden=32, global_batch_size=200)


def _startup_trials(trials: int) -> int:
    """Optuna TPE start-up trials as the product picks them (docs/spec-reference.md)."""
    return max(2, min(10, trials // 3))


# -- the plain script (a child process) ------------------------------------------------------


def plain_train_fn(config: dict[str, Any]) -> None:
    """Each Ray Train worker: DataLoader over a TensorDataset, DDP, SGD, evaluation per epoch."""
    import numpy as np
    import ray.train
    import ray.train.torch
    import torch
    import torch.nn.functional as F
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    with np.load(config["data_file"]) as arrays:
        x, y = torch.from_numpy(arrays["x"]), torch.from_numpy(arrays["y"])
        x_test, y_test = torch.from_numpy(arrays["x_test"]), torch.from_numpy(arrays["y_test"])
    held_out = config["validation_size"]
    x_train, y_train = x[:-held_out], y[:-held_out]
    x_val, y_val = x[-held_out:], y[-held_out:]
    mean, std = x_train.mean(), x_train.std()
    x_train, x_val, x_test = ((t - mean) / std for t in (x_train, x_val, x_test))

    world = ray.train.get_context().get_world_size()
    loader = DataLoader(
        TensorDataset(x_train, y_train),
        batch_size=config["global_batch_size"] // world,
        shuffle=True,
        drop_last=True,
    )
    loader = ray.train.torch.prepare_data_loader(loader)
    hidden = config["hidden"]
    model: nn.Module = nn.Sequential(
        nn.Linear(x.shape[1], hidden),
        nn.ReLU(),
        nn.Linear(hidden, hidden),
        nn.ReLU(),
        nn.Linear(hidden, 10),
    )
    model = ray.train.torch.prepare_model(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=config["lr"], momentum=0.9)

    def accuracy(inputs: torch.Tensor, labels: torch.Tensor) -> float:
        model.eval()
        with torch.no_grad():
            correct = sum(
                int((model(inputs[i : i + 1024]).argmax(1) == labels[i : i + 1024]).sum())
                for i in range(0, len(labels), 1024)
            )
        model.train()
        return correct / len(labels)

    first_step_time = None
    for epoch in range(config["epochs"]):
        started = time.perf_counter()
        total, batches = 0.0, 0
        for inputs, labels in loader:
            optimizer.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(inputs), labels)
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            if first_step_time is None:
                first_step_time = time.time()
            total += float(loss)
            batches += 1
        trained = time.perf_counter()
        metrics: dict[str, float | None] = {
            "epoch": epoch + 1,
            "train_loss": total / max(batches, 1),
            "val_accuracy": accuracy(x_val, y_val),
            "test_accuracy": accuracy(x_test, y_test),
            "train_seconds": trained - started,
        }
        metrics["eval_seconds"] = time.perf_counter() - trained
        if epoch == 0:
            metrics["first_step_time"] = first_step_time
        ray.train.report(metrics)


def plain_trial_fn(config: dict[str, Any], settings: dict[str, Any]) -> None:
    """The Tune function trainable: one TorchTrainer per trial."""
    import ray.train
    from ray import tune
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    trainer = TorchTrainer(
        plain_train_fn,
        train_loop_config={**settings, "lr": config["lr"]},
        scaling_config=ray.train.ScalingConfig(
            num_workers=2, use_gpu=False, resources_per_worker={"CPU": 1}
        ),
        run_config=ray.train.RunConfig(
            name=f"train-{tune.get_context().get_trial_id()}",
            storage_path=settings["storage_path"],
            callbacks=[TuneReportCallback()],  # type: ignore[no-untyped-call,list-item]
        ),
    )
    trainer.fit()


def plain_sweep(argv: list[str]) -> int:
    """The plain script: ``--plain-sweep CONFIG.json TIMINGS.json``."""
    marks = {"interpreter": time.time()}
    config = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    import optuna
    import ray
    from ray import tune
    from ray.air.integrations.mlflow import MLflowLoggerCallback
    from ray.tune.search.optuna import OptunaSearch

    marks["ray_init_start"] = time.time()
    ray.init(num_cpus=2, resources={"train_driver": 1})
    marks["ray_init_end"] = time.time()
    sampler = optuna.samplers.TPESampler(seed=0, n_startup_trials=_startup_trials(config["trials"]))
    settings = {key: config[key] for key in ("data_file", "validation_size", "hidden", "epochs")}
    settings["global_batch_size"] = config["global_batch_size"]
    settings["storage_path"] = config["storage_path"]
    tuner = tune.Tuner(
        tune.with_resources(
            tune.with_parameters(plain_trial_fn, settings=settings),
            {"cpu": 0, "train_driver": 1},
        ),
        param_space={"lr": tune.loguniform(config["lr_low"], config["lr_high"])},
        tune_config=tune.TuneConfig(
            search_alg=OptunaSearch(metric="val_accuracy", mode="max", sampler=sampler),
            num_samples=config["trials"],
            max_concurrent_trials=1,
        ),
        run_config=tune.RunConfig(
            name="plain",
            storage_path=config["storage_path"],
            callbacks=[
                MLflowLoggerCallback(
                    tracking_uri=config["tracking_uri"], experiment_name="plain-sweep"
                )
            ],
            verbose=0,
        ),
    )
    results = tuner.fit()
    marks["fit_end"] = time.time()
    marks["errors"] = len(results.errors)
    Path(argv[1]).write_text(json.dumps(marks), encoding="utf-8")
    return 0


# -- the extrap run shim (a child process) ---------------------------------------------------


def extrap_shim(argv: list[str]) -> int:
    """``--extrap-shim TIMINGS.json <extrap arguments>``: ``extrap`` with ray.init timed."""
    marks = {"interpreter": time.time()}
    import ray

    original = ray.init

    def timed_init(*args: Any, **kwargs: Any) -> Any:
        marks["ray_init_start"] = time.time()
        try:
            return original(*args, **kwargs)
        finally:
            marks["ray_init_end"] = time.time()

    ray.init = timed_init
    import atexit

    from service.cli import main

    fit_end = [0.0]
    # Written by an exit handler: the console script's exit (main.run) ends the process itself.
    atexit.register(lambda: Path(argv[0]).write_text(json.dumps(marks | {"fit_end": fit_end[0]})))
    original_app = main.app

    def timed_app(*args: Any, **kwargs: Any) -> None:
        try:
            original_app(*args, **kwargs)
        finally:
            fit_end[0] = time.time()

    main.app = timed_app  # type: ignore[assignment]
    main.run(argv[1:])
    return 0  # not reached: main.run exits


# -- watching a child: wall, memory ----------------------------------------------------------


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = Path(entry.path, "stat").read_text()
            ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
            tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def descendants(root: int) -> list[int]:
    tree, found, todo = _children(), [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(tree.get(pid, []))
    return found


def _title(pid: int) -> str:
    try:
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return ""


def pss_mib(pid: int) -> float:
    """Proportional set size of ``pid`` (0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024.0
    except (OSError, ValueError):
        pass
    return 0.0


class MemorySampler(threading.Thread):
    """Samples the PSS of a process tree: its workers every second, all of it every 5th time."""

    def __init__(self, root: int, worker_title: str, interval_s: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.root, self.worker_title, self.interval_s = root, worker_title, interval_s
        self.stop = threading.Event()
        self.worker_peak = 0.0
        self.tree_peak = 0.0
        self.worker_pids: set[int] = set()
        self.seen: set[int] = set()

    def run(self) -> None:
        tick = 0
        while not self.stop.is_set():
            pids = descendants(self.root)
            self.seen.update(pids)
            workers = [pid for pid in pids if _title(pid).startswith(self.worker_title)]
            self.worker_pids.update(workers)
            self.worker_peak = max(self.worker_peak, sum(pss_mib(pid) for pid in workers))
            if tick % 5 == 0:
                self.tree_peak = max(self.tree_peak, sum(pss_mib(pid) for pid in pids))
            tick += 1
            self.stop.wait(self.interval_s)


def _alive(pids: set[int]) -> list[int]:
    return [pid for pid in pids if Path(f"/proc/{pid}").exists() and _title(pid)]


def run_child(command: list[str], env: dict[str, str], kind: str) -> dict[str, Any]:
    """Run one sweep process to its end; its wall time, exit code and memory."""
    spawned = time.time()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=sys.stderr, text=True)
    sampler = MemorySampler(proc.pid, WORKER_TITLES[kind])
    sampler.start()
    stdout, _ = proc.communicate()
    exited = time.time()
    sampler.stop.set()
    sampler.join()
    leftovers = set(sampler.seen) - {proc.pid}
    deadline = time.monotonic() + 30.0
    while _alive(leftovers) and time.monotonic() < deadline:  # Ray's processes exit after it
        time.sleep(0.5)
    return {
        "spawned": spawned,
        "exited": exited,
        "wall_seconds": exited - spawned,
        "returncode": proc.returncode,
        "stdout": stdout,
        "worker_pss_peak_mib": sampler.worker_peak,
        "tree_pss_peak_mib": sampler.tree_peak,
        "worker_processes": len(sampler.worker_pids),
        "processes_seen": len(sampler.seen),
        "left_running_after_30s": len(_alive(leftovers)),
    }


# -- reading MLflow --------------------------------------------------------------------------


_METRICS = ("val_accuracy", "train_seconds", "eval_seconds", "startup_seconds", "first_step_time")


def _mlflow_runs(tracking_uri: str, experiment: str, *, tag: str | None) -> list[dict[str, Any]]:
    """Per run: its start time and the history (value, timestamp) of every metric."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return []
    runs = []
    for run in client.search_runs([found.experiment_id], max_results=10_000):
        if tag is not None and tag not in run.data.tags:
            continue
        history = {
            key: sorted(
                (m.step, m.value, m.timestamp / 1000.0)
                for m in client.get_metric_history(run.info.run_id, key)
            )
            for key in _METRICS
            if key in run.data.metrics
        }
        runs.append({"start": run.info.start_time / 1000.0, "metrics": history})
    return sorted(runs, key=lambda run: float(run["start"]))


def _figures(runs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    """What the MLflow runs say: first result, last result, training, first step."""
    results = [ts for run in runs for _, _, ts in run["metrics"].get("val_accuracy", [])]
    training = sum(
        value
        for run in runs
        for key in ("train_seconds", "eval_seconds")
        for _, value, _ in run["metrics"].get(key, [])
    )
    epochs = sum(len(run["metrics"].get("val_accuracy", [])) for run in runs)
    first_run = min(runs, key=lambda run: run["start"]) if runs else None
    first_step = None
    if first_run is not None and kind == "extrap":
        startup = first_run["metrics"].get("startup_seconds")
        if startup:  # the child run is created at on_trial_start
            first_step = first_run["start"] + startup[0][1]
    elif first_run is not None:
        reported = first_run["metrics"].get("first_step_time")
        first_step = reported[0][1] if reported else None
    startups = [
        run["metrics"]["startup_seconds"][0][1]
        for run in runs
        if run["metrics"].get("startup_seconds")
    ]
    return {
        "first_result": min(results) if results else None,
        "last_result": max(results) if results else None,
        "training_seconds": training,
        "epochs_trained": epochs,
        "trials_reported": sum(1 for run in runs if run["metrics"].get("val_accuracy")),
        "first_step": first_step,
        "startup_seconds": startups,
    }


def _split(run: dict[str, Any], marks: dict[str, float], figures: dict[str, Any]) -> dict[str, Any]:
    """The wall in consecutive parts (None where a mark is missing)."""

    def since(later: float | None, earlier: float | None) -> float | None:
        return None if later is None or earlier is None else later - earlier

    first_step, last = figures["first_step"], figures["last_result"]
    training = figures["training_seconds"]
    span = since(last, first_step)
    return {
        "imports": since(marks.get("ray_init_start"), run["spawned"]),
        "ray_start": since(marks.get("ray_init_end"), marks.get("ray_init_start")),
        "to_first_step": since(first_step, marks.get("ray_init_end")),
        "training": training,
        "between_trials": None if span is None else span - training,
        "teardown": since(run["exited"], last),
    }


# -- one sweep, either kind ------------------------------------------------------------------


def run_sweep(
    kind: str, job: Job, trials: int, epochs: int, data_dir: str, *, label: str
) -> dict[str, Any]:
    """One sweep in a child process with its own Ray; its figures."""
    home = Path(tempfile.mkdtemp(prefix=f"bench-sweep-{kind}-"))
    timings = home / "timings.json"
    tracking_uri = f"sqlite:///{home}/mlflow.db"
    spec = job.spec(f"bench-{label}", trials, epochs, data_dir)
    if kind == "plain":
        config = {
            "trials": trials,
            "epochs": epochs,
            "data_file": str(
                Path(data_dir, "mnist1d", f"mnist1d-{job.num_samples}-{MNIST1D_SEED}.npz")
            ),
            "validation_size": job.validation_size,
            "hidden": job.hidden,
            "global_batch_size": job.global_batch_size,
            "lr_low": job.lr_low,
            "lr_high": job.lr_high,
            "storage_path": str(home / "runs"),
            "tracking_uri": tracking_uri,
        }
        (home / "config.json").write_text(json.dumps(config), encoding="utf-8")
        command = [PYTHON, __file__, "--plain-sweep", str(home / "config.json"), str(timings)]
        experiment, tag = "plain-sweep", None
        env = child_env()
    else:
        (home / "spec.json").write_text(json.dumps(spec), encoding="utf-8")
        command = [
            PYTHON,
            __file__,
            "--extrap-shim",
            str(timings),
            "run",
            str(home / "spec.json"),
            "--sweep-id",
            label,
            "--json",
        ]
        experiment, tag = spec["name"], "extrap.trial_id"
        env = child_env(
            EXTRAP_HOME=str(home / "home"),
            EXTRAP_STORAGE_PATH=str(home / "home" / "runs"),
            EXTRAP_MLFLOW_TRACKING_URI=tracking_uri,
        )
    try:
        run = run_child(command, env, kind)
        marks = json.loads(timings.read_text()) if timings.exists() else {}
        figures = _figures(_mlflow_runs(tracking_uri, experiment, tag=tag), kind)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    summary = None
    if kind == "extrap" and run["stdout"].strip():
        with contextlib.suppress(ValueError):
            summary = json.loads(run["stdout"])
    return {
        "kind": kind,
        "trials": trials,
        "epochs": epochs,
        "returncode": run["returncode"],
        "state": summary.get("state") if summary else None,
        "wall_seconds": run["wall_seconds"],
        "time_to_first_result_seconds": (
            figures["first_result"] - run["spawned"] if figures["first_result"] else None
        ),
        "training_seconds": figures["training_seconds"],
        "epochs_trained": figures["epochs_trained"],
        "trials_reported": figures["trials_reported"],
        "startup_seconds": figures["startup_seconds"] or None,
        "worker_pss_peak_mib": run["worker_pss_peak_mib"],
        "tree_pss_peak_mib": run["tree_pss_peak_mib"],
        "worker_processes": run["worker_processes"],
        "processes_seen": run["processes_seen"],
        "left_running_after_30s": run["left_running_after_30s"],
        "split": _split(run, marks, figures),
    }


def _marginal(small: dict[str, Any], large: dict[str, Any]) -> float | None:
    extra_trials = int(large["trials"]) - int(small["trials"])
    if extra_trials <= 0:
        return None
    extra_wall = float(large["wall_seconds"]) - float(small["wall_seconds"])
    extra_training = float(large["training_seconds"]) - float(small["training_seconds"])
    return (extra_wall - extra_training) / extra_trials


def _parse_sizes(text: str) -> list[tuple[int, int]]:
    sizes = []
    for item in text.split(","):
        trials, epochs = item.lower().split("x")
        sizes.append((int(trials), int(epochs)))
    return sizes


def plain_epoch_seconds(job: Job, data_dir: str, rounds: int) -> dict[str, Any]:
    """The plain loop's epoch time for ``job`` (``epoch_overhead.py --loops plain``)."""
    command = [
        PYTHON,
        str(HERE / "epoch_overhead.py"),
        "--loops",
        "plain",
        "--variants",
        job.extrapolation,
        "--num-samples",
        str(job.num_samples),
        "--hidden",
        str(job.hidden),
        "--global-batch-size",
        str(job.global_batch_size),
        "--rounds",
        str(rounds),
        "--data-dir",
        data_dir,
    ]
    done = subprocess.run(command, env=child_env(), capture_output=True, text=True, check=False)
    sys.stderr.write(done.stderr[-4000:])
    report = json.loads(done.stdout)
    figures = report["variants"][job.extrapolation]
    return {
        "epoch_seconds": figures["plain"]["epoch_seconds"],
        "samples": figures["plain"]["epoch_seconds_samples"],
        "steps_per_epoch": figures["steps_per_epoch"],
        "train_size": figures["train_size"],
    }


def measure_efficiency(
    job: Job, trials: int, seconds: float, data_dir: str, rounds: int
) -> dict[str, Any]:
    plain = plain_epoch_seconds(job, data_dir, rounds)
    epochs = max(1, round(seconds / plain["epoch_seconds"]))
    sweep = run_sweep("extrap", job, trials, epochs, data_dir, label="efficiency")
    training = sweep["trials_reported"] * epochs * plain["epoch_seconds"]
    slots = 1
    return {
        "configuration": {
            **asdict(job),
            "trials": trials,
            "epochs": epochs,
            "target_training_seconds_per_trial": seconds,
            "concurrent_slots": slots,
        },
        "plain_loop": plain,
        "extrap": sweep,
        "training_seconds_plain_loop": training,
        "efficiency": training / (sweep["wall_seconds"] * slots),
        "efficiency_measured_training": sweep["training_seconds"] / (sweep["wall_seconds"] * slots),
    }


def _misses(document: dict[str, Any]) -> list[str]:
    out = []
    for label, size in (document.get("sizes") or {}).items():
        extrap, ratio_value = size["extrap"], size.get("wall_ratio")
        if label == "6x5":
            if extrap["wall_seconds"] > TARGETS["extrap_6x5_wall_seconds_max"]:
                out.append(f"6x5 extrap wall {extrap['wall_seconds']:.1f} s > 30 s")
            if ratio_value is not None and ratio_value < TARGETS["wall_ratio_6x5_min"]:
                out.append(f"6x5 wall ratio {ratio_value:.2f} < 4")
        if (
            label == "24x5"
            and ratio_value is not None
            and ratio_value < TARGETS["wall_ratio_24x5_min"]
        ):
            out.append(f"24x5 wall ratio {ratio_value:.2f} < 8")
    marginal = (document.get("marginal_trial_seconds") or {}).get("extrap")
    if marginal is not None and marginal > TARGETS["marginal_trial_seconds_max"]:
        out.append(f"marginal {marginal:.2f} s a trial > 1.5 s")
    efficiency = (document.get("efficiency") or {}).get("efficiency")
    if efficiency is not None and efficiency < TARGETS["efficiency_min"]:
        out.append(f"efficiency {efficiency:.3f} < 0.90")
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--plain-sweep"]:
        return plain_sweep(argv[1:])
    if argv[:1] == ["--extrap-shim"]:
        return extrap_shim(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smoke run: minutes, noisy figures")
    parser.add_argument("--sizes", default=None, help="trials x epochs (6x5,24x5; quick: 1x1)")
    parser.add_argument("--skip-plain", action="store_true", help="leave out the plain script")
    parser.add_argument("--skip-efficiency", action="store_true", help="leave out the 8 x 60 s")
    parser.add_argument("--efficiency-trials", type=int, default=None, help="(8; quick: 2)")
    parser.add_argument(
        "--efficiency-seconds", type=float, default=None, help="training a trial (60; quick: 0.5)"
    )
    parser.add_argument("--data-dir", default=str(DATA_DIR))
    args = parser.parse_args(argv)

    sizes = _parse_sizes(args.sizes or ("1x1" if args.quick else "6x5,24x5"))
    sizes_job = QUICK_JOB if args.quick else SIZES_JOB
    efficiency_job = (
        Job(**{**asdict(QUICK_JOB), "extrapolation": "gradient"}) if args.quick else EFFICIENCY_JOB
    )
    efficiency_trials = args.efficiency_trials or (2 if args.quick else 8)
    efficiency_seconds = args.efficiency_seconds or (0.5 if args.quick else 60.0)
    with json_stdout() as stream:
        started = time.perf_counter()
        document: dict[str, Any] = {
            "benchmark": "sweep_efficiency",
            "quick": args.quick,
            "machine": machine(),
            "sizes_job": asdict(sizes_job),
            "targets": TARGETS,
            "errors": [],
        }
        ensure_mnist1d(sizes_job.num_samples, Path(args.data_dir))
        results: dict[str, Any] = {}
        for trials, epochs in sizes:
            label = f"{trials}x{epochs}"
            entry: dict[str, Any] = {}
            for kind in ("extrap",) if args.skip_plain else ("plain", "extrap"):
                try:
                    entry[kind] = run_sweep(
                        kind, sizes_job, trials, epochs, args.data_dir, label=label
                    )
                except Exception as error:
                    document["errors"].append(f"{label} {kind}: {type(error).__name__}: {error}")
            if "plain" in entry and "extrap" in entry:
                entry["wall_ratio"] = ratio(
                    entry["plain"]["wall_seconds"], entry["extrap"]["wall_seconds"]
                )
                entry["time_to_first_result_ratio"] = ratio(
                    entry["plain"]["time_to_first_result_seconds"],
                    entry["extrap"]["time_to_first_result_seconds"],
                )
            results[label] = entry
        document["sizes"] = results
        marginal: dict[str, float | None] = {}
        complete = [size for size in results.values() if "extrap" in size]
        if len(complete) >= 2:
            for kind in ("plain", "extrap"):
                if kind in complete[0] and kind in complete[-1]:
                    marginal[kind] = _marginal(complete[0][kind], complete[-1][kind])
        document["marginal_trial_seconds"] = marginal or None
        document["efficiency"] = None
        if not args.skip_efficiency:
            try:
                ensure_mnist1d(efficiency_job.num_samples, Path(args.data_dir))
                document["efficiency"] = measure_efficiency(
                    efficiency_job,
                    efficiency_trials,
                    efficiency_seconds,
                    args.data_dir,
                    rounds=2 if args.quick else 7,
                )
            except Exception as error:
                import traceback

                traceback.print_exc()
                document["errors"].append(f"efficiency: {type(error).__name__}: {error}")
        document["misses"] = _misses(document)
        document["elapsed_s"] = time.perf_counter() - started
        emit(document, stream)
    return 1 if document["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
