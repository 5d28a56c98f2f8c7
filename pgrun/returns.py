"""Returns and advantages over a T×N rollout (time-major, one column per env).

Conventions shared by every function here (see ``rollout.py``):

* ``terminated[t]`` / ``truncated[t]`` describe the transition taken at step t.
* ``values[t] = V(s_t)``; ``next_values[t]`` is the value of the observation that
  followed step t. With gymnasium's next-step autoreset that observation is the final
  one of the episode when step t ended it, so the truncation bootstrap is just
  ``next_values[t]``.
* Steps that are not real transitions (the autoreset step that follows an episode's
  end, or steps of an env that already delivered its episodes) are masked out by the
  caller. They always follow an episode end, where every chain below is cut, so
  nothing leaks from them into a real step.
"""

from __future__ import annotations

import numpy as np


def next_values(values: np.ndarray, last_value: np.ndarray) -> np.ndarray:
    """V(s_{t+1}) for every step: values shifted by one, ``last_value`` after the cut."""
    return np.concatenate([values[1:], last_value[None]], axis=0)


def reward_to_go(rewards: np.ndarray, dones: np.ndarray, gamma: float) -> np.ndarray:
    """Discounted reward-to-go without bootstrap, cut at every episode end.

    G_t = r_t + γ (1 − d_t) G_{t+1},  G_T = 0     (the Monte-Carlo return of REINFORCE)
    """
    out = np.empty_like(rewards)
    running = np.zeros(rewards.shape[1:], dtype=rewards.dtype)
    keep = 1.0 - dones.astype(rewards.dtype)
    for t in range(len(rewards) - 1, -1, -1):
        running = rewards[t] + gamma * keep[t] * running
        out[t] = running
    return out


def episode_total_return(rtg: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Broadcast each episode's full return G_0 (the reward-to-go at its first step) to
    every step of the episode: the "total return" weighting of the original REINFORCE."""
    out = np.empty_like(rtg)
    current = rtg[0].copy()
    for t in range(len(rtg)):
        current = np.where(starts[t], rtg[t], current)
        out[t] = current
    return out


def gae(
    rewards: np.ndarray,
    values: np.ndarray,
    next_value: np.ndarray,
    terminated: np.ndarray,
    truncated: np.ndarray,
    gamma: float,
    lam: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Generalized advantage estimation (Schulman et al. 2016, eq. 16) with the
    time-limit bootstrap.

    δ_t = r_t + γ (1 − term_t) V(s_{t+1}) − V(s_t)
    Â_t = δ_t + γλ (1 − term_t)(1 − trunc_t) Â_{t+1}

    A truncated step still bootstraps V(s_{t+1}) (the episode was cut, not ended), but
    no advantage flows into it from the next episode. λ=1 gives the Monte-Carlo
    advantage G_t − V(s_t); λ=0 the one-step TD error. Returns (advantages, returns)
    with returns = Â + V, the TD(λ) target for the value function.
    """
    dtype = rewards.dtype
    nonterminal = 1.0 - terminated.astype(dtype)
    carry_on = nonterminal * (1.0 - truncated.astype(dtype))
    deltas = rewards + gamma * nonterminal * next_value - values
    decay = gamma * lam * carry_on
    adv = np.empty_like(rewards)
    running = np.zeros(rewards.shape[1:], dtype=dtype)
    for t in range(len(rewards) - 1, -1, -1):
        running = np.multiply(decay[t], running, out=adv[t])
        running += deltas[t]
    return adv, adv + values


def batch_gae(batch, gamma: float, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """(Â, R̂) of a rollout ``Batch`` with a critic: ``gae`` with the next-state values
    bootstrapped at the batch's cut (``Batch.last_value``) and at truncations."""
    return gae(batch.rewards, batch.values, next_values(batch.values, batch.last_value),
               batch.terminated, batch.truncated, gamma, lam)
