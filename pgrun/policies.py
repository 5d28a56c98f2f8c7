"""Policy and value networks: MLP or tabular bodies, Categorical or Gaussian action heads,
value heads.

``Agent`` is the one policy abstraction every algorithm uses:

* ``act(obs)``: sample a ~ π(·|s) (or its mode) with log π(a|s) and V(s), for the rollout;
* ``evaluate(obs, actions)``: log π(a|s), entropy H[π(·|s)] and V(s) with gradients, for
  the update;
* ``env_action(actions)``: what is sent to the env for the stored actions (identity for
  Discrete actions; mapped into the Box's bounds for Gaussian ones).

Bodies (``policy.kind``):

* ``mlp``: an MLP on a flat Box observation, or on the one-hot code of a Discrete one;
* ``tabular``: for Discrete observations, one row of parameters per state: the policy is
  a table of logits (n_states × n_actions; of Gaussian means for Box actions), the value
  a table n_states × 1. Observations are int64 state indices. Initialized to zero: a
  uniform policy and V = 0.

Heads: Categorical for Discrete actions (int64, shape (N,)), diagonal Gaussian for Box
actions (float32, shape (N, act_dim)); see ``distributions.py`` for the Gaussian, its
entropy and how samples are kept inside the bounds.

The Categorical distribution is written out (log-softmax, gather, multinomial) rather
than built from ``torch.distributions`` on every step, which validates its arguments and
costs more than the forward pass itself for small networks; the Gaussian likewise.
"""

from __future__ import annotations

import copy
import math

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from pgrun.config import ConfigError
from pgrun.distributions import (
    LOG_STD_MAX,
    LOG_STD_MIN,
    ActionBounds,
    gaussian_entropy,
    gaussian_log_prob,
)
from pgrun.envs.factory import check_spaces

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU, "gelu": nn.GELU}


class StateIndex(nn.Module):
    """Discrete observation → int64 row index (obs − start): the input of a table."""

    def __init__(self, n: int, start: int = 0):
        super().__init__()
        self.n, self.start = n, start

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return obs.long() - self.start


class OneHot(nn.Module):
    """Discrete observation → its one-hot code (float32, n wide): the input of an MLP."""

    def __init__(self, n: int, start: int = 0):
        super().__init__()
        self.n, self.start = n, start

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return nn.functional.one_hot(obs.long() - self.start, self.n).float()


def mlp(sizes: list[int], activation: str) -> nn.Sequential:
    """Linear layers with the activation between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


def orthogonal_init(module: nn.Module, gain: float) -> None:
    """Orthogonal weights with the given gain, zero biases (as in Engstrom et al. 2020)."""
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            nn.init.orthogonal_(layer.weight, gain)
            nn.init.zeros_(layer.bias)


class Agent(nn.Module):
    """π(a|s) (Categorical or Gaussian head on an MLP or tabular body), optionally with
    V(s) (separate or shared body).

    ``obs_dim``: the width of a flat Box observation, or the number of states of a
    Discrete one (with ``discrete_obs``; ``obs_start`` is its first index).
    ``n_actions``: the number of Discrete actions, or the dimension of a Box action when
    ``action_bounds`` (an ``ActionBounds``) is given, which selects the Gaussian head.
    """

    def __init__(
        self,
        obs_dim: int,
        n_actions: int,
        hidden_sizes: list[int] = (),
        activation: str = "tanh",
        with_value: bool = True,
        shared: bool = False,
        ortho_init: bool = True,
        *,
        kind: str = "mlp",
        discrete_obs: bool = False,
        obs_start: int = 0,
        action_bounds: ActionBounds | None = None,
        log_std_init: float = 0.0,
        state_dependent_std: bool = False,
    ):
        super().__init__()
        if kind not in ("mlp", "tabular"):
            raise ValueError(f"policy kind {kind!r}: mlp or tabular")
        if kind == "tabular" and not discrete_obs:
            raise ValueError("a tabular policy needs Discrete observations")
        hidden = list(hidden_sizes) if kind == "mlp" else []
        self.kind = kind
        self.with_value = with_value
        self.discrete_obs = discrete_obs
        self.obs_dtype = np.int64 if discrete_obs else np.float32
        self.continuous = action_bounds is not None
        self.bounds = action_bounds
        self.act_dim = n_actions
        self.action_dtype = np.float32 if self.continuous else np.int64
        self.action_shape: tuple[int, ...] = (n_actions,) if self.continuous else ()
        self.state_dependent_std = self.continuous and state_dependent_std
        n_out = 2 * n_actions if self.state_dependent_std else n_actions
        self.shared = shared and with_value and bool(hidden)
        in_dim = obs_dim
        feat = hidden[-1] if hidden else in_dim

        def body() -> nn.Module:
            if kind == "tabular":
                return StateIndex(obs_dim, obs_start)
            layers: list[nn.Module] = [OneHot(obs_dim, obs_start)] if discrete_obs else []
            if hidden:
                layers += [mlp([in_dim, *hidden], activation), ACTIVATIONS[activation]()]
            return nn.Sequential(*layers) if layers else nn.Identity()

        def head(n: int) -> nn.Module:
            if kind == "tabular":
                table = nn.Embedding(obs_dim, n)
                nn.init.zeros_(table.weight)
                return table
            return nn.Linear(feat, n)

        self.pi_body = body()
        self.pi_head = head(n_out)
        if self.continuous and not self.state_dependent_std:
            self.log_std = nn.Parameter(torch.full((n_actions,), float(log_std_init)))
        if with_value:
            self.v_body = self.pi_body if self.shared else body()
            self.v_head = head(1)
        if ortho_init and kind == "mlp":
            orthogonal_init(self.pi_body, math.sqrt(2))
            orthogonal_init(self.pi_head, 0.01)
            if with_value:
                if not self.shared:
                    orthogonal_init(self.v_body, math.sqrt(2))
                orthogonal_init(self.v_head, 1.0)
        if self.state_dependent_std:  # the log σ half of the head starts at log_std_init
            with torch.no_grad():
                bias = self.pi_head.bias if kind == "mlp" else self.pi_head.weight
                bias[..., n_actions:] = float(log_std_init)
        self._flatten()

    def _flatten(self) -> None:
        """Put every parameter in one contiguous buffer, the policy's first and the value's
        after them, and every gradient in a second one (``p.grad`` are views of it), so an
        optimizer can step a role's parameters as one tensor (``flat_parameter``) and
        ``NumpyAgent`` can write gradients in place."""
        groups = {"policy": self.policy_parameters(), "value": self.value_parameters()}
        total = sum(p.numel() for ps in groups.values() for p in ps)
        self.flat_data, self.flat_grad = torch.zeros(total), torch.zeros(total)
        self._flat: dict[str, nn.Parameter] = {}
        offset = 0
        for role, params in groups.items():
            start = offset
            for p in params:
                n = p.numel()
                self.flat_data[offset:offset + n].copy_(p.detach().reshape(-1))
                p.data = self.flat_data[offset:offset + n].view_as(p)
                p.grad = self.flat_grad[offset:offset + n].view_as(p)
                offset += n
            flat = nn.Parameter(self.flat_data[start:offset])
            flat.grad = self.flat_grad[start:offset]
            self._flat[role] = flat
        everything = nn.Parameter(self.flat_data)
        everything.grad = self.flat_grad
        self._flat["all"] = everything

    def __deepcopy__(self, memo):
        """A copy whose parameters are views of its own flat buffers, as here."""
        new = object.__new__(type(self))
        memo[id(self)] = new
        for key, value in self.__dict__.items():
            if key not in ("flat_data", "flat_grad", "_flat"):
                new.__dict__[key] = copy.deepcopy(value, memo)
        new._flatten()
        return new

    def flat_parameter(self, role: str = "all") -> nn.Parameter:
        """The ``policy``, ``value`` or ``all`` parameters as one flat tensor sharing their
        storage, with the matching slice of the gradient buffer as its ``grad``."""
        return self._flat[role]

    # -- parameters by role (VPG optimizes them separately)
    def policy_parameters(self) -> list[nn.Parameter]:
        extra = [self.log_std] if hasattr(self, "log_std") else []
        return [*self.pi_body.parameters(), *self.pi_head.parameters(), *extra]

    def value_parameters(self) -> list[nn.Parameter]:
        if not self.with_value:
            return []
        body = [] if self.shared else list(self.v_body.parameters())
        return [*body, *self.v_head.parameters()]

    def _heads(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        h = self.pi_body(obs)
        out = self.pi_head(h)
        if not self.with_value:
            return out, None
        hv = h if self.shared else self.v_body(obs)
        return out, self.v_head(hv).squeeze(-1)

    def gaussian(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(μ, log σ) from the policy head's output."""
        if self.state_dependent_std:
            mean, log_std = out.split(self.act_dim, dim=-1)
            return mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)
        return out, self.log_std.expand_as(out)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        hv = self.pi_body(obs) if self.shared else self.v_body(obs)
        return self.v_head(hv).squeeze(-1)

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool = False):
        """(action, log π(a|s), V(s) or None) for a batch of observations. Gaussian
        actions are the unbounded samples u (see ``env_action``)."""
        out, value = self._heads(obs)
        if self.continuous:
            mean, log_std = self.gaussian(out)
            action = mean if deterministic else mean + log_std.exp() * torch.randn_like(mean)
            logp = gaussian_log_prob(mean, log_std, action) - self.bounds.log_det_torch(action)
            return action, logp, value
        logp_all = out.log_softmax(-1)
        if deterministic:
            action = out.argmax(-1)
        else:
            action = torch.multinomial(logp_all.exp(), 1).squeeze(-1)
        logp = logp_all.gather(-1, action.unsqueeze(-1)).squeeze(-1)
        return action, logp, value

    def evaluate(self, obs: torch.Tensor, actions: torch.Tensor):
        """(log π(a|s), H[π(·|s)], V(s) or None), differentiable."""
        out, value = self._heads(obs)
        if self.continuous:
            mean, log_std = self.gaussian(out)
            logp = gaussian_log_prob(mean, log_std, actions) - self.bounds.log_det_torch(actions)
            return logp, gaussian_entropy(log_std), value
        logp_all = out.log_softmax(-1)
        logp = logp_all.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)
        entropy = -(logp_all.exp() * logp_all).sum(-1)
        return logp, entropy, value

    def env_action(self, actions: torch.Tensor) -> torch.Tensor:
        """The actions sent to the env for stored ``actions`` (in the Box's bounds)."""
        return self.bounds.to_env_torch(actions) if self.continuous else actions


def resolve_kind(kind: str, obs_space: gym.Space) -> str:
    """``auto``: tabular for Discrete observations, mlp otherwise."""
    if kind == "auto":
        return "tabular" if isinstance(obs_space, gym.spaces.Discrete) else "mlp"
    return kind


def build_agent(policy_cfg, obs_space: gym.Space, act_space: gym.Space, with_value: bool) -> Agent:
    """An Agent for the spaces of a (single) environment; unsupported spaces are a
    ConfigError naming them. (Keys missing from an older run's saved config take their
    defaults.)"""
    check_spaces(obs_space, act_space)  # the one place that decides what is supported
    opt = lambda key, default: getattr(policy_cfg, key, default)  # noqa: E731
    kind = resolve_kind(opt("kind", "auto"), obs_space)
    discrete_obs = isinstance(obs_space, gym.spaces.Discrete)
    if discrete_obs:
        obs_dim, obs_start = int(obs_space.n), int(obs_space.start)
    else:
        if kind == "tabular":
            raise ConfigError(f"policy.kind=tabular needs a Discrete observation space; this "
                              f"environment observes {obs_space} (use policy.kind=mlp or auto).")
        obs_dim, obs_start = int(obs_space.shape[0]), 0

    bounds = None
    if isinstance(act_space, gym.spaces.Discrete):
        n_actions = int(act_space.n)
    else:
        n_actions = int(act_space.shape[0])
        mode = opt("action_bounds", "clip")
        try:
            bounds = ActionBounds(act_space.low, act_space.high, mode)
        except ValueError as err:
            raise ConfigError(f"policy.action_bounds={mode}: {err} ({act_space}); use "
                              "policy.action_bounds=clip.") from None
    return Agent(
        obs_dim=obs_dim,
        n_actions=n_actions,
        hidden_sizes=list(policy_cfg.hidden_sizes),
        activation=policy_cfg.activation,
        with_value=with_value,
        shared=policy_cfg.shared,
        ortho_init=policy_cfg.ortho_init,
        kind=kind,
        discrete_obs=discrete_obs,
        obs_start=obs_start,
        action_bounds=bounds,
        log_std_init=float(opt("log_std_init", 0.0)),
        state_dependent_std=bool(opt("state_dependent_std", False)),
    )
