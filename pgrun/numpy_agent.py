"""The Agent's networks in NumPy: forward passes for the rollout and the update, and the
update's backward pass written out by hand.

For a few observations, or a few hundred, and a 64-64 MLP, torch spends most of a forward
and backward pass in per-op, per-module and autograd overhead; NumPy computes the same
layers several times faster (a PPO gradient step at RL Zoo's CartPole settings: ≈0.97 ms
with torch autograd, ≈0.30 ms here, one thread each). The torch ``Agent`` stays the
definition — it owns the parameters, the checkpoints and ``Agent.evaluate``, against
which every formula here is tested — and ``NumpyAgent`` works on NumPy *views* of its
parameters and of its gradient buffer (``Tensor.numpy()`` shares storage), so optimizer
steps and ``load_state_dict`` — both in place — are seen without copying.

* ``act(obs, rng)``: actions, log π(a|s), V(s) for the rollout (Categorical by Gumbel-max,
  Gaussian as μ + σ·ε with ε from the given generator);
* ``evaluate(obs, actions)``: log π(a|s), H[π(·|s)], V(s), keeping what the backward needs;
* ``backward(dlogp, dentropy, dvalue)``: given ∂L/∂log π(a_i|s_i), ∂L/∂H_i and ∂L/∂V(s_i)
  for the last ``evaluate``'s samples, writes ∂L/∂θ into the Agent's gradient buffer
  (``Agent.flat_grad``): the chain rule through the heads below and then the layers
  (``numpy_layers.py``).

Heads (z: the policy head's output):

* Categorical: log π = log softmax(z)_a; ∂log π/∂z = onehot(a) − p;  ∂H/∂z = −p ⊙ (log p + H)
* Gaussian, ζ = (u − μ)/σ: ∂log π/∂μ = ζ/σ;  ∂log π/∂log σ = ζ² − 1;  ∂H/∂log σ = 1
  (a state-dependent log σ is clamped: no gradient outside [LOG_STD_MIN, LOG_STD_MAX];
  the tanh bound's log-det depends on the stored u only, so it has no gradient).
"""

from __future__ import annotations

import numpy as np

from pgrun.distributions import LOG_SQRT_2PI, LOG_STD_MAX, LOG_STD_MIN
from pgrun.numpy_layers import Activation, Packed, Stack, param_grad
from pgrun.policies import Agent


def rng_for(seed: int, stream: int) -> np.random.Generator:
    """A generator independent of gymnasium's (which seeds ``default_rng(seed)``) and of
    pgrun's other streams: 0 = training actions, 1 = evaluation actions."""
    return np.random.default_rng(np.random.SeedSequence([seed, 0x5067_7275, stream]))


# ------------------------------------------------------------------------------ agent

def _log_softmax_t(z: np.ndarray) -> np.ndarray:
    """log softmax of each row of z (B × K), returned transposed (K × B, contiguous):
    NumPy reduces across rows of a K × B array much faster than along short rows."""
    zt = np.ascontiguousarray(z.T)
    zt -= np.logaddexp.reduce(zt, axis=0)
    return zt


class NumpyAgent:
    """An Agent's forward passes, sampling and backward pass in NumPy (module docstring)."""

    def __init__(self, agent: Agent):
        self.body, self.pi_head = Stack(agent.pi_body), Stack(agent.pi_head)
        self.with_value = agent.with_value
        self.shared = agent.shared
        if self.with_value:
            self.v_body = self.body if agent.shared else Stack(agent.v_body)
            self.v_head = Stack(agent.v_head)
        self.packed = None
        if self.with_value and not self.shared:
            pi = self.body.layers + self.pi_head.layers
            v = self.v_body.layers + self.v_head.layers
            if Packed.fits(pi, v):
                self.packed = Packed([Activation(x.kind) if isinstance(x, Activation) else x
                                      for x in pi], v)
        self.obs_dtype = agent.obs_dtype
        self.continuous = agent.continuous
        self.action_dtype, self.action_shape = agent.action_dtype, agent.action_shape
        self.act_dim = agent.act_dim  # number of Discrete actions, or Box dimensions
        if self.continuous:
            self.bounds = agent.bounds
            self.state_dependent_std = agent.state_dependent_std
            if not self.state_dependent_std:
                self.log_std, self.g_log_std = agent.log_std.detach().numpy(), param_grad(agent.log_std)

    # ------------------------------------------------------------------ rollout
    def value(self, obs: np.ndarray) -> np.ndarray:
        return self.v_head.forward(self.v_body.forward(obs))[:, 0]

    def noise(self, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        """Sampling noise for ``shape`` observations (e.g. steps × envs), drawn at once:
        Gumbel g = −log(−log u), u ~ U[0, 1), per Discrete action, or ε ~ N(0, 1) per Box
        dimension. One draw of T × N is the same numbers in the same order as T draws of N."""
        full = (*shape, self.act_dim)
        if self.continuous:
            return rng.standard_normal(full, dtype=np.float32)
        g = rng.random(full)
        np.log(g, out=g)
        np.negative(g, out=g)
        np.log(g, out=g)
        np.negative(g, out=g)
        return g

    def act(self, obs: np.ndarray, rng: np.random.Generator | None, deterministic: bool = False,
            noise: np.ndarray | None = None):
        """(actions, log π(a|s), V(s) or None), with ``noise`` (from ``noise``) or fresh
        noise from ``rng``.

        Categorical: samples with the Gumbel-max trick, a = argmax_k(z_k + g_k),
        or takes argmax_k z_k when ``deterministic``.
        Gaussian: u = μ + σ·ε (or μ when ``deterministic``), the unbounded sample that is
        stored and scored; ``to_env`` maps it into the bounds."""
        if noise is None and not deterministic:
            noise = self.noise(rng, (len(obs),))
        if self.packed is not None:
            z, value = self.packed.forward(obs)
        else:
            h = self.body.forward(obs)
            z = self.pi_head.forward(h)
            value = None
            if self.with_value:
                value = self.v_head.forward(h if self.shared else self.v_body.forward(obs))[:, 0]
        if self.continuous:
            mean, log_std = self._mean_log_std(z)
            if deterministic:
                actions = mean.copy()
            else:
                actions = mean + np.exp(log_std) * noise
            logp = self._gaussian_log_prob(mean, log_std, actions)
        else:
            log_p = _log_softmax_t(z)
            if deterministic:
                actions = z.argmax(axis=1)
            else:
                actions = (log_p + noise.T).argmax(axis=0)
            logp = log_p[actions, np.arange(len(z))]
        return actions, logp, value

    def mode(self, obs: np.ndarray) -> np.ndarray:
        """Greedy actions, from the policy tower alone: argmax_k z_k (Categorical) or μ
        (Gaussian); what ``act(..., deterministic=True)`` returns as its actions."""
        z = self.pi_head.forward(self.body.forward(obs))
        if self.continuous:
            return np.array(z[:, :self.act_dim], dtype=np.float32)
        return z.argmax(axis=1)

    def sync(self) -> None:
        """Refresh ``act``'s packed copy of the weights (``Packed``) after they changed:
        ``act`` uses the weights as of construction or the last ``sync`` (the Collector
        syncs at the start of every batch, during which the weights are fixed)."""
        if self.packed is not None:
            self.packed.fill()

    def to_env(self, actions: np.ndarray) -> np.ndarray:
        """The actions to send to the env: Gaussian samples mapped into the Box's bounds
        (``distributions.ActionBounds``), Discrete actions as they are."""
        return self.bounds.to_env(actions) if self.continuous else actions

    # ------------------------------------------------------------------- update
    def evaluate(self, obs: np.ndarray, actions: np.ndarray, with_value: bool = True):
        """(log π(a|s), H[π(·|s)], V(s) or None) for stored actions, as ``Agent.evaluate``;
        keeps what ``backward`` needs."""
        h = self.body.forward(obs)
        z = self.pi_head.forward(h)
        if self.continuous:
            mean, log_std = self._mean_log_std(z)
            logp = self._gaussian_log_prob(mean, log_std, actions)
            entropy = np.add.reduce(0.5 + LOG_SQRT_2PI + log_std, axis=1, dtype=np.float32)
        else:  # K × B layout (``_log_softmax_t``)
            log_p = _log_softmax_t(z)
            p = np.exp(log_p)
            rows = np.arange(len(z))
            logp = log_p[actions, rows]
            entropy = np.add.reduce(p * log_p, axis=0)
            np.negative(entropy, out=entropy)
            self._cat = (rows, actions, p, log_p, entropy)
        value = None
        if with_value and self.with_value:
            value = self.value(obs) if not self.shared else self.v_head.forward(h)[:, 0]
        return logp, entropy, value

    def backward(self, dlogp: np.ndarray, dentropy, dvalue: np.ndarray | None = None) -> None:
        """∂L/∂θ into the Agent's gradient buffer from ∂L/∂log π, ∂L/∂H (an array or one
        number for every sample) and ∂L/∂V (None: the value parameters' gradients are left
        as they are), all for the last ``evaluate``'s samples."""
        dz = self._head_backward(np.asarray(dlogp, dtype=np.float32), dentropy)
        dh = self.pi_head.backward(dz, need_dx=True)
        if dvalue is not None and self.with_value:
            dhv = self.v_head.backward(np.asarray(dvalue, dtype=np.float32)[:, None], need_dx=True)
            if self.shared:
                dh = dh + dhv
            else:
                self.v_body.backward(dhv)
        self.body.backward(dh)

    def value_backward(self, dvalue: np.ndarray) -> None:
        """∂L/∂φ of the value parameters alone, after a ``value(obs)``."""
        dhv = self.v_head.backward(np.asarray(dvalue, dtype=np.float32)[:, None], need_dx=True)
        self.v_body.backward(dhv)

    # ---------------------------------------------------------------- the heads
    def _mean_log_std(self, z: np.ndarray):
        if self.state_dependent_std:
            raw = z[:, self.act_dim:]
            self._inside = (raw >= LOG_STD_MIN) & (raw <= LOG_STD_MAX)  # where the clamp passes ∂
            return z[:, :self.act_dim], np.clip(raw, LOG_STD_MIN, LOG_STD_MAX)
        return z, np.broadcast_to(self.log_std, z.shape)

    def _gaussian_log_prob(self, mean, log_std, u):
        """Σ_i [−½ ζ_i² − log σ_i − ½ log 2π] (− the tanh bound's log-det), ζ = (u − μ)/σ."""
        inv_std = np.exp(-log_std)
        zeta = (u - mean) * inv_std
        self._gauss = (zeta, inv_std, log_std)
        logp = (-0.5 * zeta * zeta - log_std - np.float32(LOG_SQRT_2PI)).sum(axis=1)
        if self.bounds.mode != "clip":
            logp = logp - self.bounds.log_det(u)
        return logp.astype(np.float32, copy=False)

    def _head_backward(self, dlogp: np.ndarray, dentropy) -> np.ndarray:
        """∂L/∂z from ∂L/∂log π and ∂L/∂H (module docstring)."""
        dent = np.asarray(dentropy, dtype=np.float32)
        dent_col = dent[:, None] if dent.ndim else dent
        if not self.continuous:  # K × B, as the forward kept it
            rows, actions, p, log_p, entropy = self._cat
            dz = log_p + entropy
            dz *= dent
            dz += dlogp
            dz *= p
            np.negative(dz, out=dz)
            dz[actions, rows] += dlogp
            return dz.T
        zeta, inv_std, log_std = self._gauss
        dmean = dlogp[:, None] * zeta * inv_std
        dlog_std = dlogp[:, None] * (zeta * zeta - 1.0) + dent_col
        if not self.state_dependent_std:
            np.sum(np.broadcast_to(dlog_std, zeta.shape), axis=0, out=self.g_log_std)
            return dmean
        return np.concatenate([dmean, dlog_std * self._inside], axis=1)
