"""A small image-observation environment for the CNN policy's tests: a 36×36 grey image
(uint8, H×W×1) shows a bright bar on the left or the right half; the action names the
side. Reward 1 when right, 0 otherwise; an episode is ``length`` such images."""

from __future__ import annotations

import gymnasium as gym
import numpy as np


class LeftRight(gym.Env):
    metadata = {"render_modes": []}

    def __init__(self, length: int = 4, size: int = 36):
        self.length, self.size = length, size
        self.observation_space = gym.spaces.Box(0, 255, (size, size, 1), np.uint8)
        self.action_space = gym.spaces.Discrete(2)

    def _image(self) -> np.ndarray:
        self.side = int(self.np_random.integers(2))
        img = self.np_random.integers(0, 40, (self.size, self.size, 1), dtype=np.uint8)
        cols = slice(0, self.size // 2) if self.side == 0 else slice(self.size // 2, self.size)
        img[:, cols][self.size // 3: 2 * self.size // 3] = 255
        return img

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._image(), {}

    def step(self, action):
        reward = float(int(action) == self.side)
        self.t += 1
        return self._image(), reward, self.t >= self.length, False, {}
