"""Rollout-time inference in NumPy.

For a batch of a few observations and a 64-64 MLP, torch spends most of a forward pass in
per-op and per-module overhead; NumPy computes the same layers several times faster. The
rollout only needs actions, log π(a|s) and V(s), never gradients, so it runs here; the
update recomputes everything with torch (``Agent.evaluate``).

``NumpyActor`` holds NumPy *views* of the Agent's parameters (``Tensor.numpy()`` shares
storage), so optimizer steps and ``load_state_dict`` — both in place — are seen without
copying. The numbers agree with ``Agent.act`` to float32 rounding (tested).

Every head of ``policies.Agent`` is mirrored: Categorical (Gumbel-max sampling) and
diagonal Gaussian (μ + σ·ε, ε ~ N(0, I) from the Collector's generator; log-probs and
bounds from ``distributions.py``, the same formulas as the torch side), on MLP bodies
(also on one-hot codes of Discrete observations) and on tables (a row lookup).
"""

from __future__ import annotations

import numpy as np
from scipy.special import erf
from torch import nn

from pgrun.distributions import LOG_SQRT_2PI, LOG_STD_MAX, LOG_STD_MIN
from pgrun.policies import ACTIVATIONS, Agent, OneHot, StateIndex, Tanh

_NUMPY_ACTIVATIONS = {
    Tanh: np.tanh,
    nn.ReLU: lambda x: np.maximum(x, 0.0),
    nn.ELU: lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0.0))),
    nn.GELU: lambda x: 0.5 * x * (1.0 + erf(x / np.sqrt(2.0))).astype(x.dtype),
}
assert set(_NUMPY_ACTIVATIONS) == set(ACTIVATIONS.values())


def rng_for(seed: int, stream: int) -> np.random.Generator:
    """A generator independent of gymnasium's (which seeds ``default_rng(seed)``) and of
    pgrun's other streams: 0 = training actions, 1 = evaluation actions."""
    return np.random.default_rng(np.random.SeedSequence([seed, 0x5067_7275, stream]))


def _layers(module: nn.Module) -> list:
    """Flatten a body or head into [(W, b) | function, ...] sharing parameter storage."""
    out: list = []
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            out.append((layer.weight.detach().numpy().T, layer.bias.detach().numpy()))
        elif isinstance(layer, nn.Embedding):  # a table: row lookup (a view, as above)
            table = layer.weight.detach().numpy()
            out.append(lambda idx, table=table: table[idx])
        elif isinstance(layer, StateIndex):
            out.append(lambda obs, start=layer.start: obs - start if start else obs)
        elif isinstance(layer, OneHot):
            eye = np.eye(layer.n, dtype=np.float32)
            out.append(lambda obs, eye=eye, start=layer.start: eye[obs - start])
        elif type(layer) in _NUMPY_ACTIVATIONS:
            out.append(_NUMPY_ACTIVATIONS[type(layer)])
        elif not isinstance(layer, nn.Sequential | nn.Identity):
            raise TypeError(f"NumpyActor cannot run {type(layer).__name__}")
    return out


def _forward(layers: list, x: np.ndarray) -> np.ndarray:
    for layer in layers:
        if callable(layer):
            x = layer(x)
        else:
            weight_t, bias = layer
            x = x @ weight_t + bias
    return x


class NumpyActor:
    """Policy (and value) forward pass and sampling in NumPy."""

    def __init__(self, agent: Agent):
        self.body = _layers(agent.pi_body)
        self.pi_head = _layers(agent.pi_head)
        self.with_value = agent.with_value
        self.v_body = None
        if self.with_value:
            self.v_body = None if agent.shared else _layers(agent.v_body)
            self.v_head = _layers(agent.v_head)
        self.obs_dtype = agent.obs_dtype
        self.continuous = agent.continuous
        self.action_dtype, self.action_shape = agent.action_dtype, agent.action_shape
        if self.continuous:
            self.bounds = agent.bounds
            self.act_dim = agent.act_dim
            self.state_dependent_std = agent.state_dependent_std
            self.log_std = None if self.state_dependent_std else agent.log_std.detach().numpy()

    def value(self, obs: np.ndarray) -> np.ndarray:
        h = _forward(self.body if self.v_body is None else self.v_body, obs)
        return _forward(self.v_head, h)[:, 0]

    def act(self, obs: np.ndarray, rng: np.random.Generator | None, deterministic: bool = False):
        """(actions, log π(a|s), V(s) or None).

        Categorical: samples with the Gumbel-max trick, a = argmax_k(z_k + g_k),
        g_k = −log(−log u_k), or takes argmax_k z_k when ``deterministic``.
        Gaussian: u = μ + σ·ε (or μ when ``deterministic``), the unbounded sample that is
        stored and scored; ``to_env`` maps it into the bounds."""
        h = _forward(self.body, obs)
        z = _forward(self.pi_head, h)
        if self.continuous:
            actions, logp = self._gaussian(z, rng, deterministic)
        else:
            z -= z.max(axis=1, keepdims=True)  # z is a fresh array (matmul or row gather)
            log_norm = np.log(np.exp(z).sum(axis=1))
            if deterministic:
                actions = z.argmax(axis=1)
            else:
                actions = (z - np.log(-np.log(rng.random(z.shape)))).argmax(axis=1)
            logp = z[np.arange(len(z)), actions] - log_norm
        value = None
        if self.with_value:
            hv = h if self.v_body is None else _forward(self.v_body, obs)
            value = _forward(self.v_head, hv)[:, 0]
        return actions, logp, value

    def _gaussian(self, z: np.ndarray, rng, deterministic: bool):
        """log π(u|s) = Σ_i [−½ ε_i² − log σ_i − ½ log 2π] (− the tanh correction)."""
        if self.state_dependent_std:
            mean = z[:, :self.act_dim]
            log_std = np.clip(z[:, self.act_dim:], LOG_STD_MIN, LOG_STD_MAX)
        else:
            mean, log_std = z, np.broadcast_to(self.log_std, z.shape)
        if deterministic:
            u, sq = mean.copy(), 0.0
        else:
            eps = rng.standard_normal(mean.shape, dtype=np.float32)
            u = mean + np.exp(log_std) * eps
            sq = 0.5 * eps * eps
        logp = (-sq - log_std - np.float32(LOG_SQRT_2PI)).sum(axis=1)
        if self.bounds.mode != "clip":
            logp = logp - self.bounds.log_det(u)
        return u.astype(np.float32, copy=False), logp.astype(np.float32, copy=False)

    def to_env(self, actions: np.ndarray) -> np.ndarray:
        """The actions to send to the env: Gaussian samples mapped into the Box's bounds
        (``distributions.ActionBounds``), Discrete actions as they are."""
        return self.bounds.to_env(actions) if self.continuous else actions
