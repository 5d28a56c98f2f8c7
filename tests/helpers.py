"""Small builders the tests share: policies on plain spaces, the rollout's actor and
collector, and a policy's (log π, H, V) on a batch."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch

from pgrun.distributions import ActionBounds
from pgrun.policies import ActorCritic
from pgrun.rollout import Actor, Collector


def box(dim: int) -> gym.spaces.Box:
    return gym.spaces.Box(-np.inf, np.inf, (dim,), np.float32)


def make_policy(obs, act, hidden=(64, 64), activation="tanh", *, seed: int | None = 0,
                **kwargs) -> ActorCritic:
    """``ActorCritic`` on Box(obs) observations (or the space given) and Discrete(act)
    actions (or the space given), seeded with ``torch.manual_seed(seed)``."""
    obs_space = obs if isinstance(obs, gym.Space) else box(int(obs))
    act_space = act if isinstance(act, gym.Space) else gym.spaces.Discrete(int(act))
    if seed is not None:
        torch.manual_seed(seed)
    return ActorCritic(obs_space, act_space, hidden_sizes=list(hidden), activation=activation,
                       **kwargs)


def bounds_of(policy) -> ActionBounds | None:
    return getattr(policy.head, "bounds", None)


def make_actor(policy, envs) -> Actor:
    return Actor(policy, envs.single_observation_space, envs.single_action_space,
                 bounds_of(policy))


def make_collector(envs, policy, seed: int = 0, **kwargs) -> Collector:
    """A Collector acting with ``policy`` (with a critic iff the policy has one)."""
    return Collector(envs, make_actor(policy, envs), seed=seed,
                     with_value=getattr(policy, "with_value", True), **kwargs)


def evaluate(policy, obs: torch.Tensor, actions: torch.Tensor):
    """(log π(a|s), H[π(·|s)], V(s) or None) of ``policy`` on a batch, with gradients."""
    dist, value = policy(obs)
    return dist.log_prob(actions), dist.entropy(), value


def flat_grad_of(output: torch.Tensor, params) -> torch.Tensor:
    """∂output/∂params by autograd, concatenated; ``.grad`` untouched."""
    grads = torch.autograd.grad(output, list(params), retain_graph=True, allow_unused=True)
    return torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1)
                      for g, p in zip(grads, params, strict=True)])
