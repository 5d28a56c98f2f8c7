"""Evaluation episodes on separate environments with seeds disjoint from training."""

from __future__ import annotations

import numpy as np

from pgrun.normalize import ObsNormalizer
from pgrun.rollout import Actor, rng_for


def evaluate(actor: Actor, envs, episodes: int, seed: int, deterministic: bool = True,
             obs_normalizer: ObsNormalizer | None = None):
    """Run ``episodes`` whole episodes, one per env per round, every round reset with the
    same seeds (so successive evaluations of a run compare policies, not start states).
    Sampling (``deterministic=False``) draws from a generator of its own seeded with
    ``seed``, so evaluating never changes the training run's random stream.
    ``obs_normalizer``: the training statistics, applied frozen (never updated here).
    Gaussian actions (the mean when ``deterministic``) reach the env mapped into its
    bounds as in training. Returns (returns, lengths) as arrays; returns are raw."""
    rng = rng_for(seed, 1)
    n = envs.num_envs
    returns, lengths = [], []
    for round_start in range(0, episodes, n):
        todo = min(n, episodes - round_start)
        obs, _ = envs.reset(seed=seed + round_start)
        ret = np.zeros(n)
        length = np.zeros(n, dtype=np.int64)
        running = np.zeros(n, dtype=bool)
        running[:todo] = True
        while running.any():
            obs = actor.encode(obs)
            if obs_normalizer is not None:
                obs = obs_normalizer.normalize(obs)
            actions = actor.mode(obs) if deterministic else actor.act(obs, rng)[0]
            obs, reward, terminated, truncated, _ = envs.step(actor.to_env(actions))
            ret += np.where(running, reward, 0.0)
            length += running
            running &= ~(terminated | truncated)
        returns.append(ret[:todo])
        lengths.append(length[:todo])
    return np.concatenate(returns), np.concatenate(lengths)
