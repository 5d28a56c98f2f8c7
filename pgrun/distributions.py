"""Action distributions, in torch: what a policy module returns for a batch of states.

Every distribution offers the interface the algorithms use, each method a formula:

* ``log_prob(a)`` — log π(a|s);
* ``entropy()`` — H[π(·|s)];
* ``mode()`` — the greedy action (evaluation);
* ``sample(rng)`` — a ~ π(·|s), with the sampling noise drawn from a NumPy generator (the
  rollout's, seeded and checkpointed, so a run reproduces on any device);
* ``kl(other)`` — the exact KL[self‖other] per state (PPO-KL, TRPO).

They are written out rather than built on ``torch.distributions``, whose argument
validation costs more than the forward pass of a small network; each is tested against
``torch.distributions``.

**Categorical** (Discrete actions, int64 (N,)), from logits z:
  log π(a|s) = z_a − log Σ_k e^{z_k},   H = −Σ_k p_k log p_k,
  KL[p‖q] = Σ_k p_k (log p_k − log q_k);
  sampled by the Gumbel-max trick: a = argmax_k (z_k + g_k), g = −log(−log u), u ~ U[0, 1).

**MultiCategorical** (MultiDiscrete actions, int64 (N, k)): k independent Categoricals,
one per factor, from the logits split by ``nvec``: log π(a|s) = Σ_j log π_j(a_j|s), and
H and KL likewise sum over factors (independence).

**Bernoulli** (MultiBinary actions, int64 (N, n) of 0/1), from logits z, p = σ(z):
  log π(a|s) = Σ_i [a_i log p_i + (1 − a_i) log(1 − p_i)], log p = −softplus(−z),
  log(1 − p) = −softplus(z);  H = Σ_i [p_i softplus(−z_i) + (1 − p_i) softplus(z_i)];
  KL[p‖q] = Σ_i [p_i (log p_i − log q_i) + (1 − p_i)(log(1 − p_i) − log(1 − q_i))];
  sampled as a = [u < p], u ~ U[0, 1).

**Diagonal Gaussian** (Box actions, float32 (N, act_dim)), from μ and log σ:
  log π(u|s) = Σ_i [−½((u_i − μ_i)/σ_i)² − log σ_i − ½ log 2π],
  H = Σ_i [½ + ½ log 2π + log σ_i],
  KL[p‖q] = Σ_i [log(σ_q,i/σ_p,i) + (σ_p,i² + (μ_p,i − μ_q,i)²)/(2σ_q,i²) − ½];
  sampled as u = μ + σ ε, ε ~ N(0, 1).

**Bounds** (``ActionBounds``). A Gaussian is unbounded and a Box is not. The stored
action — the one the update scores with ``log_prob`` — is always the Gaussian sample u;
only the copy sent to the env is mapped into [low, high] (``policy.action_bounds``):

* ``clip`` (default; CleanRL's and Stable-Baselines3's choice for PPO): a = clip(u, low,
  high); log π(u|s) is exact for the stored u.
* ``tanh``: a = c + s·tanh(u), c = (high + low)/2, s = (high − low)/2 (SAC's squashing).
  The log-prob reported is the density of the env action,
  log π(a|s) = log N(u) − Σ_i log(s_i (1 − tanh² u_i)); the correction does not depend
  on θ, so ratios and gradients equal the Gaussian's. The entropy is the Gaussian's (the
  squashed one has no closed form; SB3 does the same). Needs finite bounds.

Deterministic (evaluation) actions are the mode, mapped the same way.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from pgrun.config import ACTION_BOUNDS

LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0
"""Range a state-dependent log σ is clamped to (a state-independent one is left free)."""

BOUNDS = ACTION_BOUNDS
"""How Gaussian samples reach a Box's bounds (``policy.action_bounds``)."""


class Distribution:
    """The interface every action distribution offers (see the module docstring)."""

    def log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def entropy(self) -> torch.Tensor:
        raise NotImplementedError

    def mode(self) -> torch.Tensor:
        raise NotImplementedError

    def sample(self, rng: np.random.Generator) -> torch.Tensor:
        raise NotImplementedError

    def kl(self, other: Distribution) -> torch.Tensor:
        raise NotImplementedError

    def detach(self) -> Distribution:
        """A snapshot with no gradient (π_old in PPO-KL and TRPO): copied, since parameters
        such as a state-independent log σ are views that later optimizer steps change."""
        raise NotImplementedError

    def __getitem__(self, idx) -> Distribution:
        """The distributions of the states ``idx`` (a minibatch of a stored π_old)."""
        raise NotImplementedError


class Categorical(Distribution):
    def __init__(self, logits: torch.Tensor):
        self.log_p = logits.log_softmax(-1)

    def log_prob(self, actions):
        return self.log_p.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)

    def entropy(self):
        return -(self.log_p.exp() * self.log_p).sum(-1)

    def mode(self):
        return self.log_p.argmax(-1)

    def sample(self, rng):
        u = rng.random(tuple(self.log_p.shape))
        gumbel = torch.from_numpy(-np.log(-np.log(u))).to(self.log_p)
        return (self.log_p + gumbel).argmax(-1)

    def kl(self, other):
        return (self.log_p.exp() * (self.log_p - other.log_p)).sum(-1)

    def detach(self):
        return self._with(self.log_p.detach().clone())

    def __getitem__(self, idx):
        return self._with(self.log_p[idx])

    @staticmethod
    def _with(log_p: torch.Tensor) -> Categorical:
        new = object.__new__(Categorical)
        new.log_p = log_p
        return new


class MultiCategorical(Distribution):
    def __init__(self, logits: torch.Tensor, nvec):
        self.parts = [Categorical(z) for z in logits.split([int(n) for n in nvec], dim=-1)]

    def log_prob(self, actions):
        return sum(p.log_prob(actions[..., j]) for j, p in enumerate(self.parts))

    def entropy(self):
        return sum(p.entropy() for p in self.parts)

    def mode(self):
        return torch.stack([p.mode() for p in self.parts], dim=-1)

    def sample(self, rng):
        return torch.stack([p.sample(rng) for p in self.parts], dim=-1)

    def kl(self, other):
        return sum(p.kl(q) for p, q in zip(self.parts, other.parts, strict=True))

    def detach(self):
        return self._with([p.detach() for p in self.parts])

    def __getitem__(self, idx):
        return self._with([p[idx] for p in self.parts])

    @staticmethod
    def _with(parts: list[Categorical]) -> MultiCategorical:
        new = object.__new__(MultiCategorical)
        new.parts = parts
        return new


class Bernoulli(Distribution):
    def __init__(self, logits: torch.Tensor):
        self.logits = logits

    def _log_p(self):
        return -F.softplus(-self.logits), -F.softplus(self.logits)  # log p, log(1 − p)

    def log_prob(self, actions):
        log_p, log_q = self._log_p()
        a = actions.to(self.logits.dtype)
        return (a * log_p + (1.0 - a) * log_q).sum(-1)

    def entropy(self):
        p = torch.sigmoid(self.logits)
        return (p * F.softplus(-self.logits) + (1.0 - p) * F.softplus(self.logits)).sum(-1)

    def mode(self):
        return (self.logits > 0).long()

    def sample(self, rng):
        u = torch.from_numpy(rng.random(tuple(self.logits.shape))).to(self.logits)
        return (u < torch.sigmoid(self.logits)).long()

    def kl(self, other):
        (log_p, log_q), (olog_p, olog_q) = self._log_p(), other._log_p()
        p = torch.sigmoid(self.logits)
        return (p * (log_p - olog_p) + (1.0 - p) * (log_q - olog_q)).sum(-1)

    def detach(self):
        return Bernoulli(self.logits.detach().clone())

    def __getitem__(self, idx):
        return Bernoulli(self.logits[idx])


class DiagGaussian(Distribution):
    def __init__(self, mean: torch.Tensor, log_std: torch.Tensor,
                 bounds: ActionBounds | None = None):
        self.mean, self.log_std = mean, log_std.expand_as(mean)
        self.bounds = bounds

    def log_prob(self, actions):
        z = (actions - self.mean) * (-self.log_std).exp()
        logp = (-0.5 * z.pow(2) - self.log_std - LOG_SQRT_2PI).sum(-1)
        if self.bounds is not None and self.bounds.mode == "tanh":
            logp = logp - self.bounds.log_det(actions)
        return logp

    def entropy(self):
        return (0.5 + LOG_SQRT_2PI + self.log_std).sum(-1)

    def mode(self):
        return self.mean

    def sample(self, rng):
        eps = torch.from_numpy(rng.standard_normal(tuple(self.mean.shape), dtype=np.float32))
        return self.mean + self.log_std.exp() * eps.to(self.mean.device)

    def kl(self, other):
        var_ratio = (2.0 * (self.log_std - other.log_std)).exp()
        mean_term = ((self.mean - other.mean) * (-other.log_std).exp()).pow(2)
        return (0.5 * (var_ratio + mean_term - 1.0) - (self.log_std - other.log_std)).sum(-1)

    def detach(self):
        return DiagGaussian(self.mean.detach().clone(), self.log_std.detach().clone(), self.bounds)

    def __getitem__(self, idx):
        return DiagGaussian(self.mean[idx], self.log_std[idx], self.bounds)


class ActionBounds:
    """Maps stored Gaussian samples u to env actions in [low, high] (module docstring):
    ``clip`` or ``tanh``; ``log_det`` is the tanh log-prob correction."""

    def __init__(self, low: np.ndarray, high: np.ndarray, mode: str = "clip"):
        if mode not in BOUNDS:
            raise ValueError(f"action bounds {mode!r}: one of {BOUNDS}")
        self.mode = mode
        self.low = np.asarray(low, dtype=np.float32)
        self.high = np.asarray(high, dtype=np.float32)
        if mode == "tanh":
            if not (np.isfinite(self.low).all() and np.isfinite(self.high).all()):
                raise ValueError("tanh squashing needs finite action bounds")
            self.center = (self.high + self.low) / 2
            self.scale = (self.high - self.low) / 2
            self.log_scale = torch.from_numpy(np.log(self.scale).astype(np.float32))

    def to_env(self, u: np.ndarray) -> np.ndarray:
        """The env action for stored samples ``u`` (NumPy, on their way to the env)."""
        if self.mode == "clip":  # np.clip's values (NaN included) without its Python wrapper
            return np.minimum(np.maximum(u, self.low), self.high)
        return np.clip(self.center + self.scale * np.tanh(u), self.low, self.high)  # clip: rounding

    def log_det(self, u: torch.Tensor) -> torch.Tensor:
        """Σ_i log |∂a_i/∂u_i| for a = c + s·tanh(u): log s + log(1 − tanh² u), the latter
        as 2(log 2 − u − softplus(−2u)), which stays finite for large |u|."""
        log_scale = self.log_scale.to(u.device)
        return (log_scale + 2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))).sum(-1)
