"""Small user-style environments for the generic-env tests, loaded by entry point
(``env.entry_point=tests.custom_env:Corridor``) or by id with their module
(``env.id=tests.custom_env:pgrun-tests/Endless-v0``), from the repository root.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np


class Corridor(gym.Env):
    """Walk right along a corridor of ``size`` cells: action 1 moves right, 0 stays.
    Reward 1 on reaching the end (terminated). No time limit of its own."""

    def __init__(self, size: int = 4):
        if size < 1:
            raise ValueError(f"size={size} must be ≥ 1")
        self.size = size
        self.observation_space = gym.spaces.Box(0.0, 1.0, shape=(1,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.pos = 0

    def _obs(self):
        return np.array([self.pos / self.size], dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos = 0
        return self._obs(), {}

    def step(self, action):
        self.pos += int(action)
        terminated = self.pos >= self.size
        return self._obs(), float(terminated), terminated, False, {}


class Endless(Corridor):
    """Never ends an episode by itself: only a time limit stops it."""

    def step(self, action):
        obs, _, _, _, info = super().step(0)
        return obs, 0.0, False, False, info


def make_corridor(length: int = 4) -> gym.Env:
    """An entry point that is a function, not a class."""
    return Corridor(size=length)


class Broken(Corridor):
    def __init__(self, **kwargs):
        raise RuntimeError("the simulator license has expired")


class DictObs(Corridor):
    """A Dict observation with nothing pgrun can encode (text only)."""

    def __init__(self):
        super().__init__()
        self.observation_space = gym.spaces.Dict({"note": gym.spaces.Text(8)})

    def _obs(self):
        return {"note": "abc"}


class TupleActions(Corridor):
    def __init__(self):
        super().__init__()
        self.action_space = gym.spaces.Tuple((gym.spaces.Discrete(2), gym.spaces.Discrete(2)))

    def step(self, action):
        return super().step(int(action[0]))


NOT_AN_ENV = 42

if "pgrun-tests/Endless-v0" not in gym.registry:
    gym.register(id="pgrun-tests/Endless-v0", entry_point=Endless)  # no max_episode_steps


class ShiftedStates(gym.Env):
    """Observations Discrete(4, start=10): state s is observed as 10 + s; action 1 moves right,
    reaching state 3 ends the episode with reward 1."""

    observation_space = gym.spaces.Discrete(4, start=10)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.s = 0
        return 10 + self.s, {}

    def step(self, action):
        self.s = min(self.s + int(action), 3)
        done = self.s == 3
        return 10 + self.s, float(done), done, False, {}


class WrongShape(Corridor):
    """Declares a Box of shape (3,) but returns observations of shape (1,)."""

    def __init__(self, size: int = 4):
        super().__init__(size)
        self.observation_space = gym.spaces.Box(0.0, 1.0, shape=(3,), dtype=np.float32)


class OldApiReset(Corridor):
    """gym < 0.26's reset: the observation alone, no info dict."""

    def reset(self, *, seed=None, options=None):
        return super().reset(seed=seed)[0]
