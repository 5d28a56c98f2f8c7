"""Environments that misbehave on request, for the failure tests. Use them by id with
their module, ``env.id=tests.fake_envs:FlakyCartPole-v0``, from the repository root.

``FlakyCartPole-v0`` is CartPole-v1 (a Python env, so vectorized with SyncVectorEnv, whose
state checkpoints do not capture) that

* raises RuntimeError at its ``fail_after``-th step when the file ``fail_flag`` exists
  when the env is made (delete the file and the next attempt runs through);
* returns a NaN reward from its ``nan_after``-th step on.
"""

from __future__ import annotations

import math
import os

import gymnasium as gym
from gymnasium.envs.classic_control.cartpole import CartPoleEnv


class FlakyCartPole(CartPoleEnv):
    def __init__(self, fail_after: int = 0, fail_flag: str = "", nan_after: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.fail_after = fail_after if fail_flag and os.path.exists(fail_flag) else 0
        self.nan_after = nan_after
        self.steps_taken = 0

    def step(self, action):
        self.steps_taken += 1
        if self.fail_after and self.steps_taken >= self.fail_after:
            raise RuntimeError(f"injected failure at step {self.steps_taken}")
        obs, reward, terminated, truncated, info = super().step(action)
        if self.nan_after and self.steps_taken >= self.nan_after:
            reward = math.nan
        return obs, reward, terminated, truncated, info


if "FlakyCartPole-v0" not in gym.registry:
    gym.register(id="FlakyCartPole-v0", entry_point=FlakyCartPole, max_episode_steps=500)
