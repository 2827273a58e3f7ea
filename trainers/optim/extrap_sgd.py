"""ExtrapSGD: SGD with extrapolation (Lin, Kong, Stich, Jaggi, ICML 2020).

Layout follows ``torch/optim/sgd.py``: the class, then functional dispatchers, then a
single-tensor and a foreach (multi-tensor) implementation sharing one signature.
:func:`effective_gamma` is the one rule for the gamma a param group extrapolates with.
The contract is stated in the class docstring and in ``docs/optimizer.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, cast

import torch
from torch import Tensor
from torch.optim.optimizer import Optimizer, ParamsT

from trainers.optim.variants import VARIANTS, variant_info

__all__ = ["ExtrapSGD", "effective_gamma", "extrap_sgd", "extrapolate_"]

_SAM_EPS = 1e-12
_NOISE_KINDS = ("gaussian", "uniform")


class ExtrapSGD(Optimizer):
    r"""SGD with extrapolation: extragradient, noise injection, past-gradient and SAM steps.

    .. math::
       \begin{aligned}
         &\textbf{input}: \mathrm{lr},\ \gamma\ (\text{or } \rho\,\mathrm{lr}
              \text{ with } \rho = \text{gamma\_ratio}),\ \mu \text{ (momentum)},\
              \lambda \text{ (weight decay)},\ \eta \text{ (trust coefficient)},\
              \sigma \text{ (noise\_std)} \\
         &\textbf{for } t = 0, 1, \ldots: \\
         &\quad x_{t+1/2} = x_t + \delta_t, \quad \delta_t = \begin{cases}
              0 & \text{none} \\
              -\gamma\,u_t,\ u_t = g(x_t)\ (+\,\mu\,b_{t-1} \text{ with extrapolation\_momentum})
                  & \text{gradient} \\
              \xi_t,\ \xi_t \sim \mathcal{N}(0, \sigma^2) \text{ or } \mathcal{U}(-\sigma, \sigma)
                  & \text{noise} \\
              -\gamma\,u_t + \xi_t & \text{gradient+noise} \\
              -\gamma\,p_{t-1} \ (0 \text{ at } t = 0),\ p \text{ the raw gradient of the last step}
                  & \text{past} \\
              +\gamma\,g(x_t) / (\lVert g(x_t)\rVert_2 + 10^{-12}) & \text{sam}
            \end{cases} \\
         &\quad d_t = g(x_{t+1/2}) + \lambda x_t \\
         &\quad d_t \leftarrow d_t \cdot \eta\,\lVert x_t\rVert / \lVert d_t\rVert
              \quad \text{(per tensor, if } \eta \text{ is set; factor 1 if a norm is 0)} \\
         &\quad b_t = \mu\,b_{t-1} + d_t \ (b_0 = d_0), \qquad
              d_t \leftarrow d_t + \mu\,b_t \text{ (Nesterov) or } b_t
              \quad \text{(if } \mu > 0) \\
         &\quad x_{t+1} = x_t - \mathrm{lr}\cdot d_t
       \end{aligned}

    Paper: "Extrapolation for Large-batch Training in Deep Learning", Tao Lin, Lingjing Kong,
    Sebastian U. Stich, Martin Jaggi, ICML 2020, https://arxiv.org/abs/2006.05720.
    ``docs/optimizer.md`` states the same contract at more length, with the schedules and the
    training-loop shapes.

    Here x_t are the parameters after step t, g(.) the mini-batch gradient found in ``.grad``,
    and lr, gamma the group's values at the time of the call.

    **The two calls.** :meth:`extrapolate` records x_t (the *anchor*) for every parameter with
    ``requires_grad`` and moves it to x_{t+1/2} as in the box. ``gradient``, ``gradient+noise``
    and ``sam`` read the gradient at x_t, so a backward at x_t must come first; ``none``,
    ``noise`` and ``past`` need none. A parameter without a ``.grad`` stays at x_t in the
    variants that read the gradient; in ``sam``'s norm it counts as zero. Weight decay never
    enters the extrapolation. :meth:`step` puts every moved parameter back to x_t (even if its
    ``.grad`` is now None) and then applies the update of the box with the gradient now in
    ``.grad``, taken at x_{t+1/2}; parameters without a gradient are not updated. There is no
    dampening. The momentum buffer changes only here, once per step. With
    ``extrapolation="none"`` and no trust coefficient a step is exactly
    ``torch.optim.SGD``'s; for ``"none"`` calling :meth:`extrapolate` is optional (if called,
    the rules below on calling it twice and on checkpoints apply as for the other variants).

    **gamma and gamma_ratio.** ``gamma`` is the extrapolation step (for ``sam``, the radius of
    the ascent, which must be given). ``gamma=None`` means ``gamma_ratio * lr``, evaluated at
    every :meth:`extrapolate`, so gamma follows whatever the learning-rate schedule does;
    :func:`effective_gamma` is that rule. The default ratio is 0.1 because, measured on MNIST-1D
    at large batch, ratios above about 0.25 diverged.

    **Noise.** xi is drawn per element with sigma = ``noise_std``: ``noise="gaussian"`` gives
    N(0, sigma^2), ``"uniform"`` gives U(-sigma, sigma). The draws come from a
    ``torch.Generator`` owned by the optimizer, one per device, seeded with ``seed``; its state
    is saved by :meth:`state_dict`. ``noise`` does not use gamma. Each distributed rank should
    pass its own seed.

    **past.** The direction is p, the raw gradient (before weight decay, the trust ratio and
    momentum) that the previous :meth:`step` used. On the very first step there is none yet, so
    nothing moves. A parameter that had no gradient at a step keeps the p it had before.

    **sam.** The norm is the 2-norm over all parameters with a gradient together (not per
    tensor), plus 1e-12, so x_{t+1/2} lies gamma away from x_t.

    **extrapolation_momentum.** With momentum > 0, ``gradient`` and ``gradient+noise`` move
    along ``u = g + momentum * buf`` (a look-ahead along the momentum), or ``g`` while no buffer
    exists; the buffer itself is not touched.

    **State and checkpoints.** Everything lives in ``self.state[p]``: ``momentum_buffer``;
    ``past_grad`` (``past`` only); ``anchor`` (x_t) only between :meth:`extrapolate` and
    :meth:`step`, so it is never part of a checkpoint. :meth:`state_dict` adds
    ``noise_generator`` (``seed`` and one generator state per device). Checkpoint and evaluate
    after :meth:`step`, when the parameters hold x_{t+1}: :meth:`state_dict` and
    :meth:`load_state_dict` while extrapolated raise ``RuntimeError``.

    **Closure.** ``step(closure)`` runs a whole cycle. The closure zeroes the gradients,
    computes the loss, calls ``backward()`` and returns the loss. Two-pass variants: closure at
    x_t, :meth:`extrapolate`, closure at x_{t+1/2}, update. One-pass variants:
    :meth:`extrapolate`, closure once, update. The loss of the first call is returned.

    **Training loop.** :attr:`two_pass` is True for ``gradient``, ``gradient+noise`` and
    ``sam``: backward at x_t, :meth:`extrapolate`, zero the gradients, backward at x_{t+1/2},
    :meth:`step`. It is False for ``none``, ``noise`` and ``past``: :meth:`extrapolate`, one
    backward, :meth:`step`. All param groups must agree on it. Under DDP, a local extrapolation
    (each rank's own gradient) needs the forward AND the backward of the first pass inside
    ``no_sync()`` (with only the backward inside, DDP still all-reduces); zero the gradients
    before the communicated backward. ``past`` uses the previous step's gradient, which DDP
    had already averaged. For mixed precision use bf16 autocast; fp16 with a ``GradScaler`` is
    not supported (the gradient at x_t would still be scaled).

    **Memory and speed.** Beyond SGD: the anchor (1x the parameters) for every variant but
    ``none``, only between the two calls; ``past`` also keeps the previous gradient (2x in
    all). The foreach path batches all tensors of one device and dtype; ``foreach=None``
    chooses it where ``torch.optim.SGD`` would.

    Choices where the rules above are silent:
        - ``gamma_ratio`` applies only when ``gamma`` is ``None``; with ``"sam"`` it is unused.
        - Under ``"gradient+noise"`` a parameter without ``.grad`` stays at x_t entirely (no
          noise either): it counts as one of the gradient variants.
        - ``"past"`` and ``"sam"`` ignore ``extrapolation_momentum`` (the past gradient is
          already a look-ahead of sorts; SAM ascends along g).
        - Loading a state dict while extrapolated is a ``RuntimeError`` like saving one.
        - With several devices, each device's generator is seeded with the same ``seed``.
        - Sparse gradients are a ``RuntimeError`` in :meth:`step`.

    Args:
        params: parameters or param groups. Every option below but ``seed`` and ``foreach`` is
            per group (``param_groups[i][name]``), so schedulers may change ``lr``, ``gamma``
            or ``noise_std`` while training.
        lr: learning rate.
        momentum: heavy-ball momentum factor mu (no dampening).
        nesterov: Nesterov momentum (needs ``momentum > 0``).
        weight_decay: L2 penalty lambda added to the update direction, never to the
            extrapolation.
        extrapolation: one of :data:`trainers.optim.variants.VARIANTS`: ``"none"``,
            ``"gradient"``, ``"noise"``, ``"gradient+noise"``, ``"past"`` or ``"sam"``.
        gamma: extrapolation step size (for ``sam`` the radius, required). ``None`` means
            ``gamma_ratio * lr`` at every :meth:`extrapolate`.
        gamma_ratio: see ``gamma``; 0.1 by default (ratios above ~0.25 diverged on MNIST-1D).
        noise_std: sigma of the perturbation for the noise variants.
        noise: ``"gaussian"`` (N(0, sigma^2)) or ``"uniform"`` (U(-sigma, sigma)).
        extrapolation_momentum: for ``gradient`` and ``gradient+noise``, extrapolate along
            ``g + momentum * buf`` instead of ``g``.
        trust_coefficient: LARS trust coefficient eta; scales each tensor's update direction
            to ``eta * ||x|| / ||d||`` (factor 1 where either norm is 0). ``None``: off.
        seed: seed of the optimizer's noise generators; defaults to ``torch.initial_seed()``.
        foreach: use the multi-tensor path; ``None`` picks it where torch's SGD would.

    Raises:
        ValueError: naming the argument and its value, for ``lr``, ``gamma``,
            ``gamma_ratio``, ``noise_std``, ``momentum`` or ``weight_decay`` below 0;
            ``nesterov`` without momentum; an unknown ``noise`` kind or ``extrapolation``
            (the message lists the valid names); ``trust_coefficient <= 0``; ``"sam"`` with
            ``gamma=None``; param groups that disagree on :attr:`two_pass` (here and in
            :meth:`add_param_group`).
        RuntimeError: on misuse, with a message saying what to do instead:
            :meth:`extrapolate` twice without a :meth:`step` in between; :meth:`step`
            without :meth:`extrapolate` for any variant but ``"none"``; :meth:`extrapolate`
            for a variant that reads the gradient when no parameter has a ``.grad``;
            :meth:`state_dict` (or :meth:`load_state_dict`) while extrapolated.

    Example:
        >>> model = torch.nn.Linear(4, 1)
        >>> opt = ExtrapSGD(model.parameters(), lr=0.1, momentum=0.9, gamma_ratio=0.1)
        >>> x, y = torch.randn(8, 4), torch.randn(8, 1)
        >>> loss_fn = lambda: torch.nn.functional.mse_loss(model(x), y)
        >>> opt.two_pass                    # "gradient" reads g(x_t)
        True
        >>> loss_fn().backward()            # gradient at x_t
        >>> opt.extrapolate()               # move to x_{t+1/2} = x_t - 0.01 * g(x_t)
        >>> opt.zero_grad()
        >>> loss_fn().backward()            # gradient at x_{t+1/2}
        >>> opt.step()                      # back to x_t, then x_{t+1}
        >>> def closure():
        ...     opt.zero_grad()
        ...     loss = loss_fn()
        ...     loss.backward()
        ...     return loss
        >>> loss = opt.step(closure)        # the same cycle in one call
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float,
        *,
        momentum: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
        extrapolation: str = "gradient",
        gamma: float | None = None,
        gamma_ratio: float = 0.1,
        noise_std: float = 0.0,
        noise: str = "gaussian",
        extrapolation_momentum: bool = False,
        trust_coefficient: float | None = None,
        seed: int | None = None,
        foreach: bool | None = None,
    ) -> None:
        defaults: dict[str, Any] = {
            "lr": lr,
            "momentum": momentum,
            "nesterov": nesterov,
            "weight_decay": weight_decay,
            "extrapolation": extrapolation,
            "gamma": gamma,
            "gamma_ratio": gamma_ratio,
            "noise_std": noise_std,
            "noise": noise,
            "extrapolation_momentum": extrapolation_momentum,
            "trust_coefficient": trust_coefficient,
        }
        _validate_options(defaults)
        self.seed: int = torch.initial_seed() if seed is None else int(seed)
        self.foreach = foreach
        self._extrapolated = False
        self._generators: dict[torch.device, torch.Generator] = {}
        self._pending_generator_states: dict[str, Tensor] = {}
        super().__init__(params, defaults)

    # -- groups and state -------------------------------------------------------------------

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group; its options are validated and must agree with the others on two_pass."""
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        try:
            _validate_options(group)
            first = VARIANTS[self.param_groups[0]["extrapolation"]]
            mine = VARIANTS[group["extrapolation"]]
            if mine.two_pass != first.two_pass:
                raise ValueError(
                    f"Invalid param group: extrapolation={mine.name!r} (two_pass={mine.two_pass}) "
                    f"cannot share an optimizer with extrapolation={first.name!r} "
                    f"(two_pass={first.two_pass}); all groups must agree on two_pass"
                )
        except ValueError:
            self.param_groups.pop()
            raise

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self.__dict__.setdefault("seed", torch.initial_seed())
        self.__dict__.setdefault("foreach", None)
        self.__dict__.setdefault("_extrapolated", False)
        self.__dict__.setdefault("_generators", {})
        self.__dict__.setdefault("_pending_generator_states", {})
        for group in self.param_groups:
            for name, value in _OPTION_DEFAULTS.items():
                group.setdefault(name, value)

    @property
    def two_pass(self) -> bool:
        """True when a backward at x_t must precede :meth:`extrapolate` (all groups agree)."""
        return VARIANTS[self.param_groups[0]["extrapolation"]].two_pass

    @property
    def extrapolated(self) -> bool:
        """True between :meth:`extrapolate` and :meth:`step` (parameters are at x_{t+1/2})."""
        return self._extrapolated

    def state_dict(self) -> dict[str, Any]:
        """The optimizer state plus the noise generators' states; only valid after step()."""
        if self._extrapolated:
            raise RuntimeError(
                "state_dict() called while the parameters are extrapolated (at x_{t+1/2}); "
                "checkpoint after step(), when they hold x_{t+1}"
            )
        state = super().state_dict()
        generators = dict(self._pending_generator_states)
        generators.update({str(d): g.get_state() for d, g in self._generators.items()})
        state["noise_generator"] = {"seed": self.seed, "states": generators}
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load what :meth:`state_dict` returned, noise generators included."""
        if self._extrapolated:
            raise RuntimeError(
                "load_state_dict() called while the parameters are extrapolated; "
                "call step() first (or load into a fresh optimizer)"
            )
        state_dict = dict(state_dict)
        generator = state_dict.pop("noise_generator", None)
        super().load_state_dict(state_dict)
        if generator is not None:
            self.seed = int(generator["seed"])
            self._generators = {}
            self._pending_generator_states = dict(generator["states"])

    def _generator(self, device: torch.device) -> torch.Generator:
        generator = self._generators.get(device)
        if generator is None:
            generator = torch.Generator(device=device)
            pending = self._pending_generator_states.pop(str(device), None)
            if pending is None:
                generator.manual_seed(self.seed)
            else:
                generator.set_state(pending)
            self._generators[device] = generator
        return generator

    # -- the two calls ----------------------------------------------------------------------

    @torch.no_grad()
    def extrapolate(self) -> None:
        """Move every trainable parameter to x_{t+1/2} and remember x_t (see the class doc)."""
        if self._extrapolated:
            raise RuntimeError(
                "extrapolate() called twice without step(); call step() to restore x_t and "
                "update before extrapolating again"
            )
        groups = self.param_groups
        if any(VARIANTS[g["extrapolation"]].needs_grad for g in groups) and not any(
            p.grad is not None for g in groups for p in g["params"]
        ):
            needing = sorted({g["extrapolation"] for g in groups})
            raise RuntimeError(
                f"extrapolate() for extrapolation={needing} needs the gradient at x_t, but no "
                "parameter has a .grad; run backward() at x_t first (inside no_sync() under DDP)"
            )
        sam_norm = self._sam_grad_norm()
        for group in groups:
            self._extrapolate_group(group, sam_norm)
        self._extrapolated = True

    def _sam_grad_norm(self) -> Tensor | None:
        """Global 2-norm over every parameter with a gradient (for ``sam``), on one device."""
        if not any(g["extrapolation"] == "sam" for g in self.param_groups):
            return None
        grads = [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None]
        device = grads[0].device
        norms = []
        for idx in _group_by_device_and_dtype(grads):  # one batched norm per device and dtype
            per_tensor = torch._foreach_norm([grads[i].detach() for i in idx], 2)
            norms.append(torch.stack(per_tensor).to(device, torch.float64))
        total: Tensor = torch.linalg.vector_norm(torch.cat(norms), 2)
        return total

    def _extrapolate_group(self, group: dict[str, Any], sam_norm: Tensor | None) -> None:
        info = VARIANTS[group["extrapolation"]]
        if info.name == "none":
            return
        gamma = effective_gamma(group)
        moving: list[Tensor] = []
        directions: list[Tensor] = []
        for p in group["params"]:
            if not p.requires_grad:
                continue
            state = self.state[p]
            if info.name == "past":
                if "past_grad" not in state:
                    continue  # the first step has no previous gradient: no move
                directions.append(state["past_grad"])
            elif info.needs_grad:
                if p.grad is None:
                    continue
                direction = p.grad
                buf = state.get("momentum_buffer")
                if (
                    info.name in ("gradient", "gradient+noise")
                    and group["extrapolation_momentum"]
                    and group["momentum"] > 0
                    and buf is not None
                ):
                    direction = direction.add(buf, alpha=group["momentum"])
                directions.append(direction)
            moving.append(p)
        if not moving:
            return
        anchors = [p.detach().clone() for p in moving]
        for p, anchor in zip(moving, anchors, strict=True):
            self.state[p]["anchor"] = anchor
        noises = (
            self._draw_noise(moving, group["noise"], group["noise_std"])
            if info.uses_noise
            else None
        )
        if info.name == "sam":
            assert sam_norm is not None
            scale: float | Tensor = gamma / (sam_norm + _SAM_EPS)
        else:
            scale = -gamma
        extrapolate_(
            moving,
            directions if directions else None,
            noises,
            scale=scale,
            foreach=self._use_foreach(moving),
        )

    def _draw_noise(self, params: list[Tensor], kind: str, std: float) -> list[Tensor]:
        noises = []
        for p in params:
            generator = self._generator(p.device)
            if kind == "gaussian":
                xi = torch.randn(p.shape, generator=generator, device=p.device, dtype=p.dtype)
                noises.append(xi.mul_(std))
            else:
                xi = torch.rand(p.shape, generator=generator, device=p.device, dtype=p.dtype)
                noises.append(xi.mul_(2.0 * std).sub_(std))
        return noises

    @torch.no_grad()
    def _update(self) -> None:
        for group in self.param_groups:
            anchored = [p for p in group["params"] if "anchor" in self.state.get(p, {})]
            if anchored:
                anchors = [self.state[p].pop("anchor") for p in anchored]
                _restore(anchored, anchors, foreach=self._use_foreach(anchored))
            params, grads, buffers, pasts = self._init_group(group)
            if not params:
                continue
            extrap_sgd(
                params,
                grads,
                buffers,
                pasts if group["extrapolation"] == "past" else None,
                lr=group["lr"],
                momentum=group["momentum"],
                nesterov=group["nesterov"],
                weight_decay=group["weight_decay"],
                trust_coefficient=group["trust_coefficient"],
                foreach=self._use_foreach(params),
            )
            if group["momentum"] > 0:
                for p, buf in zip(params, buffers, strict=True):
                    self.state[p]["momentum_buffer"] = buf
            if group["extrapolation"] == "past":
                for p, past in zip(params, pasts, strict=True):
                    self.state[p]["past_grad"] = past

    def _init_group(
        self, group: dict[str, Any]
    ) -> tuple[list[Tensor], list[Tensor], list[Tensor | None], list[Tensor | None]]:
        params: list[Tensor] = []
        grads: list[Tensor] = []
        buffers: list[Tensor | None] = []
        pasts: list[Tensor | None] = []
        for p in group["params"]:
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise RuntimeError("ExtrapSGD does not support sparse gradients")
            state = self.state[p]
            params.append(p)
            grads.append(p.grad)
            buffers.append(state.get("momentum_buffer"))
            pasts.append(state.get("past_grad"))
        return params, grads, buffers, pasts

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Restore x_t and update it with the gradient taken at x_{t+1/2}.

        With ``closure`` (zeroes grads, computes the loss, calls ``backward()``, returns the
        loss) the whole cycle runs here: for two-pass variants closure at x_t,
        :meth:`extrapolate`, closure at x_{t+1/2}; for one-pass variants :meth:`extrapolate`
        then the closure once. Returns the loss of the first closure call.
        """
        loss = None
        if closure is not None:
            if self.two_pass:
                with torch.enable_grad():
                    loss = closure()
                self.extrapolate()
                with torch.enable_grad():
                    closure()
            else:
                self.extrapolate()
                with torch.enable_grad():
                    loss = closure()
        elif not self._extrapolated:
            moving = sorted({g["extrapolation"] for g in self.param_groups} - {"none"})
            if moving:
                raise RuntimeError(
                    f"step() called without extrapolate() for extrapolation={moving}; call "
                    "extrapolate() before the backward at x_{t+1/2} (or pass a closure to step())"
                )
        self._update()
        self._extrapolated = False
        return loss

    def _use_foreach(self, params: list[Tensor]) -> bool:
        if self.foreach is not None:
            return self.foreach
        return _default_foreach(params)


# -- gamma -----------------------------------------------------------------------------------


def effective_gamma(group: Mapping[str, Any]) -> float:
    """The gamma a param group extrapolates with now: ``gamma``, or ``gamma_ratio * lr``.

    :meth:`ExtrapSGD.extrapolate` calls this at every extrapolation, so with ``gamma=None``
    the step follows the group's current (scheduled) ``lr``. Use it to report gamma too.

    Args:
        group: one entry of ``optimizer.param_groups``.

    Returns:
        ``group["gamma"]`` if it is set, else ``group["gamma_ratio"] * group["lr"]``.

    Example:
        >>> effective_gamma({"lr": 0.5, "gamma": None, "gamma_ratio": 0.1})
        0.05
        >>> effective_gamma({"lr": 0.5, "gamma": 0.2, "gamma_ratio": 0.1})
        0.2
    """
    gamma = group["gamma"]
    return float(group["gamma_ratio"] * group["lr"] if gamma is None else gamma)


# -- validation ------------------------------------------------------------------------------

_OPTION_DEFAULTS: dict[str, Any] = {
    "momentum": 0.0,
    "nesterov": False,
    "weight_decay": 0.0,
    "extrapolation": "gradient",
    "gamma": None,
    "gamma_ratio": 0.1,
    "noise_std": 0.0,
    "noise": "gaussian",
    "extrapolation_momentum": False,
    "trust_coefficient": None,
}

_NON_NEGATIVE = (
    ("lr", "learning rate"),
    ("gamma", "extrapolation step"),
    ("gamma_ratio", "extrapolation ratio"),
    ("noise_std", "noise scale"),
    ("momentum", "momentum"),
    ("weight_decay", "weight decay"),
)


def _validate_options(options: dict[str, Any]) -> None:
    for name, what in _NON_NEGATIVE:
        value = options.get(name)
        if value is not None and value < 0:
            raise ValueError(f"Invalid {what}: {name}={value} (must be >= 0)")
    variant = variant_info(options["extrapolation"])
    if options["nesterov"] and options["momentum"] <= 0:
        raise ValueError(
            f"Invalid nesterov=True with momentum={options['momentum']}: "
            "Nesterov needs momentum > 0"
        )
    if options["noise"] not in _NOISE_KINDS:
        raise ValueError(f"Invalid noise={options['noise']!r}; choose one of {_NOISE_KINDS}")
    trust = options["trust_coefficient"]
    if trust is not None and trust <= 0:
        raise ValueError(f"Invalid trust_coefficient={trust} (must be > 0, or None to disable)")
    if variant.name == "sam" and options["gamma"] is None:
        raise ValueError(
            "Invalid gamma=None for extrapolation='sam': give the SAM radius, e.g. gamma=0.05"
        )


def _default_foreach(params: list[Tensor]) -> bool:
    # torch's own choice for SGD (foreach on CUDA-like devices, single-tensor on CPU); private
    # in torch, so fall back to the same rule if it ever moves.
    try:
        from torch.optim.optimizer import _default_to_fused_or_foreach

        return bool(_default_to_fused_or_foreach(params, differentiable=False)[1])
    except ImportError:  # pragma: no cover - depends on the torch release
        return all(p.device.type == "cuda" for p in params)


def _group_by_device_and_dtype(tensors: list[Tensor]) -> list[list[int]]:
    """Indices of ``tensors`` grouped by (device, dtype), as the foreach kernels need."""
    buckets: dict[tuple[torch.device, torch.dtype], list[int]] = {}
    for i, t in enumerate(tensors):
        buckets.setdefault((t.device, t.dtype), []).append(i)
    return list(buckets.values())


# -- functional forms ------------------------------------------------------------------------


def extrapolate_(
    params: list[Tensor],
    directions: list[Tensor] | None,
    noises: list[Tensor] | None,
    *,
    scale: float | Tensor,
    foreach: bool,
) -> None:
    """In place: ``params[i] += scale * directions[i] + noises[i]`` (either term optional).

    ``scale`` is ``-gamma`` for the descent variants and ``gamma / (||g|| + eps)`` (a tensor,
    to avoid a host sync) for SAM.
    """
    if foreach:
        _multi_tensor_extrapolate(params, directions, noises, scale=scale)
    else:
        _single_tensor_extrapolate(params, directions, noises, scale=scale)


def _single_tensor_extrapolate(
    params: list[Tensor],
    directions: list[Tensor] | None,
    noises: list[Tensor] | None,
    *,
    scale: float | Tensor,
) -> None:
    scales: dict[tuple[torch.device, torch.dtype], Tensor] = {}
    for i, param in enumerate(params):
        if directions is not None:
            if isinstance(scale, Tensor):
                key = (param.device, param.dtype)
                if key not in scales:  # convert the scale once per device and dtype
                    scales[key] = scale.to(param.device, param.dtype)
                param.addcmul_(directions[i], scales[key])
            else:
                param.add_(directions[i], alpha=scale)
        if noises is not None:
            param.add_(noises[i])


def _multi_tensor_extrapolate(
    params: list[Tensor],
    directions: list[Tensor] | None,
    noises: list[Tensor] | None,
    *,
    scale: float | Tensor,
) -> None:
    for idx in _group_by_device_and_dtype(params):
        group_params = [params[i] for i in idx]
        if directions is not None:
            group_dirs = [directions[i] for i in idx]
            if isinstance(scale, Tensor) and group_params[0].device.type != "cpu":
                # keep the scale on the device: no host sync (costs one temporary per tensor)
                scaled = torch._foreach_mul(
                    group_dirs, scale.to(group_params[0].device, group_params[0].dtype)
                )
                torch._foreach_add_(group_params, scaled)
            else:  # a plain number: reading a CPU scalar costs nothing
                alpha = float(scale) if isinstance(scale, Tensor) else scale
                torch._foreach_add_(group_params, group_dirs, alpha=alpha)
        if noises is not None:
            torch._foreach_add_(group_params, [noises[i] for i in idx])


def _restore(params: list[Tensor], anchors: list[Tensor], *, foreach: bool) -> None:
    if foreach:
        for idx in _group_by_device_and_dtype(params):
            torch._foreach_copy_([params[i] for i in idx], [anchors[i] for i in idx])
    else:
        for param, anchor in zip(params, anchors, strict=True):
            param.copy_(anchor)


def extrap_sgd(
    params: list[Tensor],
    grads: list[Tensor],
    momentum_buffer_list: list[Tensor | None],
    past_grad_list: list[Tensor | None] | None,
    *,
    lr: float,
    momentum: float,
    nesterov: bool,
    weight_decay: float,
    trust_coefficient: float | None,
    foreach: bool,
) -> None:
    """The update at x_t with ``grads`` taken at x_{t+1/2} (see :class:`ExtrapSGD`).

    Fills ``momentum_buffer_list`` (new buffers where an entry is None) and, when given,
    ``past_grad_list`` with a copy of the raw gradient for the ``past`` variant.
    """
    func = _multi_tensor_extrap_sgd if foreach else _single_tensor_extrap_sgd
    func(
        params,
        grads,
        momentum_buffer_list,
        past_grad_list,
        lr=lr,
        momentum=momentum,
        nesterov=nesterov,
        weight_decay=weight_decay,
        trust_coefficient=trust_coefficient,
    )


def _trust_factor(param: Tensor, direction: Tensor, coefficient: float) -> Tensor:
    param_norm = torch.linalg.vector_norm(param)
    direction_norm = torch.linalg.vector_norm(direction)
    ratio = coefficient * param_norm / direction_norm
    both_positive = (param_norm > 0) & (direction_norm > 0)
    return torch.where(both_positive, ratio, torch.ones_like(ratio))


def _single_tensor_extrap_sgd(
    params: list[Tensor],
    grads: list[Tensor],
    momentum_buffer_list: list[Tensor | None],
    past_grad_list: list[Tensor | None] | None,
    *,
    lr: float,
    momentum: float,
    nesterov: bool,
    weight_decay: float,
    trust_coefficient: float | None,
) -> None:
    for i, param in enumerate(params):
        grad = grads[i]
        if past_grad_list is not None:
            past = past_grad_list[i]
            if past is None:
                past_grad_list[i] = grad.detach().clone()
            else:
                past.copy_(grad)
        if weight_decay != 0:
            grad = grad.add(param, alpha=weight_decay)
        if trust_coefficient is not None:
            grad = grad * _trust_factor(param, grad, trust_coefficient)
        if momentum != 0:
            buf = momentum_buffer_list[i]
            if buf is None:
                buf = torch.clone(grad).detach()
                momentum_buffer_list[i] = buf
            else:
                buf.mul_(momentum).add_(grad)
            grad = grad.add(buf, alpha=momentum) if nesterov else buf
        param.add_(grad, alpha=-lr)


def _multi_tensor_extrap_sgd(
    params: list[Tensor],
    grads: list[Tensor],
    momentum_buffer_list: list[Tensor | None],
    past_grad_list: list[Tensor | None] | None,
    *,
    lr: float,
    momentum: float,
    nesterov: bool,
    weight_decay: float,
    trust_coefficient: float | None,
) -> None:
    for idx in _group_by_device_and_dtype(params):
        group_params = [params[i] for i in idx]
        group_grads = [grads[i] for i in idx]
        if past_grad_list is not None:
            _store_past_grads(past_grad_list, idx, group_grads)
        if weight_decay != 0:
            group_grads = list(torch._foreach_add(group_grads, group_params, alpha=weight_decay))
        if trust_coefficient is not None:
            factors = [
                _trust_factor(p, g, trust_coefficient)
                for p, g in zip(group_params, group_grads, strict=True)
            ]
            group_grads = list(torch._foreach_mul(group_grads, factors))
        if momentum != 0:
            buffers = _momentum_buffers(momentum_buffer_list, idx, group_grads, momentum)
            if nesterov:
                group_grads = list(torch._foreach_add(group_grads, buffers, alpha=momentum))
            else:
                group_grads = buffers
        torch._foreach_add_(group_params, group_grads, alpha=-lr)


def _store_past_grads(
    past_grad_list: list[Tensor | None], idx: list[int], grads: list[Tensor]
) -> None:
    existing = [j for j, i in enumerate(idx) if past_grad_list[i] is not None]
    if existing:
        torch._foreach_copy_(
            [cast(Tensor, past_grad_list[idx[j]]) for j in existing], [grads[j] for j in existing]
        )
    for j, i in enumerate(idx):
        if past_grad_list[i] is None:
            past_grad_list[i] = grads[j].detach().clone()


def _momentum_buffers(
    momentum_buffer_list: list[Tensor | None], idx: list[int], grads: list[Tensor], momentum: float
) -> list[Tensor]:
    """Update (or create) the buffers of ``idx``: buf = momentum * buf + d, or d the first time."""
    existing = [j for j, i in enumerate(idx) if momentum_buffer_list[i] is not None]
    if existing:
        old = [cast(Tensor, momentum_buffer_list[idx[j]]) for j in existing]
        torch._foreach_mul_(old, momentum)
        torch._foreach_add_(old, [grads[j] for j in existing])
    buffers: list[Tensor] = []
    for j, i in enumerate(idx):
        buf = momentum_buffer_list[i]
        if buf is None:
            buf = torch.clone(grads[j]).detach()
            momentum_buffer_list[i] = buf
        buffers.append(buf)
    return buffers
