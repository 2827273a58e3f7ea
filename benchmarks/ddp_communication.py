"""Benchmark: what local extrapolation costs in DDP communication.

Run ``.venv/bin/python benchmarks/ddp_communication.py`` (about a minute on 2 cores) or with
``--quick`` (a smoke run whose timings are noise). It prints ONE JSON document on stdout
(everything else, including the worker processes' output, goes to stderr) and exits 0 unless a
measurement could not be made at all: speed is reported, never asserted. (How fast a trial
starts is ``benchmarks/trial_startup.py``'s subject.)

``models`` -- 2 gloo processes on this machine (``trainers.ddp_probe.run_gloo``, one
torch thread each), each with different data, train the same model (same initial weights) with
:class:`trainers.step.ExtrapStepper` in four configurations:

``sgd``                        ``ExtrapSGD(extrapolation="none")``: one forward/backward pass.
``local_extrap``               ``extrapolation="gradient"``, ``scope="local"`` (the paper): the
                               pass at x_t runs inside ``no_sync()``, only the pass at x_{t+1/2}
                               is all-reduced.
``global_extrap``              ``scope="global"``: both passes are all-reduced (for comparison).
``local_extrap_accumulate4``   ``local_extrap`` with the same per-rank batch split into 4
                               micro-batches: only the last micro-batch of the second pass syncs.

Models: ``mlp`` (the mnist1d workload's MLP, 40-256-256-10, no BatchNorm, one DDP bucket) and
``resnet20`` (``load_workload("resnet20-cifar10", {}).build_model()``: ResNet-20 with BatchNorm,
~0.27 M parameters in 59 tensors, two DDP buckets) on random inputs in [0, 1) (40 features for
the MLP, 3x32x32 images for ResNet-20) with random labels. DDP is built as the training loop
builds it (``broadcast_buffers=False``: BatchNorm statistics stay rank-local, so there is no
buffer broadcast before each forward).

Per configuration, after warm-up steps (DDP rebuilds its buckets after the first step), over the
measured steps, divided by the number of steps (the figures are identical on both ranks; the
JSON says whether they were):

``grad_allreduce_calls`` / ``grad_allreduce_bytes``
    Gradient all-reduces per optimizer step and the bytes of the buckets they carry, counted by
    :class:`trainers.ddp_probe.CommCounter`, a DDP comm hook (one call per bucket).
    ``grad_allreduce_bytes_per_param_bytes`` divides by the parameters' bytes: 1.0 means "the
    whole gradient once per step", as in plain DDP SGD.
``control_allreduce_calls`` / ``control_allreduce_bytes``
    The step's other collective: ``ExtrapStepper`` all-reduces 6 float64 values (loss sums, unit
    counts, a divergence flag) once per step here (``sync_every=1``, the path of workloads
    whose unit counts vary by rank, e.g. tokens; a classification trial does it once per window
    of ``CONTROL_SYNC_EVERY`` steps), so that every rank divides by the same global count and
    detects divergence together. MEASURED, not computed: each worker wraps
    ``torch.distributed.all_reduce`` and counts every call made during the step; the comm
    hook's calls go through that function too, so the control figures are that total minus the
    hook's counts (``allreduce_calls_total`` is the total). Other collective kinds are not
    wrapped: with ``broadcast_buffers=False`` DDP issues none per step, and a barrier that this
    benchmark places before each timed step lies outside the counted region.
``step_seconds_median``
    Median wall time of one ``ExtrapStepper.step`` (both ranks start it together after a
    barrier; a step's time is the slower rank's). The configurations run interleaved, one step
    each per round in a seeded shuffled order, so machine drift hits all alike. Two CPU
    processes on a shared 2-core machine: these figures are noisy and only the ratios mean
    anything. Two-pass variants compute two forward/backward passes, so expect up to ~2x SGD;
    local extrapolation's first pass communicates nothing, so it may come in below that.

``ratios``: ``local_vs_sgd_calls``/``_bytes`` (1.0: local extrapolation communicates exactly
what SGD does), ``global_vs_sgd_calls``/``_bytes`` (2.0), ``accumulate4_vs_local_calls``/
``_bytes`` (1.0: the all-reduce count does not grow with micro-batches), and
``step_time_*_vs_sgd`` (median over median).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

# The script runs from the repository root without the package being installed; the spawned
# gloo workers re-import this file as their main module, so this line runs there as well.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainers.ddp_probe import CommCounter, run_gloo
from trainers.optim import ExtrapSGD
from trainers.step import ExtrapStepper
from trainers.workloads import load_workload

WORLD_SIZE = 2
LR = 0.05
MOMENTUM = 0.9
# name -> (extrapolation, scope, micro-batches per step)
CONFIGS: dict[str, tuple[str, str, int]] = {
    "sgd": ("none", "local", 1),
    "local_extrap": ("gradient", "local", 1),
    "global_extrap": ("gradient", "global", 1),
    "local_extrap_accumulate4": ("gradient", "local", 4),
}


@dataclass(frozen=True)
class Plan:
    """How much to measure per model: samples per rank and step, warm-up and measured steps."""

    batch: dict[str, int]
    warmup: int
    rounds: dict[str, int]
    seed: int = 0


FULL_PLAN = Plan(batch={"mlp": 128, "resnet20": 32}, warmup=2, rounds={"mlp": 40, "resnet20": 12})
QUICK_PLAN = Plan(batch={"mlp": 16, "resnet20": 8}, warmup=1, rounds={"mlp": 3, "resnet20": 2})


# -- models and data --------------------------------------------------------------------------


def _mlp() -> nn.Module:
    return load_workload("mnist1d", {"hidden": 256}).build_model()


def _resnet20() -> nn.Module:
    return load_workload("resnet20-cifar10", {}).build_model()


MODELS: dict[str, Callable[[], nn.Module]] = {"mlp": _mlp, "resnet20": _resnet20}
INPUT_SHAPES: dict[str, tuple[int, ...]] = {"mlp": (40,), "resnet20": (3, 32, 32)}


def _rank_batch(name: str, batch: int, rank: int, seed: int) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(seed * 1000 + 17 * rank + 1)  # differs per rank
    inputs = torch.rand(batch, *INPUT_SHAPES[name], generator=generator)
    return inputs, torch.randint(0, 10, (batch,), generator=generator)


def _loss(model: nn.Module, batch: Any) -> tuple[Tensor, int]:
    inputs, labels = batch
    return nn.functional.cross_entropy(model(inputs), labels), len(inputs)


def _split(batch: tuple[Tensor, Tensor], parts: int) -> list[tuple[Tensor, Tensor]]:
    inputs, labels = batch
    size = len(inputs) // parts
    return [(inputs[i : i + size], labels[i : i + size]) for i in range(0, size * parts, size)]


# -- per-rank worker (spawned by run_gloo) ---------------------------------------------


class AllReduceTally:
    """Counts ``torch.distributed.all_reduce`` calls and bytes while ``current`` names a config.

    Installed by wrapping the module attribute, which both ``ExtrapStepper`` (its control
    all-reduce) and DDP's default comm hook (the gradient buckets) look up at call time.
    """

    def __init__(self) -> None:
        self.current: str | None = None
        self.calls: dict[str, int] = {}
        self.bytes: dict[str, int] = {}

    def reset(self) -> None:
        self.current = None
        self.calls.clear()
        self.bytes.clear()

    def install(self) -> None:
        original = dist.all_reduce

        def counted(tensor: Tensor, *args: Any, **kwargs: Any) -> Any:
            if self.current is not None:
                self.calls[self.current] = self.calls.get(self.current, 0) + 1
                size = tensor.numel() * tensor.element_size()
                self.bytes[self.current] = self.bytes.get(self.current, 0) + size
            return original(tensor, *args, **kwargs)

        dist.all_reduce = counted


def _measure_model(name: str, rank: int, plan: Plan, tally: AllReduceTally) -> dict[str, Any]:
    tally.reset()
    batch = _rank_batch(name, plan.batch[name], rank, plan.seed)
    steppers: dict[str, ExtrapStepper] = {}
    counters: dict[str, CommCounter] = {}
    micro: dict[str, list[tuple[Tensor, Tensor]]] = {}
    for config, (variant, scope, parts) in CONFIGS.items():
        torch.manual_seed(plan.seed)  # the same initial weights for every configuration
        ddp = DistributedDataParallel(MODELS[name](), broadcast_buffers=False)
        counters[config] = CommCounter()
        counters[config].attach(ddp)
        optimizer = ExtrapSGD(ddp.parameters(), lr=LR, momentum=MOMENTUM, extrapolation=variant)
        steppers[config] = ExtrapStepper(ddp, optimizer, _loss, scope=scope)
        micro[config] = _split(batch, parts)
    for _ in range(plan.warmup):
        for config, stepper in steppers.items():
            stepper.step(micro[config])
    for counter in counters.values():
        counter.reset()
    times: dict[str, list[float]] = {config: [] for config in CONFIGS}
    order = list(CONFIGS)
    shuffle = random.Random(plan.seed)  # the same order on every rank: collectives must match
    for _ in range(plan.rounds[name]):
        shuffle.shuffle(order)
        for config in order:
            dist.barrier()
            tally.current = config
            started = time.perf_counter()
            steppers[config].step(micro[config])
            times[config].append(time.perf_counter() - started)
            tally.current = None
    model = MODELS[name]()
    return {
        "param_bytes": sum(p.numel() * p.element_size() for p in model.parameters()),
        "param_tensors": len(list(model.parameters())),
        "batch_per_rank": plan.batch[name],
        "configs": {
            config: {
                "steps": plan.rounds[name],
                "grad_calls": counters[config].calls,
                "grad_bytes": counters[config].bytes,
                "allreduce_calls_total": tally.calls.get(config, 0),
                "allreduce_bytes_total": tally.bytes.get(config, 0),
                "step_seconds": times[config],
            }
            for config in CONFIGS
        },
    }


def rank_worker(rank: int, world_size: int, plan: dict[str, Any], out_dir: str) -> None:
    """Runs in each gloo process (module-level so that spawn can find it); writes JSON."""
    tally = AllReduceTally()
    tally.install()
    settings = Plan(**plan)
    results = {name: _measure_model(name, rank, settings, tally) for name in MODELS}
    dist.barrier()
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(results), encoding="utf-8")


# -- aggregation ----------------------------------------------------------------------


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


def _summarise(name: str, ranks: list[dict[str, Any]]) -> dict[str, Any]:
    first = ranks[0][name]
    counted = ("grad_calls", "grad_bytes", "allreduce_calls_total", "allreduce_bytes_total")
    agree = all(
        r[name]["configs"][c][key] == first["configs"][c][key]
        for r in ranks
        for c in CONFIGS
        for key in counted
    )
    per_step: dict[str, dict[str, Any]] = {}
    for config in CONFIGS:
        seen = first["configs"][config]
        steps = seen["steps"]
        grad_calls, grad_bytes = seen["grad_calls"] / steps, seen["grad_bytes"] / steps
        total_calls = seen["allreduce_calls_total"] / steps
        total_bytes = seen["allreduce_bytes_total"] / steps
        # a step lasts as long as its slower rank
        slowest = [
            max(t)
            for t in zip(*(r[name]["configs"][config]["step_seconds"] for r in ranks), strict=True)
        ]
        per_step[config] = {
            "grad_allreduce_calls": grad_calls,
            "grad_allreduce_bytes": grad_bytes,
            "grad_allreduce_bytes_per_param_bytes": grad_bytes / first["param_bytes"],
            "control_allreduce_calls": total_calls - grad_calls,
            "control_allreduce_bytes": total_bytes - grad_bytes,
            "allreduce_calls_total": total_calls,
            "step_seconds_median": statistics.median(slowest),
            "measured_steps": steps,
        }

    def figure(config: str, key: str) -> float:
        return float(per_step[config][key])

    calls, nbytes, secs = "grad_allreduce_calls", "grad_allreduce_bytes", "step_seconds_median"
    ratios = {
        "local_vs_sgd_calls": _ratio(figure("local_extrap", calls), figure("sgd", calls)),
        "local_vs_sgd_bytes": _ratio(figure("local_extrap", nbytes), figure("sgd", nbytes)),
        "global_vs_sgd_calls": _ratio(figure("global_extrap", calls), figure("sgd", calls)),
        "global_vs_sgd_bytes": _ratio(figure("global_extrap", nbytes), figure("sgd", nbytes)),
        "accumulate4_vs_local_calls": _ratio(
            figure("local_extrap_accumulate4", calls), figure("local_extrap", calls)
        ),
        "accumulate4_vs_local_bytes": _ratio(
            figure("local_extrap_accumulate4", nbytes), figure("local_extrap", nbytes)
        ),
        "step_time_local_vs_sgd": _ratio(figure("local_extrap", secs), figure("sgd", secs)),
        "step_time_global_vs_sgd": _ratio(figure("global_extrap", secs), figure("sgd", secs)),
        "step_time_accumulate4_vs_sgd": _ratio(
            figure("local_extrap_accumulate4", secs), figure("sgd", secs)
        ),
    }
    return {
        "param_bytes": first["param_bytes"],
        "param_tensors": first["param_tensors"],
        "batch_per_rank": first["batch_per_rank"],
        "counts_agree_across_ranks": agree,
        "per_step": per_step,
        "ratios": ratios,
    }


def measure_ddp(plan: Plan) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="ddp-comm-") as out:
        run_gloo(rank_worker, WORLD_SIZE, asdict(plan), out)
        ranks = [
            json.loads(Path(out, f"rank{r}.json").read_text(encoding="utf-8"))
            for r in range(WORLD_SIZE)
        ]
    return {name: _summarise(name, ranks) for name in MODELS}


# -- entry point ------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smoke run: seconds, noisy timings")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    plan = QUICK_PLAN if args.quick else FULL_PLAN
    plan = Plan(batch=plan.batch, warmup=plan.warmup, rounds=plan.rounds, seed=args.seed)
    # Keep stdout for the JSON alone: Ray, torch and the spawned workers write to stderr.
    sys.stdout.flush()
    json_out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    started = time.perf_counter()
    failed = False
    models: dict[str, Any] | None = None
    try:
        models = measure_ddp(plan)
    except Exception:
        traceback.print_exc()
        failed = True
    document = {
        "torch": torch.__version__,
        "world_size": WORLD_SIZE,
        "backend": "gloo",
        "threads_per_process": 1,
        "quick": args.quick,
        "seed": args.seed,
        "plan": asdict(plan),
        "models": models,
        "elapsed_s": time.perf_counter() - started,
        "command": shlex.join(getattr(sys, "orig_argv", [sys.executable, *sys.argv])),
    }
    json.dump(document, json_out, indent=2)
    json_out.write("\n")
    json_out.close()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
