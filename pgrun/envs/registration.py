"""Register pgrun's own environments with gymnasium, under the namespace ``pgrun/``.

Importing ``pgrun.envs`` calls ``register_envs`` (so does importing ``pgrun.envs.gridworld``
or ``pgrun.envs.bandit`` through the package), after which ``gym.make("pgrun/GridWorld-v0")``
works. Entry points are strings, so a worker process that makes the env imports its module.
"""

from __future__ import annotations

import gymnasium as gym

GRIDWORLD_ID = "pgrun/GridWorld-v0"
BANDIT_ID = "pgrun/Bandit-v0"


def register_envs() -> None:
    """Register the tutorial environments (idempotent)."""
    if GRIDWORLD_ID not in gym.registry:
        gym.register(id=GRIDWORLD_ID, entry_point="pgrun.envs.gridworld:GridWorldEnv",
                     max_episode_steps=100, reward_threshold=-69.0)
    if BANDIT_ID not in gym.registry:
        # One-step episodes: no time limit needed.
        gym.register(id=BANDIT_ID, entry_point="pgrun.envs.bandit:BanditEnv")
