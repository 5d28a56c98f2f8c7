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
    return Evaluation(actor, envs, episodes, seed, obs_normalizer).run(deterministic)


class Evaluation:
    """``evaluate``'s episodes, one vector step at a time: ``policy_obs()`` is what the
    policy sees, ``step(actions)`` acts on it (``batched.py`` chooses the actions of K
    seeds' evaluations in one forward pass)."""

    def __init__(self, actor: Actor, envs, episodes: int, seed: int,
                 obs_normalizer: ObsNormalizer | None = None):
        self.actor, self.envs, self.episodes, self.seed = actor, envs, episodes, seed
        self.obs_normalizer = obs_normalizer
        self.rng = rng_for(seed, 1)
        self.n = envs.num_envs
        self.returns: list[np.ndarray] = []
        self.lengths: list[np.ndarray] = []
        self.round_start = 0
        self._begin_round()

    def _begin_round(self) -> None:
        self.todo = min(self.n, self.episodes - self.round_start)
        self.obs, _ = self.envs.reset(seed=self.seed + self.round_start)
        self.ret = np.zeros(self.n)
        self.length = np.zeros(self.n, dtype=np.int64)
        self.going = np.zeros(self.n, dtype=bool)
        self.going[:self.todo] = True

    @property
    def running(self) -> bool:
        return bool(self.going.any())

    def policy_obs(self) -> np.ndarray:
        obs = self.actor.encode(self.obs)
        return obs if self.obs_normalizer is None else self.obs_normalizer.normalize(obs)

    def step(self, actions: np.ndarray) -> None:
        self.obs, reward, terminated, truncated, _ = self.envs.step(self.actor.to_env(actions))
        self.ret += np.where(self.going, reward, 0.0)
        self.length += self.going
        self.going &= ~(terminated | truncated)
        if not self.going.any():
            self.returns.append(self.ret[:self.todo])
            self.lengths.append(self.length[:self.todo])
            self.round_start += self.n
            if self.round_start < self.episodes:
                self._begin_round()

    def run(self, deterministic: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Step to the end with the actor's own actions; ``result()``."""
        while self.running:
            obs = self.policy_obs()
            self.step(self.actor.mode(obs) if deterministic else self.actor.act(obs, self.rng)[0])
        return self.result()

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """(returns, lengths) of the episodes, as arrays."""
        return np.concatenate(self.returns), np.concatenate(self.lengths)
