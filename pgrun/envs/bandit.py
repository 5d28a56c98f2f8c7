"""A k-armed Bernoulli bandit as one-step episodes (registered as ``pgrun/Bandit-v0``).

Pulling arm a pays 1 with probability ``probs[a]`` and 0 otherwise (default probabilities
0.2, 0.8, 0.5: arm 1 is best, expected return 0.8); every episode is one pull, so every
step terminates.

The observation carries no information; ``obs_mode`` says how it looks:

* ``onehot`` (default): a float32 Box(1) holding 1.0, the one-hot code of the single state.
  The MLP policy takes it; with ``policy.hidden_sizes=[]`` it is exactly one row of logits
  (weight · 1 + bias);
* ``index``: the state index 0 of a Discrete(1), for a tabular policy (one row of logits).

Payouts draw from ``np_random``, so ``reset(seed=s)`` makes them reproducible.
"""

from __future__ import annotations

from collections.abc import Sequence

import gymnasium as gym
import numpy as np

OBS_MODES = ("onehot", "index")
DEFAULT_PROBS = (0.2, 0.8, 0.5)


class BanditEnv(gym.Env):
    """k arms with Bernoulli payouts; one pull per episode."""

    metadata = {"render_modes": []}

    def __init__(self, probs: Sequence[float] = DEFAULT_PROBS, obs_mode: str = "onehot"):
        try:
            p = np.array(probs, dtype=np.float64)
        except (TypeError, ValueError):
            p = np.array([np.nan])
        if p.ndim != 1 or len(p) < 1 or not np.all((p >= 0) & (p <= 1)):
            raise ValueError(f"Bandit: probs={probs!r} must be a list of one or more payout "
                             "probabilities in [0, 1], one per arm")
        if obs_mode not in OBS_MODES:
            raise ValueError(f"Bandit: obs_mode={obs_mode!r} must be one of {', '.join(OBS_MODES)}")
        self.probs = p
        self.obs_mode = obs_mode
        self.action_space = gym.spaces.Discrete(len(p))
        if obs_mode == "onehot":
            self.observation_space = gym.spaces.Box(0.0, 1.0, shape=(1,), dtype=np.float32)
        else:
            self.observation_space = gym.spaces.Discrete(1)

    def _obs(self):
        return np.ones(1, dtype=np.float32) if self.obs_mode == "onehot" else 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        return self._obs(), {}

    def step(self, action):
        a = int(action)
        if not 0 <= a < len(self.probs):
            raise ValueError(f"Bandit: action {action!r} is not in {self.action_space}")
        reward = float(self.np_random.random() < self.probs[a])
        return self._obs(), reward, True, False, {}
