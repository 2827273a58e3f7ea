"""ExtrapSGD against its contract (docs/optimizer.md): formulas, errors, state."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
import torch

from trainers.config import OptimizerConfig
from trainers.optim import VARIANTS, ExtrapSGD, effective_gamma


@pytest.fixture(autouse=True)
def _float64() -> Any:
    """The equivalence tests compare to float64 precision."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def _model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3)
    ).double()


def _batches(n: int, seed: int = 1) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(16, 5, generator=g), torch.randn(16, 3, generator=g)) for _ in range(n)]


def _loss(model: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    x, y = batch
    return torch.nn.functional.mse_loss(model(x), y)


def _train(
    model: torch.nn.Module, opt: torch.optim.Optimizer, batches: list[Any], two_pass: bool
) -> None:
    """The training loop of the contract: (backward at x_t,) extrapolate, backward, step."""
    for batch in batches:
        opt.zero_grad()
        if isinstance(opt, ExtrapSGD):
            if two_pass:
                _loss(model, batch).backward()
            opt.extrapolate()
            opt.zero_grad()
        _loss(model, batch).backward()
        opt.step()


def _flat(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


# -- constructor ------------------------------------------------------------------------------

GOOD_KWARGS = [
    {},
    {"momentum": 0.9, "nesterov": True, "weight_decay": 1e-4},
    {"extrapolation": "none"},
    {"extrapolation": "noise", "noise_std": 0.01, "noise": "uniform"},
    {"extrapolation": "gradient+noise", "noise_std": 0.01, "gamma": 0.05},
    {"extrapolation": "past", "gamma_ratio": 0.2},
    {"extrapolation": "sam", "gamma": 0.05},
    {"extrapolation_momentum": True, "momentum": 0.9, "trust_coefficient": 0.001},
    {"seed": 3, "foreach": True},
]

BAD_KWARGS = [
    ({"lr": -0.1}, "lr=-0.1"),
    ({"gamma": -1.0}, "gamma=-1.0"),
    ({"gamma_ratio": -0.5}, "gamma_ratio=-0.5"),
    ({"noise_std": -0.1}, "noise_std=-0.1"),
    ({"momentum": -0.9}, "momentum=-0.9"),
    ({"weight_decay": -1e-4}, "weight_decay=-0.0001"),
    ({"nesterov": True}, "nesterov=True with momentum=0.0"),
    ({"noise": "cauchy"}, "noise='cauchy'"),
    ({"trust_coefficient": 0.0}, "trust_coefficient=0.0"),
    ({"trust_coefficient": -1.0}, "trust_coefficient=-1.0"),
    ({"extrapolation": "sam"}, "gamma=None for extrapolation='sam'"),
    ({"extrapolation": "extragradient"}, "extrapolation='extragradient'"),
]


@pytest.mark.parametrize("kwargs", GOOD_KWARGS)
def test_valid_arguments_build_and_are_per_group(kwargs: dict[str, Any]) -> None:
    kwargs = {"lr": 0.1, **kwargs}
    opt = ExtrapSGD(_model().parameters(), **kwargs)
    for name, value in kwargs.items():
        if name not in ("seed", "foreach"):
            assert opt.param_groups[0][name] == value


@pytest.mark.parametrize(("kwargs", "fragment"), BAD_KWARGS)
def test_bad_argument_is_a_value_error_naming_it(kwargs: dict[str, Any], fragment: str) -> None:
    kwargs = {"lr": 0.1, **kwargs}
    with pytest.raises(ValueError, match=fragment.replace("(", r"\(").replace("+", r"\+")):
        ExtrapSGD(_model().parameters(), **kwargs)


def test_unknown_variant_error_lists_the_valid_names() -> None:
    with pytest.raises(ValueError) as info:
        ExtrapSGD(_model().parameters(), lr=0.1, extrapolation="bogus")
    for name in VARIANTS:
        assert repr(name) in str(info.value)


def test_bad_option_in_a_param_group_is_rejected() -> None:
    model = _model()
    first, second = model[0], model[2]
    with pytest.raises(ValueError, match="lr=-1"):
        ExtrapSGD([{"params": first.parameters()}, {"params": second.parameters(), "lr": -1}], lr=1)


def test_groups_disagreeing_on_two_pass_are_rejected_in_constructor_and_add() -> None:
    model = _model()
    first, second = model[0], model[2]
    with pytest.raises(ValueError, match="two_pass"):
        ExtrapSGD(
            [
                {"params": first.parameters()},
                {"params": second.parameters(), "extrapolation": "past"},
            ],
            lr=0.1,
        )
    opt = ExtrapSGD(first.parameters(), lr=0.1, extrapolation="gradient")
    with pytest.raises(ValueError, match="two_pass"):
        opt.add_param_group({"params": second.parameters(), "extrapolation": "noise"})
    assert len(opt.param_groups) == 1
    opt.add_param_group({"params": second.parameters(), "extrapolation": "sam", "gamma": 0.1})
    assert len(opt.param_groups) == 2


@pytest.mark.parametrize(("variant", "expected"), [(v.name, v.two_pass) for v in VARIANTS.values()])
def test_two_pass_property(variant: str, expected: bool) -> None:
    opt = ExtrapSGD(_model().parameters(), lr=0.1, extrapolation=variant, gamma=0.1)
    assert opt.two_pass is expected
    assert expected is (variant in ("gradient", "gradient+noise", "sam"))


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_config_accepts_every_registered_variant(variant: str) -> None:
    config = OptimizerConfig(extrapolation=variant, gamma=0.05)
    ExtrapSGD(_model().parameters(), **config.model_dump())  # and the optimizer takes it too


def test_config_refuses_another_variant_listing_the_names() -> None:
    with pytest.raises(ValueError) as info:
        OptimizerConfig(extrapolation="extragradient")
    assert "extrapolation='extragradient'" in str(info.value)
    for name in VARIANTS:
        assert repr(name) in str(info.value)


def test_config_schema_lists_the_registered_variants() -> None:
    schema = OptimizerConfig.model_json_schema()
    assert schema["properties"]["extrapolation"]["enum"] == list(VARIANTS)


@pytest.mark.parametrize(
    ("group", "expected"),
    [
        ({"lr": 0.5, "gamma": None, "gamma_ratio": 0.1}, 0.05),
        ({"lr": 0.5, "gamma": 0.2, "gamma_ratio": 0.1}, 0.2),
        ({"lr": 0.5, "gamma": 0.0, "gamma_ratio": 0.1}, 0.0),
        ({"lr": 0.0, "gamma": None, "gamma_ratio": 0.1}, 0.0),
    ],
)
def test_effective_gamma_is_gamma_or_ratio_times_lr(group: dict[str, Any], expected: float) -> None:
    assert effective_gamma(group) == pytest.approx(expected)


# -- equivalence with torch SGD ---------------------------------------------------------------

SGD_OPTIONS = [
    {},
    {"momentum": 0.9},
    {"momentum": 0.9, "nesterov": True},
    {"weight_decay": 0.01},
    {"momentum": 0.8, "weight_decay": 0.01},
    {"momentum": 0.8, "nesterov": True, "weight_decay": 0.05},
]


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("options", SGD_OPTIONS)
@pytest.mark.parametrize("variant", ["none", "gradient-gamma0"])
def test_reproduces_torch_sgd_step_for_step(
    options: dict[str, Any], foreach: bool, variant: str
) -> None:
    batches = _batches(25)
    ours, ref = _model(), _model()
    extra = {"extrapolation": "none"} if variant == "none" else {"gamma": 0.0}
    opt = ExtrapSGD(ours.parameters(), lr=0.05, foreach=foreach, **extra, **options)
    ref_opt = torch.optim.SGD(ref.parameters(), lr=0.05, foreach=foreach, **options)
    for batch in batches:
        _train(ours, opt, [batch], two_pass=opt.two_pass)
        _train(ref, ref_opt, [batch], two_pass=False)
        torch.testing.assert_close(_flat(ours), _flat(ref), rtol=0, atol=1e-14)


# -- the update rule against an independent float64 reference --------------------------------


def _numpy_grad(w: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Gradient of mean squared error of a linear model, written out by hand."""
    return 2.0 / len(x) * x.T @ (x @ w - y)


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_gradient_variant_matches_independent_reference(foreach: bool, momentum: float) -> None:
    rng = np.random.default_rng(0)
    lr, gamma, steps = 0.05, 0.03, 60
    batches = [(rng.normal(size=(12, 4)), rng.normal(size=(12, 2))) for _ in range(2 * steps)]
    w0 = rng.normal(size=(4, 2))

    w, buf = w0.copy(), None  # reference: x_{t+1} = x_t - lr * grad_B2(x_t - gamma * grad_B1(x_t))
    for t in range(steps):
        (x1, y1), (x2, y2) = batches[2 * t], batches[2 * t + 1]
        half = w - gamma * _numpy_grad(w, x1, y1)
        d = _numpy_grad(half, x2, y2)
        if momentum:
            buf = d if buf is None else momentum * buf + d
            d = buf
        w = w - lr * d

    param = torch.nn.Parameter(torch.tensor(w0))
    opt = ExtrapSGD([param], lr=lr, gamma=gamma, momentum=momentum, foreach=foreach)
    for t in range(steps):
        for phase, (x, y) in enumerate((batches[2 * t], batches[2 * t + 1])):
            param.grad = None
            loss = ((torch.tensor(x) @ param - torch.tensor(y)) ** 2).sum(1).mean()
            loss.backward()
            if phase == 0:
                opt.extrapolate()
        opt.step()
    np.testing.assert_allclose(param.detach().numpy(), w, rtol=1e-12, atol=1e-12)


def _bilinear_run(variant: str, steps: int) -> float:
    """min_x max_y x*y: the gradient field is (y, -x); returns the final distance to 0."""
    x = torch.nn.Parameter(torch.tensor([1.0]))
    y = torch.nn.Parameter(torch.tensor([1.0]))
    opt = ExtrapSGD([x, y], lr=0.1, extrapolation=variant, gamma=0.1)

    def field() -> None:
        x.grad = y.detach().clone()
        y.grad = -x.detach().clone()

    for _ in range(steps):
        if opt.two_pass:
            field()
        opt.extrapolate()
        field()
        opt.step()
    return float(torch.sqrt(x.detach() ** 2 + y.detach() ** 2))


def test_bilinear_game_extragradient_converges_and_sgd_spirals_out() -> None:
    start = 2**0.5
    assert _bilinear_run("gradient", 2000) < 1e-3 * start
    assert _bilinear_run("none", 2000) > 100 * start
    # the single-call (past) variant is an extragradient method too: it converges
    assert _bilinear_run("past", 2000) < 1e-2 * start


# -- what extrapolate() does, variant by variant -----------------------------------------------


def _grad_at_anchor(model: torch.nn.Module, batch: Any) -> list[torch.Tensor]:
    model.zero_grad()
    _loss(model, batch).backward()
    return [p.grad.detach().clone() for p in model.parameters()]


def _params(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("foreach", [False, True])
def test_gradient_extrapolation_moves_by_minus_gamma_g_and_gamma_follows_lr(foreach: bool) -> None:
    model, batch = _model(), _batches(1)[0]
    opt = ExtrapSGD(model.parameters(), lr=0.2, gamma_ratio=0.5, weight_decay=0.3, foreach=foreach)
    opt.param_groups[0]["lr"] = 0.4  # as a scheduler would: gamma = 0.5 * 0.4
    before, grads = _params(model), _grad_at_anchor(model, batch)
    opt.extrapolate()
    for p, x, g in zip(model.parameters(), before, grads, strict=True):
        torch.testing.assert_close(p.detach(), x - 0.2 * g)  # weight decay not in it


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("kind", ["gaussian", "uniform"])
def test_noise_extrapolation_uses_the_seeded_generator(foreach: bool, kind: str) -> None:
    model = _model()
    opt = ExtrapSGD(
        model.parameters(),
        lr=0.1,
        extrapolation="noise",
        noise_std=0.3,
        noise=kind,
        seed=7,
        foreach=foreach,
    )
    before = _params(model)
    opt.extrapolate()  # no gradient needed
    generator = torch.Generator().manual_seed(7)
    for p, x in zip(model.parameters(), before, strict=True):
        if kind == "gaussian":
            xi = torch.randn(x.shape, generator=generator) * 0.3
        else:
            xi = torch.rand(x.shape, generator=generator) * 0.6 - 0.3
            assert (xi.abs() <= 0.3).all()
        torch.testing.assert_close(p.detach(), x + xi)


def test_gradient_plus_noise_moves_by_both() -> None:
    model, batch = _model(), _batches(1)[0]
    opt = ExtrapSGD(
        model.parameters(),
        lr=0.1,
        extrapolation="gradient+noise",
        gamma=0.05,
        noise_std=0.1,
        seed=3,
    )
    before, grads = _params(model), _grad_at_anchor(model, batch)
    opt.extrapolate()
    generator = torch.Generator().manual_seed(3)
    for p, x, g in zip(model.parameters(), before, grads, strict=True):
        xi = torch.randn(x.shape, generator=generator) * 0.1
        torch.testing.assert_close(p.detach(), x - 0.05 * g + xi)


def test_past_uses_the_previous_raw_gradient_and_does_not_move_first() -> None:
    model, batches = _model(), _batches(2)
    opt = ExtrapSGD(
        model.parameters(), lr=0.1, extrapolation="past", gamma=0.07, momentum=0.9, weight_decay=0.1
    )
    before = _params(model)
    opt.extrapolate()
    assert all(torch.equal(p, x) for p, x in zip(model.parameters(), before, strict=True))
    opt.zero_grad()
    _loss(model, batches[0]).backward()
    used = [p.grad.detach().clone() for p in model.parameters()]
    opt.step()
    after_step = _params(model)
    opt.extrapolate()
    for p, x, g in zip(model.parameters(), after_step, used, strict=True):
        torch.testing.assert_close(p.detach(), x - 0.07 * g)  # raw: no decay, no momentum


@pytest.mark.parametrize("foreach", [False, True])
def test_sam_ascends_along_the_globally_normalised_gradient(foreach: bool) -> None:
    model, batch = _model(), _batches(1)[0]
    opt = ExtrapSGD(model.parameters(), lr=0.1, extrapolation="sam", gamma=0.05, foreach=foreach)
    before, grads = _params(model), _grad_at_anchor(model, batch)
    norm = torch.sqrt(sum((g**2).sum() for g in grads))
    opt.extrapolate()
    for p, x, g in zip(model.parameters(), before, grads, strict=True):
        torch.testing.assert_close(p.detach(), x + 0.05 * g / (norm + 1e-12))
    moved = torch.cat(
        [(p.detach() - x).reshape(-1) for p, x in zip(model.parameters(), before, strict=True)]
    )
    torch.testing.assert_close(torch.linalg.vector_norm(moved), torch.tensor(0.05))


def test_extrapolation_momentum_looks_ahead_along_the_buffer() -> None:
    model, batches = _model(), _batches(2)
    opt = ExtrapSGD(
        model.parameters(), lr=0.1, gamma=0.05, momentum=0.9, extrapolation_momentum=True
    )
    before, grads = _params(model), _grad_at_anchor(model, batches[0])
    opt.extrapolate()  # no buffer yet: u = g
    for p, x, g in zip(model.parameters(), before, grads, strict=True):
        torch.testing.assert_close(p.detach(), x - 0.05 * g)
    opt.zero_grad()
    _loss(model, batches[0]).backward()
    opt.step()
    buffers = [opt.state[p]["momentum_buffer"].clone() for p in model.parameters()]
    before, grads = _params(model), _grad_at_anchor(model, batches[1])
    opt.extrapolate()
    for p, x, g, b in zip(model.parameters(), before, grads, buffers, strict=True):
        torch.testing.assert_close(p.detach(), x - 0.05 * (g + 0.9 * b))
    for p, b in zip(model.parameters(), buffers, strict=True):
        assert torch.equal(opt.state[p]["momentum_buffer"], b)  # extrapolate() leaves it


def test_parameter_without_grad_stays_and_moved_parameter_is_restored_without_grad() -> None:
    model, batch = _model(), _batches(1)[0]
    first, last = model[0], model[2]
    opt = ExtrapSGD(model.parameters(), lr=0.1, gamma=0.05)
    _grad_at_anchor(model, batch)
    for p in last.parameters():
        p.grad = None
    before = _params(model)
    opt.extrapolate()
    for p, x in zip(last.parameters(), before[2:], strict=True):
        assert torch.equal(p, x)  # no .grad: stays at x_t
    assert not torch.equal(first.weight, before[0])
    opt.zero_grad(set_to_none=True)  # now nothing has a gradient
    opt.step()
    for p, x in zip(model.parameters(), before, strict=True):
        assert torch.equal(p, x)  # restored to x_t, no update without a gradient


def test_trust_ratio_scales_each_tensor() -> None:
    param = torch.nn.Parameter(torch.tensor([3.0, 4.0]))
    zero = torch.nn.Parameter(torch.zeros(2))
    opt = ExtrapSGD([param, zero], lr=0.1, extrapolation="none", trust_coefficient=0.01)
    param.grad = torch.tensor([0.0, 2.0])
    zero.grad = torch.tensor([1.0, 1.0])
    opt.step()
    torch.testing.assert_close(param.detach(), torch.tensor([3.0, 4.0 - 0.1 * 0.01 * 5.0]))
    torch.testing.assert_close(zero.detach(), torch.tensor([-0.1, -0.1]))  # ||x|| = 0: factor 1


# -- misuse -----------------------------------------------------------------------------------


def test_extrapolate_twice_is_a_runtime_error() -> None:
    model = _model()
    opt = ExtrapSGD(model.parameters(), lr=0.1, extrapolation="noise", noise_std=0.1)
    opt.extrapolate()
    with pytest.raises(RuntimeError, match="twice"):
        opt.extrapolate()


@pytest.mark.parametrize("variant", [name for name in VARIANTS if name != "none"])
def test_step_without_extrapolate_is_a_runtime_error(variant: str) -> None:
    model, batch = _model(), _batches(1)[0]
    opt = ExtrapSGD(model.parameters(), lr=0.1, extrapolation=variant, gamma=0.1)
    _loss(model, batch).backward()
    with pytest.raises(RuntimeError, match="without extrapolate"):
        opt.step()


def test_step_without_extrapolate_is_fine_for_none() -> None:
    model, batch = _model(), _batches(1)[0]
    opt = ExtrapSGD(model.parameters(), lr=0.1, extrapolation="none")
    _loss(model, batch).backward()
    opt.step()
    opt.extrapolate()  # optional for none, but then the same rules apply
    with pytest.raises(RuntimeError, match="twice"):
        opt.extrapolate()
    with pytest.raises(RuntimeError, match="extrapolated"):
        opt.state_dict()


@pytest.mark.parametrize("variant", [v.name for v in VARIANTS.values() if v.needs_grad])
def test_extrapolate_without_any_gradient_is_a_runtime_error(variant: str) -> None:
    opt = ExtrapSGD(_model().parameters(), lr=0.1, extrapolation=variant, gamma=0.1)
    with pytest.raises(RuntimeError, match="backward"):
        opt.extrapolate()


def test_state_dict_while_extrapolated_is_a_runtime_error() -> None:
    model, batch = _model(), _batches(1)[0]
    opt = ExtrapSGD(model.parameters(), lr=0.1)
    _loss(model, batch).backward()
    opt.extrapolate()
    with pytest.raises(RuntimeError, match="after step"):
        opt.state_dict()


# -- closure form, state, paths ----------------------------------------------------------------


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_closure_form_equals_the_manual_cycle(variant: str) -> None:
    batches = _batches(5)
    kwargs = {"lr": 0.1, "extrapolation": variant, "gamma": 0.05, "noise_std": 0.01, "seed": 1}
    manual, closed = _model(), _model()
    opt_manual = ExtrapSGD(manual.parameters(), **kwargs)
    opt_closed = ExtrapSGD(closed.parameters(), **kwargs)
    _train(manual, opt_manual, batches, opt_manual.two_pass)
    for batch in batches:
        first_loss = _loss(closed, batch).item()

        def closure(batch: Any = batch) -> torch.Tensor:
            opt_closed.zero_grad()
            loss = _loss(closed, batch)
            loss.backward()
            return loss

        returned = opt_closed.step(closure)
        if opt_closed.two_pass:
            assert returned.item() == pytest.approx(first_loss)
    torch.testing.assert_close(_flat(closed), _flat(manual), rtol=0, atol=0)


ALL_OPTIONS = [
    {"extrapolation": "gradient", "momentum": 0.9, "weight_decay": 0.01},
    {
        "extrapolation": "gradient",
        "momentum": 0.9,
        "nesterov": True,
        "extrapolation_momentum": True,
    },
    {"extrapolation": "noise", "noise_std": 0.05, "momentum": 0.5},
    {"extrapolation": "gradient+noise", "noise_std": 0.05, "noise": "uniform", "gamma": 0.02},
    {"extrapolation": "past", "momentum": 0.9, "weight_decay": 0.01},
    {"extrapolation": "sam", "gamma": 0.05, "momentum": 0.9},
    {"extrapolation": "none", "trust_coefficient": 0.02, "momentum": 0.9},
    {"extrapolation": "gradient", "trust_coefficient": 0.02, "weight_decay": 0.01},
]


@pytest.mark.parametrize("options", ALL_OPTIONS)
def test_foreach_and_single_tensor_paths_agree(options: dict[str, Any]) -> None:
    batches = _batches(10)
    runs = []
    for foreach in (False, True):
        model = _model()
        opt = ExtrapSGD(model.parameters(), lr=0.1, seed=5, foreach=foreach, **options)
        _train(model, opt, batches, opt.two_pass)
        runs.append(_flat(model))
    torch.testing.assert_close(runs[0], runs[1], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("options", ALL_OPTIONS)
def test_state_dict_round_trip_continues_identically(options: dict[str, Any]) -> None:
    batches = _batches(12)
    model = _model()
    opt = ExtrapSGD(model.parameters(), lr=0.1, seed=5, **options)
    _train(model, opt, batches[:6], opt.two_pass)
    saved_model, saved_opt = copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict())
    assert all("anchor" not in s for s in saved_opt["state"].values())
    _train(model, opt, batches[6:], opt.two_pass)

    resumed = _model(seed=99)
    resumed.load_state_dict(saved_model)
    resumed_opt = ExtrapSGD(resumed.parameters(), lr=0.1, seed=12345, **options)
    resumed_opt.load_state_dict(saved_opt)
    _train(resumed, resumed_opt, batches[6:], resumed_opt.two_pass)
    torch.testing.assert_close(_flat(resumed), _flat(model), rtol=0, atol=0)


def test_past_gradient_is_in_the_state_dict_and_anchor_only_between_calls() -> None:
    model, batches = _model(), _batches(2)
    opt = ExtrapSGD(model.parameters(), lr=0.1, extrapolation="past", gamma=0.1)
    _train(model, opt, batches[:1], two_pass=False)
    state = opt.state_dict()["state"]
    assert all("past_grad" in s and "anchor" not in s for s in state.values())
    opt.extrapolate()
    assert all("anchor" in opt.state[p] for p in model.parameters())
    opt.zero_grad()
    _loss(model, batches[1]).backward()
    opt.step()
    assert all("anchor" not in opt.state[p] for p in model.parameters())


def test_bf16_parameters_extrapolate_and_restore_exactly() -> None:
    model = _model().to(torch.bfloat16)
    opt = ExtrapSGD(model.parameters(), lr=0.1, extrapolation="noise", noise_std=0.1, foreach=True)
    before = _params(model)
    opt.extrapolate()
    assert not torch.equal(next(model.parameters()), before[0])
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    assert all(torch.equal(p, x) for p, x in zip(model.parameters(), before, strict=True))


def test_foreach_none_follows_torch_sgd_choice_on_cpu() -> None:
    opt = ExtrapSGD(_model().parameters(), lr=0.1)
    params = list(opt.param_groups[0]["params"])
    from torch.optim.optimizer import _default_to_fused_or_foreach

    assert opt._use_foreach(params) is _default_to_fused_or_foreach(params, False)[1]
