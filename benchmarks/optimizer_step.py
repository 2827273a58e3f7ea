"""Benchmark: what ExtrapSGD costs per training step, per optimizer call and in memory.

Run ``.venv/bin/python benchmarks/optimizer_step.py`` (about 3 minutes on 2 cores) or with
``--quick`` (a smoke run, well under 20 s, whose figures are too noisy to quote). It prints one
JSON document to stdout and always exits 0: targets are reported beside the figures, never
asserted.

Every timing figure is a RATIO against a baseline measured in the same process, on the same
model, interleaved with it: each round runs every configuration once in a freshly shuffled
(seeded) order, so machine drift (other jobs on a shared host, frequency changes) and whatever
one configuration leaves behind for the next (caches, allocator state) hit all alike.
The figure is the median over rounds of a configuration divided by the baseline's median. A
ratio of 1.0 means "costs the same as the baseline"; 2.0 means "twice as long". Seeds and
``torch.set_num_threads`` are fixed (the JSON reports the thread count); absolute medians are
reported too (``*_us``) but only the ratios are meaningful across machines.

Models (CPU, float32): ``resnet20ish``, a ResNet-20-like CIFAR net (3 stages of 3 basic blocks,
16/32/64 channels, BatchNorm, 65 parameter tensors, ~0.27 M parameters) on 3x32x32 inputs; and
``mlp``, 3072-512-512-10 with ReLU (6 tensors, ~1.8 M parameters) on the same flattened inputs.
Many small tensors (ResNet) stress per-tensor Python overhead; few large ones (MLP) stress
memory bandwidth.

Per model, for the variants ``none``, ``gradient``, ``past`` and ``sam`` (lr 0.05, momentum
0.9, gamma = 0.1 * lr, sam radius 0.05):

``full_step_ratio_vs_sgd``
    One whole training step (zero_grad, forward, backward, optimizer) with ``ExtrapSGD`` at
    its defaults (``foreach=None``), divided by the same step with ``torch.optim.SGD`` (same lr
    and momentum, defaults). Two-pass variants (gradient, sam) run forward+backward twice, so
    ~2x is their floor; one-pass variants (none, past) run it once. Targets: gradient <= 2.05,
    past <= 1.05. ``sgd_control`` is a second, identical SGD run: its distance from 1.0 is the
    noise floor of this section (``none`` should read about the same).

``optimizer_only_ratio_vs_torch_sgd_foreach``
    ``extrapolate()`` + ``step()`` with gradients already in ``.grad`` (fixed; no forward or
    backward), divided by one ``step()`` of ``torch.optim.SGD(..., momentum=0.9,
    foreach=True)``. Reported for ``foreach`` = None (the default; on CPU torch picks the
    single-tensor path, as its SGD does), True and False. Target <= 3 (aim 2.5).
    ``torch_sgd_single_tensor_ratio_vs_foreach`` puts torch's own single-tensor SGD on the
    same scale, for reference.

``optimizer_only_ratio_vs_loop_baseline``
    The same ExtrapSGD timings divided by ``LoopExtrapSGD`` below: a straightforward Python
    loop over parameters doing the same variant (anchor clone, ``p.add_(d, alpha=...)``,
    restore ``copy_``, heavy-ball momentum update). Below 1.0 means ExtrapSGD beats the naive
    loop. ``loop_baseline_agrees`` checks the loop computes the same parameters.

``extra_memory_ratio``
    Bytes of every tensor in ``opt.state`` (anchor, past_grad, momentum_buffer) measured while
    extrapolated (the anchor exists only between ``extrapolate()`` and ``step()``), minus the
    bytes torch SGD keeps (its momentum buffers), divided by the parameters' bytes. Targets:
    <= 1 (<= 2 for past). ``none`` keeps exactly SGD's state, so its figure is 0.

``misses`` lists the figures that miss their target (empty when all are met).
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import random
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

# The script runs from the repository root without the package being installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainers.optim import ExtrapSGD

VARIANTS = ("none", "gradient", "past", "sam")
TWO_PASS = {"none": False, "gradient": True, "past": False, "sam": True}
FOREACH_SETTINGS: dict[str, bool | None] = {
    "foreach_none": None,
    "foreach_true": True,
    "foreach_false": False,
}
LR = 0.05
MOMENTUM = 0.9
GAMMA_RATIO = 0.1
SAM_RADIUS = 0.05
SAM_EPS = 1e-12

TARGETS: dict[str, Any] = {
    "full_step_ratio_vs_sgd_max": {"gradient": 2.05, "past": 1.05},
    "optimizer_only_ratio_vs_torch_sgd_foreach_max": 3.0,
    "optimizer_only_ratio_vs_torch_sgd_foreach_aim": 2.5,
    "extra_memory_ratio_max": {"none": 1.0, "gradient": 1.0, "past": 2.0, "sam": 1.0},
}


@dataclass(frozen=True)
class Plan:
    """How much to measure: warm-up and rounds per section, calls per timed block."""

    batch: int
    full_warmup: int
    full_rounds: dict[str, int]
    opt_warmup: int
    opt_rounds: dict[str, int]
    opt_calls_per_block: dict[str, int]


FULL_PLAN = Plan(
    batch=64,
    full_warmup=2,
    full_rounds={"resnet20ish": 26, "mlp": 120},
    opt_warmup=5,
    opt_rounds={"resnet20ish": 250, "mlp": 120},
    opt_calls_per_block={"resnet20ish": 4, "mlp": 2},
)
QUICK_PLAN = Plan(
    batch=8,
    full_warmup=1,
    full_rounds={"resnet20ish": 2, "mlp": 4},
    opt_warmup=2,
    opt_rounds={"resnet20ish": 8, "mlp": 6},
    opt_calls_per_block={"resnet20ish": 2, "mlp": 1},
)


# -- models ----------------------------------------------------------------------------------


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with a residual; a 1x1 conv-BN shortcut when the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNet20ish(nn.Module):
    """ResNet-20-like CIFAR network: 3 stages x 3 blocks, 16/32/64 channels, 10 classes."""

    def __init__(self, blocks_per_stage: int = 3, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16))
        layers: list[nn.Module] = []
        cin = 16
        for i, cout in enumerate((16, 32, 64)):
            for j in range(blocks_per_stage):
                layers.append(BasicBlock(cin, cout, stride=2 if i > 0 and j == 0 else 1))
                cin = cout
        self.blocks = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        out = self.blocks(torch.relu(self.stem(x)))
        logits: Tensor = self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(out, 1), 1))
        return logits


def make_mlp() -> nn.Module:
    """3072-512-512-10 MLP on flattened 3x32x32 inputs."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(3 * 32 * 32, 512),
        nn.ReLU(),
        nn.Linear(512, 512),
        nn.ReLU(),
        nn.Linear(512, 10),
    )


MODELS: dict[str, Callable[[], nn.Module]] = {"resnet20ish": ResNet20ish, "mlp": make_mlp}


def make_batches(batch: int, count: int, seed: int) -> list[tuple[Tensor, Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    return [
        (
            torch.randn(batch, 3, 32, 32, generator=generator),
            torch.randint(0, 10, (batch,), generator=generator),
        )
        for _ in range(count)
    ]


def loss_of(model: nn.Module, batch: tuple[Tensor, Tensor]) -> Tensor:
    x, y = batch
    return nn.functional.cross_entropy(model(x), y)


def backward(loss: Tensor) -> None:
    loss.backward()  # type: ignore[no-untyped-call]


def param_list(model: nn.Module) -> list[Tensor]:
    return [p for p in model.parameters() if p.requires_grad]


# -- the loop baseline -----------------------------------------------------------------------


class LoopExtrapSGD:
    """The straightforward per-parameter loop of extrapolate() + step(), no foreach, no frills.

    Same maths as ExtrapSGD for the variants benchmarked here (no weight decay, no Nesterov,
    no trust ratio): anchor clone + ``p.add_(d, alpha=...)`` in extrapolate(); restore
    ``copy_`` + heavy-ball momentum in step().
    """

    def __init__(self, params: Iterable[Tensor], variant: str, lr: float, momentum: float) -> None:
        self.params = [p for p in params if p.requires_grad]
        self.variant = variant
        self.lr = lr
        self.momentum = momentum
        self.gamma = SAM_RADIUS if variant == "sam" else GAMMA_RATIO * lr
        n = len(self.params)
        self.anchors: list[Tensor | None] = [None] * n
        self.buffers: list[Tensor | None] = [None] * n
        self.pasts: list[Tensor | None] = [None] * n

    @torch.no_grad()
    def extrapolate(self) -> None:
        if self.variant == "none":
            return
        alpha = -self.gamma
        if self.variant == "sam":
            norms = [torch.linalg.vector_norm(p.grad) for p in self.params if p.grad is not None]
            alpha = self.gamma / (torch.linalg.vector_norm(torch.stack(norms)).item() + SAM_EPS)
        for i, p in enumerate(self.params):
            d = self.pasts[i] if self.variant == "past" else p.grad
            if d is None:
                continue
            self.anchors[i] = p.detach().clone()
            p.add_(d, alpha=alpha)

    @torch.no_grad()
    def step(self) -> None:
        for i, p in enumerate(self.params):
            anchor = self.anchors[i]
            if anchor is not None:
                p.copy_(anchor)
                self.anchors[i] = None
            g = p.grad
            if g is None:
                continue
            if self.variant == "past":
                past = self.pasts[i]
                if past is None:
                    self.pasts[i] = g.detach().clone()
                else:
                    past.copy_(g)
            buf = self.buffers[i]
            if buf is None:
                buf = g.detach().clone()
                self.buffers[i] = buf
            else:
                buf.mul_(self.momentum).add_(g)
            p.add_(buf, alpha=-self.lr)


# -- helpers ---------------------------------------------------------------------------------


def make_extrap(params: Iterable[Tensor], variant: str, foreach: bool | None) -> ExtrapSGD:
    gamma = SAM_RADIUS if variant == "sam" else None
    return ExtrapSGD(
        params,
        lr=LR,
        momentum=MOMENTUM,
        extrapolation=variant,
        gamma=gamma,
        gamma_ratio=GAMMA_RATIO,
        seed=0,
        foreach=foreach,
    )


def set_grads(model: nn.Module, grads: list[Tensor]) -> None:
    for p, g in zip(param_list(model), grads, strict=True):
        p.grad = g.clone()


def fixed_grads(model: nn.Module, batch: tuple[Tensor, Tensor]) -> list[Tensor]:
    model.zero_grad(set_to_none=True)
    backward(loss_of(model, batch))
    grads = [p.grad.detach().clone() for p in param_list(model) if p.grad is not None]
    model.zero_grad(set_to_none=True)
    return grads


def interleaved_medians(
    configs: dict[str, Callable[[], None]], warmup: int, rounds: int, calls: int, seed: int
) -> dict[str, float]:
    """Median seconds per call of every config; each round runs all configs in a fresh order.

    The order is shuffled (seeded) every round, so neither drift nor whatever one config leaves
    behind for the next (caches, allocator state) favours a fixed neighbour.
    """
    names = list(configs)
    for _ in range(warmup):
        for name in names:
            configs[name]()
    samples: dict[str, list[float]] = {name: [] for name in names}
    order = random.Random(seed)
    gc.collect()
    gc.disable()
    try:
        for _ in range(rounds):
            shuffled = names[:]
            order.shuffle(shuffled)
            for name in shuffled:
                fn = configs[name]
                start = time.perf_counter()
                for _ in range(calls):
                    fn()
                samples[name].append((time.perf_counter() - start) / calls)
    finally:
        gc.enable()
    return {name: statistics.median(values) for name, values in samples.items()}


def _call(fn: Callable[[], Any]) -> Callable[[], None]:
    def run() -> None:
        fn()

    return run


def state_bytes(opt: torch.optim.Optimizer) -> int:
    total = 0
    for entry in opt.state.values():
        for value in entry.values():
            if isinstance(value, Tensor):
                total += value.nbytes
    return total


# -- sections --------------------------------------------------------------------------------


def full_step_section(
    name: str, plan: Plan, seed: int
) -> tuple[dict[str, float], dict[str, float]]:
    torch.manual_seed(seed)
    base = MODELS[name]()
    batches = make_batches(plan.batch, 4, seed + 1)
    configs: dict[str, Callable[[], None]] = {}

    def sgd_step_fn() -> Callable[[], None]:
        model = copy.deepcopy(base)
        opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
        counter = [0]

        def run() -> None:
            batch = batches[counter[0] % len(batches)]
            counter[0] += 1
            opt.zero_grad(set_to_none=True)
            backward(loss_of(model, batch))
            opt.step()

        return run

    def extrap_step_fn(variant: str) -> Callable[[], None]:
        model = copy.deepcopy(base)
        opt = make_extrap(model.parameters(), variant, foreach=None)
        two_pass = TWO_PASS[variant]
        counter = [0]

        def run() -> None:
            batch = batches[counter[0] % len(batches)]
            counter[0] += 1
            opt.zero_grad(set_to_none=True)
            if two_pass:
                backward(loss_of(model, batch))
            opt.extrapolate()
            if two_pass:
                opt.zero_grad(set_to_none=True)
            backward(loss_of(model, batch))
            opt.step()

        return run

    configs["sgd"] = sgd_step_fn()
    configs["sgd_control"] = sgd_step_fn()  # a second, identical SGD: the noise floor
    for variant in VARIANTS:
        configs[variant] = extrap_step_fn(variant)
    medians = interleaved_medians(
        configs, plan.full_warmup, plan.full_rounds[name], calls=1, seed=seed
    )
    ratios = {v: medians[v] / medians["sgd"] for v in VARIANTS}
    ratios["sgd_control"] = medians["sgd_control"] / medians["sgd"]
    return ratios, {k: v * 1e6 for k, v in medians.items()}


def optimizer_only_section(name: str, plan: Plan, seed: int) -> dict[str, Any]:
    torch.manual_seed(seed)
    base = MODELS[name]()
    grads = fixed_grads(base, make_batches(plan.batch, 1, seed + 1)[0])
    configs: dict[str, Callable[[], None]] = {}

    def prepared() -> nn.Module:
        model = copy.deepcopy(base)
        set_grads(model, grads)
        return model

    for label, sgd_foreach in (("torch_sgd_foreach", True), ("torch_sgd_single", False)):
        sgd = torch.optim.SGD(
            prepared().parameters(), lr=LR, momentum=MOMENTUM, foreach=sgd_foreach
        )
        configs[label] = _call(sgd.step)

    def cycle(opt: ExtrapSGD | LoopExtrapSGD) -> Callable[[], None]:
        def run() -> None:
            opt.extrapolate()
            opt.step()

        return run

    for variant in VARIANTS:
        configs[f"loop/{variant}"] = cycle(
            LoopExtrapSGD(prepared().parameters(), variant, LR, MOMENTUM)
        )
        for setting, foreach in FOREACH_SETTINGS.items():
            opt = make_extrap(prepared().parameters(), variant, foreach)
            configs[f"{variant}/{setting}"] = cycle(opt)
    medians = interleaved_medians(
        configs, plan.opt_warmup, plan.opt_rounds[name], plan.opt_calls_per_block[name], seed
    )
    sgd_step = medians["torch_sgd_foreach"]
    return {
        "vs_torch_sgd_foreach": {
            v: {s: medians[f"{v}/{s}"] / sgd_step for s in FOREACH_SETTINGS} for v in VARIANTS
        },
        "vs_loop": {
            v: {s: medians[f"{v}/{s}"] / medians[f"loop/{v}"] for s in FOREACH_SETTINGS}
            for v in VARIANTS
        },
        "loop_vs_torch_sgd_foreach": {v: medians[f"loop/{v}"] / sgd_step for v in VARIANTS},
        "torch_sgd_single_vs_foreach": medians["torch_sgd_single"] / sgd_step,
        "medians_us": {k: v * 1e6 for k, v in medians.items()},
    }


def extra_memory_section(name: str, seed: int) -> tuple[dict[str, float], dict[str, int]]:
    torch.manual_seed(seed)
    base = MODELS[name]()
    grads = fixed_grads(base, make_batches(4, 1, seed + 1)[0])
    param_bytes = sum(p.nbytes for p in param_list(base))

    sgd_model = copy.deepcopy(base)
    set_grads(sgd_model, grads)
    sgd = torch.optim.SGD(sgd_model.parameters(), lr=LR, momentum=MOMENTUM)
    for _ in range(2):
        sgd.step()
    sgd_bytes = state_bytes(sgd)

    ratios: dict[str, float] = {}
    extra: dict[str, int] = {}
    for variant in VARIANTS:
        model = copy.deepcopy(base)
        set_grads(model, grads)
        opt = make_extrap(model.parameters(), variant, foreach=None)
        for _ in range(2):
            opt.extrapolate()
            opt.step()
        opt.extrapolate()  # the anchor exists only now, between extrapolate() and step()
        extra[variant] = state_bytes(opt) - sgd_bytes
        opt.step()
        ratios[variant] = extra[variant] / param_bytes
    return ratios, extra


def loop_baseline_agrees(name: str, seed: int) -> bool:
    """The loop baseline and ExtrapSGD (both foreach paths) give the same parameters."""
    torch.manual_seed(seed)
    base = MODELS[name]()
    batches = make_batches(4, 3, seed + 2)
    grad_seq = [fixed_grads(base, b) for b in batches]
    for variant in VARIANTS:
        results = []
        for kind in ("loop", False, True):
            model = copy.deepcopy(base)
            params = param_list(model)
            opt: ExtrapSGD | LoopExtrapSGD
            if kind == "loop":
                opt = LoopExtrapSGD(params, variant, LR, MOMENTUM)
            else:
                opt = make_extrap(params, variant, foreach=bool(kind))
            for g in grad_seq:
                set_grads(model, g)
                opt.extrapolate()
                set_grads(model, [x * 0.5 for x in g])  # a different "second" gradient
                opt.step()
            results.append(torch.cat([p.detach().reshape(-1) for p in params]))
        if not all(torch.allclose(results[0], r, rtol=1e-5, atol=1e-6) for r in results[1:]):
            return False
    return True


def misses_of(model: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for variant, limit in TARGETS["full_step_ratio_vs_sgd_max"].items():
        value = model["full_step_ratio_vs_sgd"][variant]
        if value > limit:
            out.append(f"full_step_ratio_vs_sgd.{variant}={value:.3f} > {limit}")
    limit = TARGETS["optimizer_only_ratio_vs_torch_sgd_foreach_max"]
    for variant, settings in model["optimizer_only_ratio_vs_torch_sgd_foreach"].items():
        for setting, value in settings.items():
            if value > limit:
                out.append(
                    f"optimizer_only_ratio_vs_torch_sgd_foreach.{variant}.{setting}"
                    f"={value:.3f} > {limit}"
                )
    for variant, limit in TARGETS["extra_memory_ratio_max"].items():
        value = model["extra_memory_ratio"][variant]
        if value > limit:
            out.append(f"extra_memory_ratio.{variant}={value:.3f} > {limit}")
    return out


def run_model(name: str, plan: Plan, seed: int) -> dict[str, Any]:
    params = sum(p.numel() for p in param_list(MODELS[name]()))
    full_ratios, full_us = full_step_section(name, plan, seed)
    opt_only = optimizer_only_section(name, plan, seed)
    memory_ratios, memory_bytes = extra_memory_section(name, seed)
    result: dict[str, Any] = {
        "params": params,
        "param_tensors": len(param_list(MODELS[name]())),
        "batch": plan.batch,
        "full_step_ratio_vs_sgd": full_ratios,
        "optimizer_only_ratio_vs_torch_sgd_foreach": opt_only["vs_torch_sgd_foreach"],
        "optimizer_only_ratio_vs_loop_baseline": opt_only["vs_loop"],
        "loop_baseline_ratio_vs_torch_sgd_foreach": opt_only["loop_vs_torch_sgd_foreach"],
        "torch_sgd_single_tensor_ratio_vs_foreach": opt_only["torch_sgd_single_vs_foreach"],
        "extra_memory_ratio": memory_ratios,
        "extra_memory_bytes": memory_bytes,
        "full_step_median_us": full_us,
        "optimizer_only_median_us": opt_only["medians_us"],
        "loop_baseline_agrees": loop_baseline_agrees(name, seed),
        "targets": TARGETS,
    }
    result["misses"] = misses_of(result)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smoke run: seconds, noisy figures")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (1)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    plan = QUICK_PLAN if args.quick else FULL_PLAN
    started = time.perf_counter()
    models = {name: run_model(name, plan, args.seed) for name in MODELS}
    document = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "quick": args.quick,
        "seed": args.seed,
        "models": models,
        "misses": [f"{name}.{m}" for name, model in models.items() for m in model["misses"]],
        "elapsed_s": time.perf_counter() - started,
        "command": shlex.join(getattr(sys, "orig_argv", [sys.executable, *sys.argv])),
    }
    json.dump(document, sys.stdout, indent=2, allow_nan=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
