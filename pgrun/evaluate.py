"""Evaluation episodes on separate environments with seeds disjoint from training."""

from __future__ import annotations

import numpy as np
import torch

from pgrun.policies import Agent


def evaluate(agent: Agent, envs, episodes: int, seed: int, deterministic: bool = True):
    """Run ``episodes`` whole episodes, one per env per round, every round reset with the
    same seeds (so successive evaluations of a run compare policies, not start states).
    Sampling (``deterministic=False``) draws from a forked torch RNG seeded with ``seed``,
    so evaluating never changes the training run's random stream.
    Returns (returns, lengths) as arrays."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _run_episodes(agent, envs, episodes, seed, deterministic)


def _run_episodes(agent: Agent, envs, episodes: int, seed: int, deterministic: bool):
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
            action, _, _ = agent.act(torch.from_numpy(np.asarray(obs, dtype=np.float32)),
                                     deterministic=deterministic)
            obs, reward, terminated, truncated, _ = envs.step(action.numpy())
            ret += np.where(running, reward, 0.0)
            length += running
            running &= ~(terminated | truncated)
        returns.append(ret[:todo])
        lengths.append(length[:todo])
    return np.concatenate(returns), np.concatenate(lengths)
