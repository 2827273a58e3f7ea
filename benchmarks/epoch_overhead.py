"""Benchmark: a trial's epoch in the product against a plain PyTorch loop over the same tensors.

Run ``.venv/bin/python benchmarks/epoch_overhead.py`` (about 3 minutes on 2 cores, the first
time a minute more to generate the data) or with ``--quick`` (a smoke run of seconds whose figures
are noise). It prints one JSON document on stdout (everything else goes to stderr) and exits 0
whatever the figures: the target is reported beside them, never asserted.

Two gloo processes (``trainers.ddp_probe.run_gloo``, one torch thread each, as the warm Ray
workers run with ``cpus_per_worker: 1``) train the same job, the two loops interleaved, epoch
by epoch, in a seeded shuffled order per round (the same on both ranks):

``product``  ``trainers.worker.WorkerSession.run_epoch()`` then ``checkpoint()``: what a warm
             worker does for each epoch of a trial (its optimizer steps with
             ``ExtrapStepper``, the lr and gamma schedules, rank 0's validation pass, the
             epoch's report and its checkpoint files), without the Ray call around it.
``plain``    the same model (the workload's ``build_model()``), the same ``ExtrapSGD``
             variant and options, the same global batch, over the same in-memory tensors
             (the session's cached splits), written plainly: a seeded permutation per epoch,
             each rank's share indexed per step, the DDP step (two-pass variants: forward and
             backward inside ``no_sync()``, ``extrapolate()``, zero the gradients, forward and
             backward with the all-reduce, ``step()``; one-pass: ``extrapolate()``, forward,
             backward, ``step()``), then rank 0's validation pass (eval mode, no_grad, batches of
             1024, loss and accuracy). No schedules, no report, no checkpoint.

An epoch's time is from a barrier before it to a barrier after it, on rank 0. Per variant:
``product_epoch_seconds`` and ``plain_epoch_seconds`` (medians over ``--rounds``, 9, after
``--warmup`` epochs, 1), ``ratio`` = product / plain (target <= 1.10, epochs of at least 1 s),
the product's parts as it reports them (``train_seconds``, ``eval_seconds``) and its checkpoint
time, the plain loop's train and validation times, and the raw samples.

Job (default): MNIST-1D with 100,000 samples (72,000 training, 8,000 validation: epochs of
at least 1 s for ``none`` here), the MLP 40-320-320-10, global batch 512 over 2 workers (256
each, 140 steps per epoch), lr 0.05,
momentum 0.9, variants ``none`` and ``gradient`` (gamma = 0.1 lr). ``--loops plain`` measures
the plain loop alone (``benchmarks/sweep_efficiency.py`` uses it for its training time).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# Runs from the repository root without the package installed; the spawned gloo workers
# re-import this file as their main module, so these lines run there as well.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import DATA_DIR, emit, ensure_mnist1d, json_stdout, machine, median, ratio

WORLD_SIZE = 2
TARGET_RATIO_MAX = 1.10
MIN_EPOCH_SECONDS = 1.0
EVAL_BATCH = 1024  # the product's: max(4 x micro batch, 1024)
LOOPS = ("product", "plain")


@dataclass(frozen=True)
class Setup:
    """The job both loops train, and how much to measure."""

    num_samples: int = 100_000  # the workload's maximum
    hidden: int = 320  # with 256, plain epochs of `none` came out at 0.95-1.0 s
    global_batch_size: int = 512
    lr: float = 0.05
    momentum: float = 0.9
    variants: tuple[str, ...] = ("none", "gradient")
    loops: tuple[str, ...] = LOOPS
    warmup: int = 1
    rounds: int = 9  # this 2-core machine's epochs vary by +-15%: 5 was too few
    seed: int = 0
    data_dir: str = str(DATA_DIR)
    workload_options: dict[str, Any] = field(default_factory=dict)

    def options(self) -> dict[str, Any]:
        return {"num_samples": self.num_samples, "hidden": self.hidden, **self.workload_options}

    def job(self, variant: str) -> Any:
        from trainers.config import TrainJobConfig

        return TrainJobConfig(
            workload="mnist1d",
            workload_options=self.options(),
            data_dir=self.data_dir,
            global_batch_size=self.global_batch_size,
            workers=WORLD_SIZE,
            cpus_per_worker=1,
            epochs=10_000,  # never reached: the trial stays open for every measured epoch
            seed=self.seed,
            optimizer={"lr": self.lr, "momentum": self.momentum, "extrapolation": variant},
        )


QUICK = {"num_samples": 2000, "hidden": 32, "global_batch_size": 200, "warmup": 1, "rounds": 2}


# -- the plain loop (runs in each gloo process) ----------------------------------------------


class PlainLoop:
    """The plain DDP loop over the session's tensors (see the module docstring)."""

    def __init__(self, job: Any, splits: Any, rank: int, world_size: int) -> None:
        import torch
        from torch.nn.parallel import DistributedDataParallel

        from trainers.optim import ExtrapSGD
        from trainers.workloads import load_workload

        self.rank, self.world_size, self.seed = rank, world_size, job.seed
        self.inputs, self.labels = splits.train.tensors[:2]
        self.val_inputs, self.val_labels = splits.validation.tensors[:2]
        self.batch = job.global_batch_size // world_size
        self.steps = len(self.labels) // world_size // self.batch
        torch.manual_seed(job.seed)
        model = load_workload(job.workload, job.workload_options).build_model()
        self.model = model
        self.ddp = DistributedDataParallel(model, broadcast_buffers=False)
        options = job.optimizer
        self.optimizer = ExtrapSGD(
            self.ddp.parameters(),
            lr=options.lr,
            momentum=options.momentum,
            extrapolation=options.extrapolation,
            gamma=options.gamma,
            gamma_ratio=options.gamma_ratio,
            seed=job.seed + rank,
        )
        self.epoch = 0

    def run_epoch(self) -> dict[str, float]:
        import torch
        import torch.nn.functional as F

        started = time.perf_counter()
        self.ddp.train()  # type: ignore[no-untyped-call]
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        permutation = torch.randperm(len(self.labels), generator=generator)
        share = permutation[self.rank : self.steps * self.batch * self.world_size : self.world_size]
        optimizer = self.optimizer
        for step in range(self.steps):
            rows = share[step * self.batch : (step + 1) * self.batch]
            inputs, labels = self.inputs[rows], self.labels[rows]
            optimizer.zero_grad(set_to_none=True)
            if optimizer.two_pass:
                with self.ddp.no_sync():  # forward and backward local: nothing communicated
                    F.cross_entropy(self.ddp(inputs), labels).backward()  # type: ignore[no-untyped-call]
                optimizer.extrapolate()
                optimizer.zero_grad(set_to_none=True)
            else:
                optimizer.extrapolate()
            F.cross_entropy(self.ddp(inputs), labels).backward()  # type: ignore[no-untyped-call]
            optimizer.step()
        trained = time.perf_counter()
        if self.rank == 0:
            self.model.eval()
            correct, loss = 0, 0.0
            with torch.no_grad():
                for start in range(0, len(self.val_labels), EVAL_BATCH):
                    inputs = self.val_inputs[start : start + EVAL_BATCH]
                    labels = self.val_labels[start : start + EVAL_BATCH]
                    logits = self.model(inputs)
                    loss += float(F.cross_entropy(logits, labels, reduction="sum"))
                    correct += int((logits.argmax(dim=1) == labels).sum())
            self.model.train()
        self.epoch += 1
        return {"train_seconds": trained - started, "eval_seconds": time.perf_counter() - trained}


# -- per rank --------------------------------------------------------------------------------


def _measure_variant(session: Any, setup: Setup, variant: str, rank: int) -> dict[str, Any]:
    import torch.distributed as dist

    job = setup.job(variant)
    runs: dict[str, Any] = {}
    if "product" in setup.loops:
        session.start(job)  # loads the data once (cached for the next variant), builds the trial
    splits = session.splits(job)
    if "plain" in setup.loops:
        runs["plain"] = PlainLoop(job, splits, rank, WORLD_SIZE)
    samples: dict[str, list[dict[str, float]]] = {loop: [] for loop in setup.loops}
    order = list(setup.loops)
    shuffle = random.Random(setup.seed)  # the same on every rank: collectives must match
    for round_index in range(setup.warmup + setup.rounds):
        shuffle.shuffle(order)
        for loop in order:
            dist.barrier()
            started = time.perf_counter()
            if loop == "product":
                metrics = session.run_epoch()
                reported = time.perf_counter()
                session.checkpoint()
                parts = {
                    "train_seconds": float(metrics["train_seconds"]),
                    "eval_seconds": float(metrics.get("eval_seconds", 0.0)),
                    "checkpoint_seconds": time.perf_counter() - reported,
                }
            else:
                parts = runs["plain"].run_epoch()
            dist.barrier()
            parts["epoch_seconds"] = time.perf_counter() - started
            if round_index >= setup.warmup:
                samples[loop].append(parts)
    steps = len(splits.train) // WORLD_SIZE // (setup.global_batch_size // WORLD_SIZE)
    session.end()
    return {"samples": samples, "steps_per_epoch": steps, "train_size": len(splits.train)}


def rank_worker(rank: int, world_size: int, setup_data: dict[str, Any], out_dir: str) -> None:
    """Runs in each gloo process (module-level, so that spawn finds it); rank 0 writes JSON."""
    import torch
    import torch._dynamo  # DDP imports it on first construction: not timed
    from torch.nn.parallel import DistributedDataParallel

    from trainers.worker import WorkerSession

    setup = Setup(
        **{
            **setup_data,
            "variants": tuple(setup_data["variants"]),
            "loops": tuple(setup_data["loops"]),
        }
    )

    def wrap(model: torch.nn.Module) -> torch.nn.Module:  # as the warm workers wrap it
        return DistributedDataParallel(model, broadcast_buffers=False)

    session = WorkerSession(
        rank=rank, world_size=world_size, device=torch.device("cpu"), wrap_model=wrap
    )
    results = {
        variant: _measure_variant(session, setup, variant, rank) for variant in setup.variants
    }
    if rank == 0:
        Path(out_dir, "rank0.json").write_text(json.dumps(results), encoding="utf-8")


# -- aggregation -----------------------------------------------------------------------------


def _summary(raw: dict[str, Any], loops: tuple[str, ...]) -> dict[str, Any]:
    def figure(loop: str, key: str) -> float | None:
        return median([sample[key] for sample in raw["samples"].get(loop, []) if key in sample])

    out: dict[str, Any] = {
        "steps_per_epoch": raw["steps_per_epoch"],
        "train_size": raw["train_size"],
    }
    for loop in loops:
        keys = ("epoch_seconds", "train_seconds", "eval_seconds", "checkpoint_seconds")
        out[loop] = {key: figure(loop, key) for key in keys if figure(loop, key) is not None}
        out[loop]["epoch_seconds_samples"] = [s["epoch_seconds"] for s in raw["samples"][loop]]
    product = out.get("product", {}).get("epoch_seconds")
    plain = out.get("plain", {}).get("epoch_seconds")
    out["ratio"] = ratio(product, plain)
    shortest = min((e for e in (product, plain) if e is not None), default=None)
    out["epochs_at_least_1s"] = shortest is not None and shortest >= MIN_EPOCH_SECONDS
    return out


def measure(setup: Setup) -> dict[str, Any]:
    """Run both loops in 2 gloo processes; the per-variant summary."""
    from trainers.ddp_probe import run_gloo

    ensure_mnist1d(setup.num_samples, Path(setup.data_dir))
    with tempfile.TemporaryDirectory(prefix="epoch-overhead-") as out:
        run_gloo(rank_worker, WORLD_SIZE, asdict(setup), out)
        raw = json.loads(Path(out, "rank0.json").read_text(encoding="utf-8"))
    return {variant: _summary(raw[variant], setup.loops) for variant in setup.variants}


def _misses(variants: dict[str, Any]) -> list[str]:
    out = []
    for name, figures in variants.items():
        value = figures.get("ratio")
        if value is not None and value > TARGET_RATIO_MAX:
            out.append(f"{name}.ratio={value:.3f} > {TARGET_RATIO_MAX}")
        if not figures["epochs_at_least_1s"]:
            out.append(f"{name}: epochs shorter than {MIN_EPOCH_SECONDS} s (the target needs 1 s)")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smoke run: seconds, noisy figures")
    parser.add_argument("--variants", default=None, help="comma-separated (none,gradient)")
    parser.add_argument("--loops", default=",".join(LOOPS), help="product,plain or one of them")
    parser.add_argument("--num-samples", type=int, default=None, help="MNIST-1D samples (100000)")
    parser.add_argument("--hidden", type=int, default=None, help="MLP hidden units (320)")
    parser.add_argument("--global-batch-size", type=int, default=None, help="(512)")
    parser.add_argument("--warmup", type=int, default=None, help="epochs not measured (1)")
    parser.add_argument("--rounds", type=int, default=None, help="measured epochs per loop (9)")
    parser.add_argument("--data-dir", default=str(DATA_DIR))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    values: dict[str, Any] = dict(QUICK) if args.quick else {}
    for key in ("num_samples", "hidden", "global_batch_size", "warmup", "rounds"):
        if getattr(args, key) is not None:
            values[key] = getattr(args, key)
    if args.variants:
        values["variants"] = tuple(args.variants.split(","))
    loops = tuple(loop for loop in LOOPS if loop in args.loops.split(","))
    setup = Setup(**values, loops=loops, seed=args.seed, data_dir=args.data_dir)

    with json_stdout() as stream:
        started = time.perf_counter()
        document: dict[str, Any] = {
            "benchmark": "epoch_overhead",
            "quick": args.quick,
            "machine": machine(),
            "world_size": WORLD_SIZE,
            "threads_per_process": 1,
            "setup": asdict(setup),
            "job": setup.job(setup.variants[0]).model_dump(mode="json"),
            "targets": {"ratio_max": TARGET_RATIO_MAX, "min_epoch_seconds": MIN_EPOCH_SECONDS},
        }
        document["job"].pop("optimizer", None)
        try:
            variants = measure(setup)
            document["variants"] = variants
            document["misses"] = (
                _misses(variants) if "plain" in loops and "product" in loops else []
            )
            document["error"] = None
        except Exception as error:  # report what failed; the JSON still goes out
            import traceback

            traceback.print_exc()
            document["variants"] = None
            document["misses"] = []
            document["error"] = f"{type(error).__name__}: {error}"
        document["elapsed_s"] = time.perf_counter() - started
        emit(document, stream)
    return 0 if document["error"] is None else 1


if __name__ == "__main__":
    sys.exit(main())
