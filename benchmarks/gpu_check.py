"""GPU check: ExtrapSGD's foreach path and one worker's ResNet-20 training loop on CUDA.

Needs Python and torch only (the GPU machines have neither Ray, MLflow, Optuna, pydantic nor,
necessarily, numpy): it imports ``trainers.optim``, ``trainers.step``, ``trainers.batches`` and
``trainers.workloads._resnet``, all torch-only. Run it through ``benchmarks/gpu_check.sh`` (the
repository on PYTHONPATH; the JSON goes to ``$OUT/gpu_check.json`` when ``$OUT`` is set), or::

    PYTHONPATH=. python3 benchmarks/gpu_check.py                      # CUDA: about 1-2 minutes
    PYTHONPATH=. python3 benchmarks/gpu_check.py --device cpu --quick # smoke run on a CPU

It prints one JSON document to stdout and exits 0 whatever the figures: they are reported,
never asserted. Every timing is a ratio against a baseline measured in the same process,
interleaved with it (each round runs every configuration once in a freshly shuffled, seeded
order; the figure is the median over rounds). A guard (``--budget-s``, 200 s by default) skips
what is left once the budget is spent, so a full run ends well inside 4 minutes on an H200.

``optimizer`` -- per model (``resnet20``: ResNet-20, 0.27 M parameters in 59 tensors, launch-
bound; ``resnet20_w4``: width x4, 4.3 M parameters, more bandwidth-bound; ``--quick``: ResNet-20
alone) and per variant (none,
gradient, noise, gradient+noise, past, sam; lr 0.05, momentum 0.9, gamma = 0.1 lr, noise std
0.01, SAM radius 0.05), with fixed gradients in ``.grad``: ``extrapolate()`` + ``step()`` of
``ExtrapSGD(foreach=True)`` (and ``foreach=False``, and the default ``None``) divided by one
``step()`` of ``torch.optim.SGD(momentum=0.9, foreach=True)``. Blocks of calls are timed
between ``torch.cuda.synchronize()`` calls. Target (issue 12, on CPU): <= 3.

``training`` -- per precision (``fp32``; ``bf16`` = ``torch.autocast(bfloat16)``, as the
product's ``precision: bf16``): one worker (world size 1) trains ResNet-20 on synthetic
CIFAR-shaped data (uint8 images [N, 3, 32, 32] and labels, resident on the device) with the
random crop + flip augmentation, batch ``--batch`` (512):

``plain_sgd``          a plain torch loop: ``randperm``, index, augment, forward, backward,
                       ``torch.optim.SGD(momentum=0.9)`` (torch's default foreach choice).
``plain_<variant>``    the same plain loop with ``ExtrapSGD`` (two-pass variants: backward at
                       x_t, ``extrapolate()``, zero_grad, backward at x_{t+1/2}, ``step()``).
``product_<variant>``  the product's training loop (the body of ``trainers.epoch.train_epoch``):
                       ``EpochPlan`` index batches, ``ExtrapStepper.step`` (which also frees
                       BatchNorm statistics of the second pass and all-reduces nothing here but
                       reads its loss sums back to the host once per window of
                       ``CONTROL_SYNC_EVERY`` steps, as a trial does), the lr and gamma
                       schedulers.

Reported: ``images_per_second`` (each image counted once per optimizer step, whatever the
passes), the ratios ``product_<v>_vs_plain_<v>`` (the loop's overhead at equal work; 1.0 is
free) and ``<config>_vs_plain_sgd``; and ``peak_memory``: per configuration, built alone,
``torch.cuda.max_memory_allocated`` over a few steps (``peak_mib``) and that minus what was
allocated before it was built (the data: ``peak_over_data_mib``). On a CPU the memory figures
are null and ``max_rss_mib`` gives the process's peak resident set.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import platform
import random
import resource
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# Runs from the repository root without the package installed (gpu_check.sh sets PYTHONPATH).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainers.batches import EpochPlan
from trainers.optim import ExtrapSGD, GammaScheduler, build_lr_scheduler
from trainers.step import CONTROL_SYNC_EVERY, ExtrapStepper
from trainers.workloads._resnet import ResNetCIFAR, random_crop_flip

OPTIMIZER_VARIANTS = ("none", "gradient", "noise", "gradient+noise", "past", "sam")
TRAINING_VARIANTS = ("none", "gradient")
LR = 0.05
MOMENTUM = 0.9
GAMMA_RATIO = 0.1
NOISE_STD = 0.01
SAM_RADIUS = 0.05
NUM_CLASSES = 10
# CIFAR-10's channel statistics (any constants would do for synthetic images).
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)
MODEL_WIDTHS = {"resnet20": 1.0, "resnet20_w4": 4.0}
TARGETS = {"optimizer_only_ratio_vs_torch_sgd_foreach_max": 3.0}


@dataclass(frozen=True)
class Plan:
    """How much to measure."""

    models: tuple[str, ...]  # of MODEL_WIDTHS, for the optimizer section
    images: int  # synthetic training images resident on the device
    batch: int
    train_warmup_rounds: int
    train_rounds: int
    steps_per_round: int
    memory_steps: int
    opt_warmup: int
    opt_rounds: int
    opt_calls_per_block: int


FULL_PLAN = Plan(
    models=("resnet20", "resnet20_w4"),
    images=50_000,
    batch=512,
    train_warmup_rounds=1,
    train_rounds=6,
    steps_per_round=20,
    memory_steps=3,
    opt_warmup=5,
    opt_rounds=30,
    opt_calls_per_block=20,
)
QUICK_PLAN = Plan(
    models=("resnet20",),
    images=64,
    batch=8,
    train_warmup_rounds=0,
    train_rounds=1,
    steps_per_round=1,
    memory_steps=1,
    opt_warmup=1,
    opt_rounds=2,
    opt_calls_per_block=1,
)


class Budget:
    """Wall-clock guard: sections skip what is left once it is spent, and timing loops stop
    after the round that crosses their share of it (the optimizer section gets 40%)."""

    def __init__(self, seconds: float) -> None:
        self.started = time.perf_counter()
        self.seconds = seconds
        self.deadline = self.started + seconds
        self.skipped: list[str] = []

    def spent(self, what: str) -> bool:
        if time.perf_counter() < self.deadline:
            return False
        self.skipped.append(what)
        return True

    def share(self, fraction: float) -> float:
        """The deadline of the first ``fraction`` of the budget."""
        return self.started + fraction * self.seconds


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _model(width: float, device: torch.device, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return ResNetCIFAR(NUM_CLASSES, MEAN, STD, width_multiplier=width).to(device)


def _extrap(params: Any, variant: str, foreach: bool | None) -> ExtrapSGD:
    return ExtrapSGD(
        params,
        lr=LR,
        momentum=MOMENTUM,
        extrapolation=variant,
        gamma=SAM_RADIUS if variant == "sam" else None,
        gamma_ratio=GAMMA_RATIO,
        noise_std=NOISE_STD if "noise" in variant else 0.0,
        seed=0,
        foreach=foreach,
    )


def interleaved_medians(
    configs: dict[str, Callable[[], int]],
    *,
    warmup: int,
    rounds: int,
    device: torch.device,
    seed: int,
    deadline: float = float("inf"),
    budget: Budget | None = None,
    label: str = "",
) -> dict[str, float]:
    """Median seconds per unit of every config; ``configs[name]()`` runs a block, returns units.

    Each round runs every config once in a freshly shuffled (seeded) order, between device
    synchronisations, so drift and whatever one config leaves behind hit all alike. Rounds stop
    early (after at least one) once ``time.perf_counter()`` passes ``deadline``; ``budget``
    then records it as ``<label>: N of M rounds``.
    """
    names = list(configs)
    for _ in range(warmup):
        for name in names:
            configs[name]()
    _sync(device)
    samples: dict[str, list[float]] = {name: [] for name in names}
    order = random.Random(seed)
    gc.collect()
    gc.disable()
    try:
        for done in range(rounds):
            if done and time.perf_counter() > deadline:
                if budget is not None:
                    budget.skipped.append(f"{label}: {done} of {rounds} rounds")
                break
            shuffled = names[:]
            order.shuffle(shuffled)
            for name in shuffled:
                _sync(device)
                started = time.perf_counter()
                units = configs[name]()
                _sync(device)
                samples[name].append((time.perf_counter() - started) / max(units, 1))
    finally:
        gc.enable()
    return {name: statistics.median(values) for name, values in samples.items()}


# -- optimizer only ------------------------------------------------------------------------


def _optimizer_model(
    name: str, width: float, device: torch.device, plan: Plan, seed: int, budget: Budget
) -> dict[str, Any]:
    base = _model(width, device, seed)
    images = torch.randint(0, 256, (plan.batch, 3, 32, 32), dtype=torch.uint8, device=device)
    labels = torch.randint(0, NUM_CLASSES, (plan.batch,), device=device)
    F.cross_entropy(base(images), labels).backward()  # type: ignore[no-untyped-call]
    grads = [p.grad.detach().clone() for p in base.parameters() if p.grad is not None]
    state = {k: v.detach().clone() for k, v in base.state_dict().items()}
    calls = plan.opt_calls_per_block

    def prepared() -> nn.Module:
        model = ResNetCIFAR(NUM_CLASSES, MEAN, STD, width_multiplier=width).to(device)
        model.load_state_dict(state)
        for param, grad in zip(model.parameters(), grads, strict=True):
            param.grad = grad.clone()
        return model

    def sgd_block() -> Callable[[], int]:
        opt = torch.optim.SGD(prepared().parameters(), lr=LR, momentum=MOMENTUM, foreach=True)

        def run() -> int:
            for _ in range(calls):
                opt.step()
            return calls

        return run

    def extrap_block(variant: str, foreach: bool | None) -> Callable[[], int]:
        opt = _extrap(prepared().parameters(), variant, foreach)

        def run() -> int:
            for _ in range(calls):
                opt.extrapolate()
                opt.step()
            return calls

        return run

    configs: dict[str, Callable[[], int]] = {"torch_sgd_foreach": sgd_block()}
    settings = {"foreach_true": True, "foreach_false": False, "foreach_none": None}
    for variant in OPTIMIZER_VARIANTS:
        for setting, foreach in settings.items():
            configs[f"{variant}/{setting}"] = extrap_block(variant, foreach)
    medians = interleaved_medians(
        configs,
        warmup=plan.opt_warmup,
        rounds=plan.opt_rounds,
        device=device,
        seed=seed,
        deadline=budget.share(0.4),
        budget=budget,
        label=f"optimizer.{name}",
    )
    baseline = medians["torch_sgd_foreach"]
    ratios = {
        variant: {setting: medians[f"{variant}/{setting}"] / baseline for setting in settings}
        for variant in OPTIMIZER_VARIANTS
    }
    limit = TARGETS["optimizer_only_ratio_vs_torch_sgd_foreach_max"]
    return {
        "params": sum(p.numel() for p in base.parameters()),
        "param_tensors": len(list(base.parameters())),
        "ratio_vs_torch_sgd_foreach": ratios,
        "median_us": {key: value * 1e6 for key, value in medians.items()},
        "misses": [
            f"{variant}.foreach_true={r['foreach_true']:.2f} > {limit}"
            for variant, r in ratios.items()
            if r["foreach_true"] > limit
        ],
    }


def optimizer_section(
    device: torch.device, plan: Plan, seed: int, budget: Budget
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name in plan.models:
        if budget.spent(f"optimizer.{name}"):
            continue
        results[name] = _optimizer_model(name, MODEL_WIDTHS[name], device, plan, seed, budget)
        gc.collect()
    return results


# -- one worker's training loop ------------------------------------------------------------


class _Data:
    """Synthetic CIFAR-shaped training data, resident on the device."""

    def __init__(self, images: int, device: torch.device, seed: int) -> None:
        generator = torch.Generator(device="cpu").manual_seed(seed)
        self.images = torch.randint(
            0, 256, (images, 3, 32, 32), dtype=torch.uint8, generator=generator
        ).to(device)
        self.labels = torch.randint(0, NUM_CLASSES, (images,), generator=generator).to(device)

    def take(self, index: Tensor) -> tuple[Tensor, Tensor]:
        # TensorSplit.take's body: one gather per tensor.
        return self.images[index], self.labels[index]


def _loss(model: nn.Module, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, int]:
    images, labels = batch
    # The CIFAR workloads' train_transform, then their loss (mean cross-entropy, sample count).
    return F.cross_entropy(model(random_crop_flip(images)), labels), len(labels)


def _autocast(device: torch.device, dtype: torch.dtype | None) -> Any:
    if dtype is None:
        return torch.autocast(device_type=device.type, enabled=False)
    return torch.autocast(device_type=device.type, dtype=dtype)


class _Loop:
    """A configuration of the training section: ``run(steps)`` trains that many steps."""

    def __init__(self, steps: Callable[[], Iterator[None]]) -> None:
        self._make = steps
        self._steps = steps()

    def run(self, count: int) -> int:
        done = 0
        while done < count:
            try:
                next(self._steps)
            except StopIteration:  # the epoch is over: the next one
                self._steps = self._make()
                continue
            done += 1
        return done


def plain_loop(
    data: _Data,
    batch: int,
    device: torch.device,
    dtype: torch.dtype | None,
    optimizer: str,
    seed: int,
) -> _Loop:
    """The plain torch loop; ``optimizer`` is "sgd" (torch's SGD) or an ExtrapSGD variant."""
    model = _model(1.0, device, seed)
    model.train()
    if optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
        two_pass, extrap = False, None
    else:
        extrap = _extrap(model.parameters(), optimizer, None)
        opt, two_pass = extrap, extrap.two_pass

    def backward(batch_rows: tuple[Tensor, Tensor]) -> None:
        with _autocast(device, dtype):
            loss, _ = _loss(model, batch_rows)
        loss.float().backward()  # type: ignore[no-untyped-call]

    def epoch() -> Iterator[None]:
        permutation = torch.randperm(len(data.labels), device=device)
        for start in range(0, len(permutation) - batch + 1, batch):
            rows = data.take(permutation[start : start + batch])
            opt.zero_grad(set_to_none=True)
            if extrap is not None:
                if two_pass:
                    backward(rows)
                extrap.extrapolate()
                if two_pass:
                    opt.zero_grad(set_to_none=True)
            backward(rows)
            opt.step()
            yield

    return _Loop(epoch)


def product_loop(
    data: _Data,
    batch: int,
    device: torch.device,
    dtype: torch.dtype | None,
    variant: str,
    seed: int,
) -> _Loop:
    """The product's loop: ``trainers.epoch.train_epoch`` minus its bookkeeping."""
    model = _model(1.0, device, seed)
    model.train()
    plan = EpochPlan(
        num_samples=len(data.labels), world_size=1, rank=0, micro_batch=batch, accumulation=1
    )
    optimizer = _extrap(model.parameters(), variant, None)
    epochs = 1000  # the schedules' horizon: far beyond what is measured
    lr_scheduler = build_lr_scheduler(
        optimizer, steps_per_epoch=plan.steps_per_epoch, epochs=epochs
    )
    gamma_scheduler = GammaScheduler(
        optimizer, "follow_lr", total_steps=plan.steps_per_epoch * epochs
    )
    stepper = ExtrapStepper(
        model,
        optimizer,
        _loss,
        autocast_dtype=dtype,
        units_equal_across_ranks=True,  # as the product's classification workloads
        sync_every=CONTROL_SYNC_EVERY,
    )
    epoch_counter = itertools.count()

    def epoch() -> Iterator[None]:
        loss_sum, units = 0.0, 0
        for rows in plan.steps(seed, next(epoch_counter), device):
            result = stepper.step([data.take(index) for index in rows])
            if result is not None:  # a window closed: one host synchronisation
                loss_sum += result.loss * result.units
                units += result.units
            lr_scheduler.step()
            gamma_scheduler.step()
            yield
        last = stepper.flush()  # the epoch's partial window, as train_epoch closes it
        if last is not None:
            loss_sum += last.loss * last.units
            units += last.units

    return _Loop(epoch)


def _builders(
    data: _Data, plan: Plan, device: torch.device, dtype: torch.dtype | None, seed: int
) -> dict[str, Callable[[], _Loop]]:
    def plain(optimizer: str) -> Callable[[], _Loop]:
        return lambda: plain_loop(data, plan.batch, device, dtype, optimizer, seed)

    def product(variant: str) -> Callable[[], _Loop]:
        return lambda: product_loop(data, plan.batch, device, dtype, variant, seed)

    builders = {"plain_sgd": plain("sgd")}
    for variant in TRAINING_VARIANTS:
        builders[f"plain_{variant}"] = plain(variant)
        builders[f"product_{variant}"] = product(variant)
    return builders


def _images_block(loop: _Loop, steps: int, batch: int) -> Callable[[], int]:
    def run() -> int:
        return loop.run(steps) * batch

    return run


def _peak_memory(
    build: Callable[[], _Loop], steps: int, device: torch.device
) -> dict[str, float | None]:
    if device.type != "cuda":
        return {"peak_mib": None, "peak_over_data_mib": None}
    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    loop = build()
    loop.run(steps)
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device)
    del loop
    gc.collect()
    torch.cuda.empty_cache()
    mib = 1024.0**2
    return {"peak_mib": peak / mib, "peak_over_data_mib": (peak - before) / mib}


def training_section(device: torch.device, plan: Plan, seed: int, budget: Budget) -> dict[str, Any]:
    data = _Data(plan.images, device, seed)
    results: dict[str, Any] = {
        "images": plan.images,
        "batch": plan.batch,
        "data_mib": (data.images.nbytes + data.labels.nbytes) / 1024.0**2,
    }
    precisions: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16}
    for precision, dtype in precisions.items():
        if budget.spent(f"training.{precision}"):
            continue
        builders = _builders(data, plan, device, dtype, seed)
        memory = {
            name: _peak_memory(build, plan.memory_steps, device) for name, build in builders.items()
        }
        configs = {
            name: _images_block(build(), plan.steps_per_round, plan.batch)
            for name, build in builders.items()
        }
        seconds_per_image = interleaved_medians(
            configs,
            warmup=plan.train_warmup_rounds,
            rounds=plan.train_rounds,
            device=device,
            seed=seed,
            deadline=budget.deadline,
            budget=budget,
            label=f"training.{precision}",
        )
        rate = {name: 1.0 / value for name, value in seconds_per_image.items()}
        ratios = {
            f"product_{v}_vs_plain_{v}": rate[f"product_{v}"] / rate[f"plain_{v}"]
            for v in TRAINING_VARIANTS
        }
        ratios.update({f"{name}_vs_plain_sgd": rate[name] / rate["plain_sgd"] for name in rate})
        results[precision] = {
            "images_per_second": rate,
            "throughput_ratios": ratios,
            "peak_memory": memory,
        }
        del configs
        gc.collect()
    return results


# -- entry point -----------------------------------------------------------------------------


def _device_info(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {
        "device": str(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(
            {
                "name": props.name,
                "memory_gib": props.total_memory / 1024.0**3,
                "capability": f"{props.major}.{props.minor}",
                "cuda": torch.version.cuda,
                "cudnn": torch.backends.cudnn.version(),  # type: ignore[no-untyped-call]
                "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
                "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
            }
        )
    else:
        info["name"] = platform.processor() or platform.machine()
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--device", default="auto", help="cuda, cuda:N, cpu or auto (default)")
    parser.add_argument("--quick", action="store_true", help="smoke run: seconds, noisy figures")
    parser.add_argument("--batch", type=int, default=None, help="training batch (512)")
    parser.add_argument("--budget-s", type=float, default=200.0, help="skip what is left after")
    parser.add_argument("--cudnn-benchmark", action="store_true", help="cudnn.benchmark = True")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: 1 on a CPU)"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    started = time.perf_counter()
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(args.device)
    threads = args.threads or (1 if device.type == "cpu" else None)
    if threads:  # one thread on a shared CPU: several would fight the other jobs for cores
        torch.set_num_threads(threads)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    plan = QUICK_PLAN if args.quick else FULL_PLAN
    if args.batch:
        plan = Plan(**{**asdict(plan), "batch": args.batch})
    budget = Budget(args.budget_s)
    document: dict[str, Any] = {
        "benchmark": "gpu_check",
        "quick": args.quick,
        "seed": args.seed,
        "plan": asdict(plan),
        "machine": _device_info(device),
        "targets": TARGETS,
    }
    document["optimizer"] = optimizer_section(device, plan, args.seed, budget)
    document["training"] = training_section(device, plan, args.seed, budget)
    document["skipped"] = budget.skipped
    document["max_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    document["misses"] = [
        f"optimizer.{name}.{miss}"
        for name, model in document["optimizer"].items()
        for miss in model["misses"]
    ]
    document["elapsed_s"] = time.perf_counter() - started
    document["command"] = shlex.join(getattr(sys, "orig_argv", [sys.executable, *sys.argv]))
    json.dump(document, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
