"""The training step: local extrapolation under DDP, communication, accumulation, BatchNorm."""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from trainers.ddp_probe import CommCounter, run_gloo
from trainers.optim import ExtrapSGD
from trainers.step import ExtrapStepper, StepResult

LR, GAMMA = 0.5, 0.2


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))


def _rank_batch(rank: int, n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(100 + rank)  # different data on every rank
    return torch.randn(n, 6, generator=g), torch.randint(0, 3, (n,), generator=g)


def _loss(model: torch.nn.Module, batch: Any) -> tuple[torch.Tensor, int]:
    x, y = batch
    return torch.nn.functional.cross_entropy(model(x), y), len(x)


def _closed(result: StepResult | None) -> StepResult:
    """A step's result where the step synchronises on its own (``sync_every=1``)."""
    assert result is not None
    return result


def _ddp_scenarios(rank: int, world_size: int, out: str) -> None:
    """Runs in each gloo process; writes what it saw to ``out``."""
    results: dict[str, Any] = {}
    batch = _rank_batch(rank)
    for name, variant, scope in (
        ("sgd", "none", "local"),
        ("local", "gradient", "local"),
        ("global", "gradient", "global"),
    ):
        ddp = DistributedDataParallel(_model())
        counter = CommCounter()
        counter.attach(ddp)
        opt = ExtrapSGD(ddp.parameters(), lr=LR, gamma=GAMMA, extrapolation=variant)
        stepper = ExtrapStepper(ddp, opt, _loss, scope=scope)
        stepper.step([batch])  # the first step; DDP may rebuild its buckets after it
        first_params = [p.detach().clone() for p in ddp.parameters()]
        counter.reset()
        stepper.step([batch])
        results[name] = {
            "first_params": first_params,
            "calls": counter.calls,
            "bytes": counter.bytes,
        }
    # accumulation under DDP: 4 micro-batches of 4 == one batch of 16
    ddp = DistributedDataParallel(_model())
    opt = ExtrapSGD(ddp.parameters(), lr=LR, gamma=GAMMA, momentum=0.9)
    stepper = ExtrapStepper(ddp, opt, _loss)
    x, y = batch
    for _ in range(2):
        stepper.step([(x[i : i + 4], y[i : i + 4]) for i in range(0, 16, 4)])
    results["accumulated"] = [p.detach().clone() for p in ddp.parameters()]
    ddp = DistributedDataParallel(_model())
    opt = ExtrapSGD(ddp.parameters(), lr=LR, gamma=GAMMA, momentum=0.9)
    stepper = ExtrapStepper(ddp, opt, _loss)
    for _ in range(2):
        stepper.step([batch])
    results["one_batch"] = [p.detach().clone() for p in ddp.parameters()]
    # divergence seen on rank 1 only: both ranks must decide to stop
    ddp = DistributedDataParallel(_model())
    opt = ExtrapSGD(ddp.parameters(), lr=LR, gamma=GAMMA)
    bad = (x * (math.nan if rank == 1 else 1.0), y)
    results["diverged"] = _closed(ExtrapStepper(ddp, opt, _loss).step([bad])).diverged
    results.update(_windowed_scenarios(rank, batch))
    dist.barrier()
    torch.save(results, Path(out) / f"rank{rank}.pt")


def _windowed_scenarios(rank: int, batch: Any) -> dict[str, Any]:
    """Control all-reduces once per window: the same training, fewer collectives."""
    results: dict[str, Any] = {}
    calls = {"control": 0}
    plain_all_reduce = dist.all_reduce

    def counted(*args: Any, **kwargs: Any) -> Any:  # DDP's own all-reduces run in C++
        calls["control"] += 1
        return plain_all_reduce(*args, **kwargs)

    for name, sync_every in (("per_step", 1), ("windowed", 4)):
        ddp = DistributedDataParallel(_model())
        opt = ExtrapSGD(ddp.parameters(), lr=LR, gamma=GAMMA, momentum=0.9)
        stepper = ExtrapStepper(
            ddp, opt, _loss, units_equal_across_ranks=True, sync_every=sync_every
        )
        calls["control"] = 0
        dist.all_reduce = counted
        try:
            seen = [stepper.step([batch]) for _ in range(8)]
            seen.append(stepper.flush())
        finally:
            dist.all_reduce = plain_all_reduce
        results[name] = {
            "params": [p.detach().clone() for p in ddp.parameters()],
            "control_calls": calls["control"],
            "results": [None if r is None else asdict(r) for r in seen],
        }
    # rank 1 diverges at the window's 2nd step: every rank learns it when the window closes
    ddp = DistributedDataParallel(_model())
    opt = ExtrapSGD(ddp.parameters(), lr=LR, gamma=GAMMA)
    stepper = ExtrapStepper(ddp, opt, _loss, units_equal_across_ranks=True, sync_every=3)
    x, y = batch
    bad = (x * (math.nan if rank == 1 else 1.0), y)
    seen = [stepper.step([b]) for b in (batch, bad, batch)]
    results["window_diverged"] = [None if r is None else asdict(r) for r in seen]
    return results


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    out = tmp_path_factory.mktemp("ddp")
    run_gloo(_ddp_scenarios, 2, str(out))
    return [torch.load(out / f"rank{r}.pt") for r in range(2)]


def _reference_local_extrapolation() -> list[torch.Tensor]:
    """x_t - lr * mean_k g_k(x_t - gamma * g_k(x_t)) with g_k rank k's local gradient."""
    model = _model()
    anchor = [p.detach().clone() for p in model.parameters()]
    update = [torch.zeros_like(p) for p in anchor]
    for rank in range(2):
        batch = _rank_batch(rank)
        model.zero_grad()
        _loss(model, batch)[0].backward()
        with torch.no_grad():
            for p, x in zip(model.parameters(), anchor, strict=True):
                p.copy_(x - GAMMA * p.grad)
        model.zero_grad()
        _loss(model, batch)[0].backward()
        for u, p in zip(update, model.parameters(), strict=True):
            u += p.grad / 2
        with torch.no_grad():
            for p, x in zip(model.parameters(), anchor, strict=True):
                p.copy_(x)
    return [x - LR * u for x, u in zip(anchor, update, strict=True)]


def test_local_extrapolation_matches_the_paper_and_ranks_agree(
    ddp_results: list[dict[str, Any]],
) -> None:
    expected = _reference_local_extrapolation()
    for rank in range(2):
        for got, want in zip(ddp_results[rank]["local"]["first_params"], expected, strict=True):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    # the global variant all-reduces the first gradient too, so it lands elsewhere
    other = ddp_results[0]["global"]["first_params"]
    assert any(not torch.allclose(a, b) for a, b in zip(other, expected, strict=True))


@pytest.mark.parametrize(("name", "all_reduces"), [("sgd", 1), ("local", 1), ("global", 2)])
def test_gradient_all_reduces_per_step(
    ddp_results: list[dict[str, Any]], name: str, all_reduces: int
) -> None:
    param_bytes = sum(p.numel() * p.element_size() for p in _model().parameters())
    for rank in range(2):
        seen = ddp_results[rank][name]
        assert seen["bytes"] == all_reduces * param_bytes
        assert seen["calls"] == all_reduces  # one bucket for this small model


def test_accumulation_under_ddp_equals_one_big_batch(ddp_results: list[dict[str, Any]]) -> None:
    for rank in range(2):
        for a, b in zip(
            ddp_results[rank]["accumulated"], ddp_results[rank]["one_batch"], strict=True
        ):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_all_ranks_stop_together_when_one_diverges(ddp_results: list[dict[str, Any]]) -> None:
    assert [r["diverged"] for r in ddp_results] == [True, True]


def test_a_window_trains_as_per_step_control_does_with_one_all_reduce_per_window(
    ddp_results: list[dict[str, Any]],
) -> None:
    for rank in range(2):
        per_step, windowed = ddp_results[rank]["per_step"], ddp_results[rank]["windowed"]
        for a, b in zip(per_step["params"], windowed["params"], strict=True):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
        assert per_step["control_calls"] == 8
        assert windowed["control_calls"] == 2  # 8 steps, windows of 4, nothing left to flush
        closed = [r for r in windowed["results"] if r is not None]
        assert [r["steps"] for r in closed] == [4, 4]
        assert windowed["results"][-1] is None  # flush() of an empty window
        # the window's figures are its steps' together
        steps = per_step["results"][:4]
        assert closed[0]["units"] == sum(r["units"] for r in steps) == 4 * 32
        assert closed[0]["gradient_units"] == sum(r["gradient_units"] for r in steps)
        want = sum(r["loss"] * r["units"] for r in steps) / closed[0]["units"]
        assert closed[0]["loss"] == pytest.approx(want, rel=1e-6)


def test_a_divergence_on_one_rank_is_seen_by_all_when_the_window_closes(
    ddp_results: list[dict[str, Any]],
) -> None:
    for rank in range(2):
        first, second, closing = ddp_results[rank]["window_diverged"]
        assert first is None and second is None
        assert closing is not None and closing["diverged"] and closing["steps"] == 3


# -- single process --------------------------------------------------------------------------


def _token_loss(model: torch.nn.Module, batch: Any) -> tuple[torch.Tensor, int]:
    """A loss over a varying number of valid units per micro-batch (like tokens)."""
    x, y, mask = batch
    per_unit = torch.nn.functional.cross_entropy(model(x), y, reduction="none")
    units = int(mask.sum())
    return (per_unit * mask).sum() / units, units


@pytest.mark.parametrize("variant", ["none", "gradient", "past", "sam"])
def test_accumulation_weights_micro_batches_by_unit_count(variant: str) -> None:
    x, y = _rank_batch(0, 24)
    mask = torch.zeros(24)
    mask[[0, 1, 2, 5, 9, 10, 11, 12, 13, 14, 20]] = 1  # uneven counts per micro-batch
    runs = []
    for split in (1, 3):
        model = _model()
        opt = ExtrapSGD(model.parameters(), lr=LR, gamma=GAMMA, extrapolation=variant)
        stepper = ExtrapStepper(model, opt, _token_loss)
        size = 24 // split
        micro = [(x[i : i + size], y[i : i + size], mask[i : i + size]) for i in range(0, 24, size)]
        for _ in range(3):
            result = _closed(stepper.step(micro))
        assert result.units == 11
        runs.append(torch.cat([p.detach().reshape(-1) for p in model.parameters()]))
    torch.testing.assert_close(runs[0], runs[1], rtol=1e-5, atol=1e-6)


def test_fresh_second_batch_feeds_the_pass_at_the_extrapolated_point() -> None:
    batch, fresh = _rank_batch(0), _rank_batch(1)
    model = _model()
    opt = ExtrapSGD(model.parameters(), lr=LR, gamma=GAMMA)
    ExtrapStepper(model, opt, _loss).step([batch], [fresh])
    ref = _model()
    anchor = [p.detach().clone() for p in ref.parameters()]
    _loss(ref, batch)[0].backward()
    with torch.no_grad():
        for p in ref.parameters():
            p -= GAMMA * p.grad
    ref.zero_grad()
    _loss(ref, fresh)[0].backward()
    for p, x, r in zip(model.parameters(), anchor, ref.parameters(), strict=True):
        torch.testing.assert_close(p.detach(), x - LR * r.grad)


def _bn_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(6, 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 3)
    )


def test_batchnorm_running_stats_come_from_the_pass_at_x_t_only() -> None:
    batch = _rank_batch(0)
    model = _bn_model()
    opt = ExtrapSGD(model.parameters(), lr=LR, gamma=GAMMA)
    ExtrapStepper(model, opt, _loss).step([batch])
    ref = _bn_model()
    ref(batch[0])  # one train-mode forward at x_t
    bn, ref_bn = model[1], ref[1]
    torch.testing.assert_close(bn.running_mean, ref_bn.running_mean)
    torch.testing.assert_close(bn.running_var, ref_bn.running_var)
    assert int(bn.num_batches_tracked) == 1


@pytest.mark.parametrize("poison", [math.nan, math.inf, 1e6])
def test_divergence_is_reported_and_the_update_skipped(poison: float) -> None:
    def poisoned(model: torch.nn.Module, batch: Any) -> tuple[torch.Tensor, int]:
        loss, count = _loss(model, batch)
        return loss * poison, count

    model = _model()
    before = [p.detach().clone() for p in model.parameters()]
    opt = ExtrapSGD(model.parameters(), lr=LR, gamma=GAMMA)
    stepper = ExtrapStepper(model, opt, poisoned, divergence_bound=100.0)
    result = _closed(stepper.step([_rank_batch(0)]))
    assert result.diverged
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before, strict=True))
    assert not opt.extrapolated


def test_clipping_bounds_the_communicated_gradient() -> None:
    x, y = _rank_batch(0)
    model = _model()
    opt = ExtrapSGD(model.parameters(), lr=1.0, extrapolation="none")
    before = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    ExtrapStepper(model, opt, _loss, clip_grad_norm=1e-3).step([(x, y)])
    after = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    assert float(torch.linalg.vector_norm(after - before)) == pytest.approx(1e-3, rel=1e-4)


def test_bf16_autocast_step_runs_on_cpu() -> None:
    model = _model()
    opt = ExtrapSGD(model.parameters(), lr=LR, gamma=GAMMA)
    stepper = ExtrapStepper(model, opt, _loss, autocast_dtype=torch.bfloat16)
    result = _closed(stepper.step([_rank_batch(0)]))
    assert math.isfinite(result.loss) and not result.diverged


def test_sync_every_needs_equal_units_on_every_rank_else_each_step_synchronises() -> None:
    x, y = _rank_batch(0, 24)
    mask = torch.ones(24)
    model = _model()
    opt = ExtrapSGD(model.parameters(), lr=LR, gamma=GAMMA)
    stepper = ExtrapStepper(model, opt, _token_loss, sync_every=8)  # units may differ: tokens
    result = stepper.step([(x, y, mask)])
    assert result is not None and result.steps == 1 and stepper.pending_steps == 0


def test_flush_closes_a_partial_window() -> None:
    model = _model()
    opt = ExtrapSGD(model.parameters(), lr=LR, gamma=GAMMA)
    stepper = ExtrapStepper(model, opt, _loss, units_equal_across_ranks=True, sync_every=16)
    assert [stepper.step([_rank_batch(0)]) for _ in range(3)] == [None, None, None]
    assert stepper.pending_steps == 3
    result = stepper.flush()
    assert result is not None and result.steps == 3 and result.units == 3 * 16
    assert result.gradient_units == 2 * 3 * 16  # two passes a step
    assert stepper.flush() is None and stepper.pending_steps == 0


@pytest.mark.parametrize("sync_every", [0, -1])
def test_sync_every_below_one_is_refused(sync_every: int) -> None:
    model = _model()
    opt = ExtrapSGD(model.parameters(), lr=LR)
    with pytest.raises(ValueError, match=f"sync_every={sync_every}"):
        ExtrapStepper(model, opt, _loss, sync_every=sync_every)


@pytest.mark.parametrize("variant", ["none", "gradient"])
def test_in_a_window_micro_batches_accumulate_to_the_one_batch_step(variant: str) -> None:
    x, y = _rank_batch(0, 24)
    runs = []
    for parts in (1, 4):
        model = _model()
        opt = ExtrapSGD(model.parameters(), lr=LR, gamma=GAMMA, extrapolation=variant)
        stepper = ExtrapStepper(model, opt, _loss, units_equal_across_ranks=True, sync_every=2)
        size = 24 // parts
        micro = [(x[i : i + size], y[i : i + size]) for i in range(0, 24, size)]
        results = [stepper.step(micro) for _ in range(4)]
        assert [r is None for r in results] == [True, False, True, False]
        runs.append(torch.cat([p.detach().reshape(-1) for p in model.parameters()]))
    torch.testing.assert_close(runs[0], runs[1], rtol=1e-5, atol=1e-6)
