"""Small environments shaped like third-party suites, for tests/test_suites.py:

* ``MiniGridLike``: a Dict observation as MiniGrid's (a small uint8 ``image``, a Discrete
  ``direction`` and a ``mission`` text), Discrete actions, its own step cap (truncation);
* ``pgrun-tests/AleLike-v0``: CartPole registered with no time limit and a native vector
  env that, like ALE's ``AtariVectorEnv``, refuses ``max_episode_steps``;
* ``MultiDiscreteActions`` / ``MultiBinaryActions``: factored actions, rewarded when every
  factor matches the observation's target.
"""

from __future__ import annotations

import string

import gymnasium as gym
import numpy as np
from gymnasium.envs.classic_control.cartpole import CartPoleEnv
from gymnasium.vector import SyncVectorEnv


class MiniGridLike(gym.Env):
    """Reach the goal: the ``image`` shows whether the goal is left (0) or right (1) of
    the agent; the right action ends the episode with reward 1. ``max_steps`` truncates."""

    def __init__(self, max_steps: int = 10):
        self.max_steps = max_steps
        self.observation_space = gym.spaces.Dict({
            "image": gym.spaces.Box(0, 255, (3, 3, 3), np.uint8),
            "direction": gym.spaces.Discrete(4),
            "mission": gym.spaces.Text(40, charset=string.ascii_lowercase + " "),
        })
        self.action_space = gym.spaces.Discrete(2)

    def _obs(self):
        self.side = int(self.np_random.integers(2))
        image = np.zeros((3, 3, 3), np.uint8)
        image[1, 2 * self.side] = 8  # the goal's object index, MiniGrid style
        return {"image": image, "direction": int(self.np_random.integers(4)),
                "mission": "get to the green goal square"}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        hit = int(action) == self.side
        return self._obs(), float(hit), hit, self.t >= self.max_steps, {}


class FactoredTarget(gym.Env):
    """Observes a target per factor (one-hot codes side by side); reward = fraction of
    action factors equal to their target."""

    def __init__(self, action_space: gym.Space, length: int = 5):
        self.action_space, self.length = action_space, length
        self.nvec = (np.asarray(action_space.nvec) if isinstance(action_space, gym.spaces.MultiDiscrete)
                     else np.full(action_space.shape, 2))
        self.observation_space = gym.spaces.Box(0.0, 1.0, (int(self.nvec.sum()),), np.float32)

    def _obs(self):
        self.target = self.np_random.integers(0, self.nvec)
        obs = np.zeros(int(self.nvec.sum()), np.float32)
        obs[np.concatenate([[0], np.cumsum(self.nvec)[:-1]]) + self.target] = 1.0
        return obs

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        assert self.action_space.contains(np.asarray(action, dtype=self.action_space.dtype))
        reward = float(np.mean(np.asarray(action) == self.target))
        self.t += 1
        return self._obs(), reward, False, self.t >= self.length, {}


class MultiDiscreteActions(FactoredTarget):
    def __init__(self, length: int = 5):
        super().__init__(gym.spaces.MultiDiscrete([3, 2, 4]), length)


class MultiBinaryActions(FactoredTarget):
    def __init__(self, length: int = 5):
        super().__init__(gym.spaces.MultiBinary(3), length)


class AleLikeVector(SyncVectorEnv):
    """A native vector env whose constructor, like ALE's, takes no ``max_episode_steps``."""

    def __init__(self, num_envs: int, frameskip: int = 4):
        super().__init__([CartPoleEnv for _ in range(num_envs)])
        self.frameskip = frameskip


if "pgrun-tests/AleLike-v0" not in gym.registry:
    gym.register(id="pgrun-tests/AleLike-v0", entry_point=CartPoleEnv,
                 vector_entry_point=AleLikeVector, kwargs={})
