"""Rollout-time inference in NumPy.

For a batch of a few observations and a 64-64 MLP, torch spends most of a forward pass in
per-op and per-module overhead; NumPy computes the same layers several times faster. The
rollout only needs actions, log π(a|s) and V(s), never gradients, so it runs here; the
update recomputes everything with torch (``Agent.evaluate``).

``NumpyActor`` holds NumPy *views* of the Agent's parameters (``Tensor.numpy()`` shares
storage), so optimizer steps and ``load_state_dict`` — both in place — are seen without
copying. The numbers agree with ``Agent.act`` to float32 rounding (tested).
"""

from __future__ import annotations

import numpy as np
from scipy.special import erf
from torch import nn

from pgrun.policies import ACTIVATIONS, Agent, Tanh

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
    """Flatten a body into [(W, b) | activation function, ...] sharing parameter storage."""
    out: list = []
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            out.append((layer.weight.detach().numpy().T, layer.bias.detach().numpy()))
        elif type(layer) in _NUMPY_ACTIVATIONS:
            out.append(_NUMPY_ACTIVATIONS[type(layer)])
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
    """Categorical policy (and value) forward pass and sampling in NumPy."""

    def __init__(self, agent: Agent):
        self.body = _layers(agent.pi_body)
        self.pi_head = _layers(agent.pi_head)
        self.with_value = agent.with_value
        if self.with_value:
            self.v_body = None if agent.shared else _layers(agent.v_body)
            self.v_head = _layers(agent.v_head)

    def value(self, obs: np.ndarray) -> np.ndarray:
        h = _forward(self.body if self.v_body is None else self.v_body, obs)
        return _forward(self.v_head, h)[:, 0]

    def act(self, obs: np.ndarray, rng: np.random.Generator | None, deterministic: bool = False):
        """(actions, log π(a|s), V(s) or None). Samples with the Gumbel-max trick,
        a = argmax_k(z_k + g_k), g_k = −log(−log u_k), or takes argmax_k z_k when
        ``deterministic``."""
        h = _forward(self.body, obs)
        z = _forward(self.pi_head, h)
        z -= z.max(axis=1, keepdims=True)
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
