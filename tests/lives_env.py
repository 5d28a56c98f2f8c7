"""A tiny Atari-like game with lives, for the training-only Atari semantics
(``env.life_loss_terminal``, ``normalize.reward_sign``) without ALE. Use it by id,
``env.id=tests.lives_env:LivesGame-v0``, from the repository root.

``LivesGame`` observes ``[game, t]`` (game = resets so far, t = steps into the game) and
reports ``info["lives"]`` like ALE. A game has ``lives`` lives of ``life_steps`` steps
each: the last step of a life loses it; losing the last one ends the game (terminated).
Each life pays 5, −3, 2, 0, 0, … for its steps whatever the actions, so a game scores
4 × lives raw and 1 × lives with sign(r) (12 and 3 with the defaults). With ``linger``,
the game goes on for that many steps at 0 lives (paying 0) before it ends, as Q*bert does.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

PAY = (5.0, -3.0, 2.0)


class LivesGame(gym.Env):
    observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(2,), dtype=np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, lives: int = 3, life_steps: int = 3, linger: int = 0):
        self.start_lives, self.life_steps, self.linger = lives, life_steps, linger
        self.game, self.t, self.lives, self.left, self.over = -1, 0, lives, 0, False

    def _obs(self):
        return np.array([self.game, self.t], dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.game += 1
        self.t, self.lives, self.over = 0, self.start_lives, False
        return self._obs(), {"lives": self.lives}

    def step(self, action):
        assert not self.over, "stepped after the game ended"
        if self.lives == 0:  # lingering after the last life
            self.t += 1
            self.left -= 1
            self.over = self.left == 0
            return self._obs(), 0.0, self.over, False, {"lives": 0}
        in_life = self.t % self.life_steps
        reward = PAY[in_life] if in_life < len(PAY) else 0.0
        self.t += 1
        if in_life == self.life_steps - 1:
            self.lives -= 1
        self.left = self.linger
        self.over = self.lives == 0 and self.linger == 0
        return self._obs(), reward, self.over, False, {"lives": self.lives}


if "LivesGame-v0" not in gym.registry:
    gym.register(id="LivesGame-v0", entry_point=LivesGame)
