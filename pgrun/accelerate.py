"""An optional accelerator for the layers of plain MLP and tabular bodies, in NumPy.

For a few hundred observations and a 64-64 MLP, torch spends much of a forward and
backward pass in per-op and per-module overhead, and its tanh is slow on some CPUs.
``attach(policy)`` makes ``ActorCritic.outputs`` and ``.value`` run their layers here, as
one autograd node (``_OutputsFn``) whose inputs are the observations and the module's
own parameters: its forward computes the network's outputs (z, V), its backward takes
∂L/∂z and ∂L/∂V *from autograd* and carries them through the layers by the chain rule,
returning ∂L/∂θ for each parameter:

  dense   y = x Wᵀ + b:  ∂L/∂W = δᵀx,  ∂L/∂b = Σ_i δ_i,  ∂L/∂x = δW
  table   y = T[i]:      ∂L/∂T[j] = Σ_{i = j} δ_i
  f(x) elementwise:      ∂L/∂x = δ ⊙ f′(x)   (tanh: 1 − y²; relu: [x > 0];
                         elu: 1 or eˣ; gelu: Φ(x) + x φ(x))

Everything past the network outputs — distributions, losses, their gradients, optimizers —
is torch autograd's; algorithms never see this module. It is used where it is exact
(``supports``): ``ActorCritic`` with an mlp or tabular body, on the CPU, for algorithms
that need only first derivatives (TRPO's Fisher-vector products differentiate twice and
run on plain autograd). ``accelerate=false`` turns it off; summary.json records which
path ran. ``tests/test_accelerate.py`` checks it against autograd for every algorithm,
head and body it claims.

The layers read the parameters through NumPy views of their storage, so they always see
the current weights: nothing is cached between calls.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.special import erf
from torch import nn

from pgrun.distributions import LOG_SQRT_2PI
from pgrun.flat import flat_parameters
from pgrun.policies import (
    ACTIVATIONS,
    ActorCritic,
    CategoricalHead,
    GaussianHead,
    OneHot,
    StateIndex,
)
from pgrun.stack import StackedEmbedding, StackedLinear

_ACTIVATION_TYPES = tuple(ACTIVATIONS.values())


# ---------------------------------------------------------------------------- layers
# Each layer: ``params`` (the torch parameters it reads, in order), ``forward(x) -> (y,
# cache)`` and ``backward(dy, cache, need_dx) -> (dx, grads)``; nothing is kept between
# calls except the parameters' NumPy views. The layers of a seed-stacked policy
# (``stack.py``) carry a leading seed dimension K in their parameters and activations:
# dense y[k] = x[k] W[k]ᵀ + b[k], table y[k, i] = T[k, s_{k,i}], the same formulas per seed.

class Dense:
    def __init__(self, layer: nn.Linear | StackedLinear):
        self.params = [layer.weight, layer.bias]
        self.w, b = layer.weight.detach().numpy(), layer.bias.detach().numpy()
        self.wt = np.swapaxes(self.w, -1, -2)  # Wᵀ, a view like w (made once: acting calls this per step)
        self.b = b if b.ndim == 1 else b[:, None, :]  # K seeds: broadcast over the samples

    def forward(self, x):
        y = x @ self.wt
        y += self.b
        return y, x

    def backward(self, dy, x, need_dx):
        dx = None
        if need_dx:  # one output (a value head): ∂L/∂x = δW is an outer product, which NumPy's
            # matmul computes ≈7× slower than the same products broadcast
            dx = dy * self.w if self.w.shape[-2] == 1 else dy @ self.w
        return dx, [np.swapaxes(dy, -1, -2) @ x, np.add.reduce(dy, axis=-2)]


class Table:
    def __init__(self, layer: nn.Embedding | StackedEmbedding):
        self.params = [layer.weight]
        self.table = layer.weight.detach().numpy()

    def _index(self, idx):
        if self.table.ndim == 2:
            return idx
        return np.arange(len(self.table))[:, None], idx  # K seeds: seed k's table for row k

    def forward(self, idx):
        return self.table[self._index(idx)], idx

    def backward(self, dy, idx, need_dx):
        grad = np.zeros_like(self.table)
        np.add.at(grad, self._index(idx), dy)
        return None, [grad]


class Activation:
    def __init__(self, kind: type):
        self.params, self.kind = [], kind

    def forward(self, x):
        if self.kind is nn.Tanh:  # in place: x is always a dense layer's fresh output
            y = np.tanh(x, out=x)
            return y, y
        if self.kind is nn.ReLU:
            return np.maximum(x, 0.0), x
        if self.kind is nn.ELU:
            return np.where(x > 0, x, np.expm1(np.minimum(x, 0.0))), x
        return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0))).astype(x.dtype), x  # GELU

    def backward(self, dy, cache, need_dx):
        if self.kind is nn.Tanh:
            d = np.multiply(cache, cache)
            np.subtract(1.0, d, out=d)
            d *= dy
            return d, []
        x = cache
        if self.kind is nn.ReLU:
            return dy * (x > 0), []
        if self.kind is nn.ELU:
            return dy * np.where(x > 0, 1.0, np.exp(np.minimum(x, 0.0))).astype(x.dtype), []
        cdf = 0.5 * (1.0 + erf(x / np.sqrt(2.0)))  # GELU: Φ(x) + x φ(x)
        pdf = np.exp(-0.5 * x * x) / np.sqrt(2.0 * np.pi)
        return dy * (cdf + x * pdf).astype(x.dtype), []


class Inputs:
    """Discrete observation → row index (``StateIndex``) or one-hot code (``OneHot``)."""

    def __init__(self, layer: StateIndex | OneHot):
        self.params, self.start = [], layer.start
        self.eye = np.eye(layer.n, dtype=np.float32) if isinstance(layer, OneHot) else None

    def forward(self, obs):
        idx = obs - self.start if self.start else obs
        return (idx if self.eye is None else self.eye[idx]), None

    def backward(self, dy, cache, need_dx):
        return None, []


def layers_of(*modules: nn.Module) -> list | None:
    """The NumPy layers for a chain of modules, or None when one is not supported."""
    out: list = []
    for module in modules:
        for layer in module.modules():
            if isinstance(layer, nn.Linear | StackedLinear):
                out.append(Dense(layer))
            elif isinstance(layer, nn.Embedding | StackedEmbedding):
                out.append(Table(layer))
            elif isinstance(layer, StateIndex | OneHot):
                out.append(Inputs(layer))
            elif isinstance(layer, _ACTIVATION_TYPES) and type(layer) in ACTIVATIONS.values():
                out.append(Activation(type(layer)))
            elif not isinstance(layer, nn.Sequential | nn.Identity):
                return None
    return out


class Tower:
    """A chain of layers."""

    def __init__(self, layers: list):
        self.layers = layers
        self.params = [p for layer in layers for p in layer.params]

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, list]:
        tape = []
        for layer in self.layers:
            x, cache = layer.forward(x)
            tape.append(cache)
        return x, tape

    def backward(self, dy: np.ndarray, tape: list, need_dx: bool):
        """(∂L/∂x or None, the parameters' gradients in ``params`` order)."""
        grads: list = []
        for i in range(len(self.layers) - 1, -1, -1):
            dy, g = self.layers[i].backward(dy, tape[i], need_dx or i > 0)
            grads[:0] = g
        return dy, grads


# -------------------------------------------------------------------------- attaching

class _OutputsFn(torch.autograd.Function):
    """The accelerated policy's outputs — ``both`` (z, V), ``pi`` (z) or ``v`` (V) — as one
    autograd node whose inputs are the observations and the module's parameters: its
    backward returns ∂L/∂θ for each parameter from autograd's ∂L/∂z and ∂L/∂V."""

    @staticmethod
    def forward(ctx, obs, acc, mode, *params):
        ctx.set_materialize_grads(False)
        z, v, tape = acc.forward(obs.detach().numpy(), mode)
        ctx.acc, ctx.tape, ctx.mode = acc, tape, mode
        if mode == "pi":
            return torch.from_numpy(z)
        v = torch.from_numpy(np.ascontiguousarray(v[..., 0]))
        return v if mode == "v" else (torch.from_numpy(z), v)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, *grads):
        dz, dv = {"pi": (grads[0], None), "v": (None, grads[0])}.get(ctx.mode, grads)
        grads = ctx.acc.backward(None if dz is None else np.ascontiguousarray(dz.numpy()),
                                 None if dv is None else np.ascontiguousarray(dv.numpy()),
                                 ctx.tape)
        return (None, None, None, *grads)


class Accelerator:
    """``ActorCritic.outputs`` and ``.value`` with NumPy layers (module docstring)."""

    def __init__(self, policy: ActorCritic):
        flat_parameters(policy)  # the layers read views of the flat storage: flatten first
        self.shared = policy.shared
        self.body = Tower(layers_of(policy.pi_body)) if self.shared else None
        self.pi = Tower(layers_of(*([] if self.shared else [policy.pi_body]), policy.head.out))
        self.v = None
        if policy.with_value:
            self.v = Tower(layers_of(*([] if self.shared else [policy.v_body]), policy.v_out))
        self.params = [p for t in (self.body, self.pi, self.v) if t is not None for p in t.params]
        head = policy.head  # acting in NumPy too (``act``) for a Gaussian with a free log σ
        self.log_std = (head.log_std if type(head) is GaussianHead and not head.state_dependent_std
                        and (head.bounds is None or head.bounds.mode == "clip") else None)
        self._log_std_now = None if self.log_std is None else self.log_std.detach().numpy()
        self._sigma_cache: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    @staticmethod
    def supports(policy: nn.Module) -> bool:
        if type(policy) is not ActorCritic or policy.kind not in ("mlp", "tabular"):
            return False
        if type(policy.head) not in (CategoricalHead, GaussianHead) or getattr(
                policy.head, "nvec", None) is not None:  # heads it was checked for
            return False
        if any(p.device.type != "cpu" or p.dtype != torch.float32 for p in policy.parameters()):
            return False
        modules = [policy.pi_body, policy.head.out]
        if policy.with_value:
            modules += [policy.v_body, policy.v_out]
        return all(layers_of(m) is not None for m in modules)

    def handles(self, obs: torch.Tensor) -> bool:
        return obs.device.type == "cpu" and not obs.requires_grad

    # -- NumPy passes
    def forward(self, obs: np.ndarray, mode: str = "both"):
        """(z or None, V as N×1 or None, tape) for ``mode`` both, pi or v."""
        tape: dict = {}
        h = obs
        if self.shared:
            h, tape["body"] = self.body.forward(obs)
        z = v = None
        if mode != "v":
            z, tape["pi"] = self.pi.forward(h)
        if mode != "pi":
            v, tape["v"] = self.v.forward(h)
        return z, v, tape

    def backward(self, dz: np.ndarray | None, dv: np.ndarray | None, tape: dict) -> list:
        """∂L/∂θ, a tensor (or None) per parameter in ``params`` order, from ∂L/∂z (B×K)
        and ∂L/∂V (B,), either of which may be None."""
        grads: dict[int, np.ndarray] = {}
        dh = None
        for tower, name, dy in ((self.pi, "pi", dz), (self.v, "v", dv)):
            if dy is None or name not in tape:
                continue
            if name == "v":
                dy = dy[..., None]  # V is the tower's single output
            dx, tower_grads = tower.backward(dy, tape[name], need_dx=self.shared)
            grads.update(zip(map(id, tower.params), tower_grads, strict=True))
            if self.shared:
                dh = dx if dh is None else dh + dx
        if self.shared and dh is not None:
            body_grads = self.body.backward(dh, tape["body"], False)[1]
            grads.update(zip(map(id, self.body.params), body_grads, strict=True))
        return [None if id(p) not in grads else torch.from_numpy(np.asarray(grads[id(p)]))
                for p in self.params]

    def act(self, obs: np.ndarray, rng: np.random.Generator):
        """``Actor.act`` for a Gaussian head with a free log σ (clip bounds or none), the
        same float32 operations as ``DiagGaussian.sample`` and ``.log_prob`` in NumPy, so
        the same bits (tested): u = μ + σ·ε, log π(u|s) = Σ(−½((u − μ)/σ)² − log σ − ½ log 2π),
        with σ = exp(log σ), 1/σ = exp(−log σ) and the sum still torch's, on the same tensors.
        None for other heads. At one env, acting is one call per env step: torch's per-op
        overhead, not the arithmetic, is the cost this avoids."""
        if self.log_std is None:
            return None
        mean, v, _ = self.forward(obs, "pi" if self.v is None else "both")
        log_std, std, inv_std = self._sigma()
        actions = mean + std * rng.standard_normal(mean.shape, dtype=np.float32)
        z = (actions - mean) * inv_std
        terms = -0.5 * (z * z) - log_std - LOG_SQRT_2PI
        logp = torch.from_numpy(terms).sum(-1).numpy()  # torch's summation order
        return actions, logp, None if v is None else v[..., 0].copy()

    def _sigma(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(log σ, σ, 1/σ) as NumPy arrays, σ and 1/σ by torch's exp as ``DiagGaussian``
        computes them; recomputed only when log σ has changed (an update), which a
        comparison of the last values with a NumPy view of the parameter tells."""
        cached = self._sigma_cache
        if cached is None or not np.array_equal(cached[0], self._log_std_now):
            log_std = self.log_std.detach().clone()
            cached = (log_std.numpy(), log_std.exp().numpy(), (-log_std).exp().numpy())
            self._sigma_cache = cached
        return cached

    # -- what ActorCritic calls
    def outputs(self, obs: torch.Tensor):
        if not torch.is_grad_enabled():
            z, v, _ = self.forward(obs.numpy(), "pi" if self.v is None else "both")
            return torch.from_numpy(z), None if v is None else torch.from_numpy(v[..., 0].copy())
        if self.v is None:
            return _OutputsFn.apply(obs, self, "pi", *self.params), None
        return _OutputsFn.apply(obs, self, "both", *self.params)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        if not torch.is_grad_enabled():
            return torch.from_numpy(self.forward(obs.numpy(), "v")[1][..., 0].copy())
        return _OutputsFn.apply(obs, self, "v", *self.params)


def attach(policy: nn.Module, enabled: bool = True) -> str:
    """Accelerate ``policy`` where it is exact; returns the path that will run:
    ``numpy-layers`` or ``autograd``."""
    if enabled and Accelerator.supports(policy):
        policy.accelerator = Accelerator(policy)
        return "numpy-layers"
    if isinstance(policy, ActorCritic):
        policy.accelerator = None
    return "autograd"
