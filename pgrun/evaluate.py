"""Evaluation episodes on separate environments with seeds disjoint from training."""

from __future__ import annotations

import numpy as np

from pgrun.inference import NumpyActor, rng_for
from pgrun.policies import Agent


def evaluate(agent: Agent, envs, episodes: int, seed: int, deterministic: bool = True):
    """Run ``episodes`` whole episodes, one per env per round, every round reset with the
    same seeds (so successive evaluations of a run compare policies, not start states).
    Sampling (``deterministic=False``) draws from a generator of its own seeded with
    ``seed``, so evaluating never changes the training run's random stream.
    Returns (returns, lengths) as arrays."""
    actor, rng = NumpyActor(agent), rng_for(seed, 1)
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
            actions, _, _ = actor.act(np.asarray(obs, dtype=np.float32), rng, deterministic)
            obs, reward, terminated, truncated, _ = envs.step(actions)
            ret += np.where(running, reward, 0.0)
            length += running
            running &= ~(terminated | truncated)
        returns.append(ret[:todo])
        lengths.append(length[:todo])
    return np.concatenate(returns), np.concatenate(lengths)
