"""Environments: the factory that makes vector envs from any gymnasium environment, and
pgrun's own tutorial environments, registered with gymnasium on import:

* ``pgrun/GridWorld-v0`` (``gridworld.py``): an n×n grid, start top-left, goal
  bottom-right, −10 per step and +1 for reaching the goal;
* ``pgrun/Bandit-v0`` (``bandit.py``): a k-armed Bernoulli bandit, one pull per episode.

See ``factory.py`` for how ``env.id`` / ``env.entry_point`` become a vector env, the time
limit, and which observation and action spaces pgrun supports.
"""

from pgrun.envs.factory import (
    EVAL_SEED_OFFSET,
    SUPPORTED_SPACES,
    check_env_id,
    check_spaces,
    describe,
    env_kwargs,
    episode_limit,
    load_entry_point,
    make_vec_env,
    registered_threshold,
    resolve_spec,
    vectorization_mode,
)
from pgrun.envs.registration import BANDIT_ID, GRIDWORLD_ID, register_envs

register_envs()

__all__ = [
    "BANDIT_ID", "EVAL_SEED_OFFSET", "GRIDWORLD_ID",
    "SUPPORTED_SPACES", "check_env_id", "check_spaces", "describe", "env_kwargs",
    "episode_limit", "load_entry_point", "make_vec_env", "register_envs", "registered_threshold", "resolve_spec",
    "vectorization_mode",
]
