"""A user's own policy module, named by ``policy.module=pkg.mod:Name``.

``Name`` is an ``nn.Module`` subclass (or a function returning one), called as
``Name(obs_space, act_space, with_value=..., **policy.kwargs)``. Its ``forward(obs)``
returns ``(dist, value)``: ``dist`` a ``pgrun.distributions.Distribution`` (the heads in
``pgrun.policies`` build them: ``CategoricalHead``, ``GaussianHead``), ``value`` the (N,)
V(s) or None when ``with_value`` is false. The module is checked on a sample observation
before training starts, so a module that does not fit fails with a message saying how.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from pgrun.config import ConfigError
from pgrun.distributions import Distribution
from pgrun.envs.factory import import_object


def build_user_policy(path: str, kwargs: dict, obs_space: gym.Space, act_space: gym.Space,
                      with_value: bool) -> nn.Module:
    what = f"policy.module={path}"
    factory = import_object(path, what)
    try:
        policy = factory(obs_space, act_space, with_value=with_value, **kwargs)
    except TypeError as err:
        raise ConfigError(f"{what} could not be built as {path.split(':')[-1]}(obs_space, "
                          f"act_space, with_value=..., **policy.kwargs): {err}") from None
    if not isinstance(policy, nn.Module):
        raise ConfigError(f"{what} returned a {type(policy).__name__}, not a torch.nn.Module.")
    check_interface(policy, obs_space, act_space, with_value, what)
    return policy


def check_interface(policy: nn.Module, obs_space: gym.Space, act_space: gym.Space,
                    with_value: bool, what: str) -> None:
    """Run the module on two sample observations and check what it returns."""
    from pgrun.obs import ObsLayout

    layout = ObsLayout(obs_space)
    obs = torch.from_numpy(np.stack([layout.encode_one(obs_space.sample()) for _ in range(2)]))
    usage = ("forward(obs) must return (dist, value): dist a pgrun.distributions."
             "Distribution (e.g. from pgrun.policies.CategoricalHead or GaussianHead), value "
             "a tensor of shape (batch,)" + (" (the algorithm trains a critic)" if with_value
                                             else " or None"))
    try:
        with torch.no_grad():
            out = policy(obs)
    except Exception as err:  # noqa: BLE001 (the user's code: report, don't crash)
        raise ConfigError(f"{what}: forward failed on a batch of 2 observations from "
                          f"{obs_space}: {type(err).__name__}: {err}") from None
    if not (isinstance(out, tuple) and len(out) == 2):
        raise ConfigError(f"{what}: {usage}; it returned {type(out).__name__}.")
    dist, value = out
    if not isinstance(dist, Distribution):
        raise ConfigError(f"{what}: {usage}; its dist is a {type(dist).__name__}.")
    if with_value and (not isinstance(value, torch.Tensor) or tuple(value.shape) != (2,)):
        shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise ConfigError(f"{what}: {usage}; its value is {shape} for 2 observations.")
    actions = dist.mode()
    expected = tuple(act_space.shape) if isinstance(act_space, gym.spaces.Box) else ()
    if tuple(actions.shape) != (2, *expected):
        raise ConfigError(f"{what}: its distribution's actions have shape "
                          f"{tuple(actions.shape)} for 2 observations; {act_space} needs "
                          f"{(2, *expected)}.")
