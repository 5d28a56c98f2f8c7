"""Environment factory: vector envs for training and evaluation.

gymnasium's native vectorized implementation (``vector_entry_point``, e.g. the NumPy
CartPole) is used where the environment has one; other environments run in a
``SyncVectorEnv`` (or ``AsyncVectorEnv`` by option). Every vector env must autoreset on
the *next* step, which ``rollout.py`` handles.
"""

from __future__ import annotations

import difflib

import gymnasium as gym
from gymnasium.vector import AutoresetMode

from pgrun.config import ConfigError

EVAL_SEED_OFFSET = 1_000_003
"""Evaluation envs are seeded from ``seed + EVAL_SEED_OFFSET``: disjoint from the
training envs' seeds ``seed .. seed + num_envs - 1`` for any practical seed and count."""


def check_env_id(env_id: str) -> gym.envs.registration.EnvSpec:
    """The registered spec, or a ConfigError naming close matches."""
    try:
        return gym.spec(env_id)
    except gym.error.Error as err:
        close = difflib.get_close_matches(env_id, list(gym.registry), n=5, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ConfigError(
            f"env.id={env_id!r} is not a registered gymnasium environment ({err}).{hint} "
            "`python -c 'import gymnasium; gymnasium.pprint_registry()'` lists them all.") from None


def vectorization_mode(env_cfg) -> str:
    if env_cfg.vectorization != "auto":
        return env_cfg.vectorization
    spec = check_env_id(env_cfg.id)
    return "vector_entry_point" if spec.vector_entry_point is not None else "sync"


def make_vec_env(env_cfg, num_envs: int) -> gym.vector.VectorEnv:
    """``num_envs`` copies of the configured environment as one vector env."""
    check_env_id(env_cfg.id)
    mode = vectorization_mode(env_cfg)
    kwargs = dict(env_cfg.kwargs or {})
    if env_cfg.max_episode_steps is not None:
        kwargs["max_episode_steps"] = int(env_cfg.max_episode_steps)
    try:
        envs = gym.make_vec(env_cfg.id, num_envs=num_envs, vectorization_mode=mode, **kwargs)
    except (TypeError, gym.error.Error) as err:
        raise ConfigError(f"Could not create env.id={env_cfg.id!r} with "
                          f"env.kwargs={kwargs} ({mode} vectorization): {err}") from None
    autoreset = envs.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
    if autoreset != AutoresetMode.NEXT_STEP:
        envs.close()
        raise ConfigError(f"{env_cfg.id}: vector env autoresets in mode {autoreset}; pgrun's "
                          "rollout expects gymnasium's default next-step autoreset.")
    return envs
