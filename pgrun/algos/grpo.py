"""GRPO (Shao et al. 2024) adapted from language models to control.

In language-model GRPO a prompt is answered G times and each answer's reward is
standardized within its group, so the group mean replaces a learned critic as the
baseline. Here a "prompt" is a reset seed: every update runs ``num_envs / group_size``
groups of ``group_size`` episodes, all episodes of a group starting from the same seed
(same initial state), and every step of episode i in group g gets the advantage

  Â_i = (R_i − mean_g R) / (std_g R + ε),   R_i = Σ_t γ^t r_t  (γ = 1 by default)

The policy then takes PPO's clipped-ratio steps over several epochs of shuffled
minibatches of those steps, optionally with a KL penalty to the policy that collected the
data (the k3 estimator, as in the GRPO paper):

  L = −E_t[min(r_t Â, clip(r_t, 1−ε, 1+ε) Â)] + β E_t[π_old/π_θ − log(π_old/π_θ) − 1] − c_H E_t[H_t]

A group whose episodes all score the same carries no signal (Â = 0), as in GRPO.
"""

from __future__ import annotations

import numpy as np
from gymnasium.vector import AsyncVectorEnv, SyncVectorEnv

from pgrun.algos.base import Algorithm, Means, adam, minibatches, set_lr, step, valid_arrays
from pgrun.algos.ppo import clipped_surrogate
from pgrun.config import ConfigError
from pgrun.returns import reward_to_go
from pgrun.rollout import Batch, Collector


def group_advantages(returns: np.ndarray, group_size: int, eps: float = 1e-8) -> np.ndarray:
    """Each episode's return standardized within its group of ``group_size`` consecutive
    episodes (population std, as in GRPO)."""
    groups = returns.reshape(-1, group_size)
    adv = (groups - groups.mean(axis=1, keepdims=True)) / (groups.std(axis=1, keepdims=True) + eps)
    return adv.reshape(-1)


def kl_k3(logp: np.ndarray, old_logp: np.ndarray) -> tuple[float, np.ndarray]:
    """(k3, ∂k3/∂log π) with k3 = E[π_old/π_θ − log(π_old/π_θ) − 1], an unbiased,
    non-negative estimate of KL[π_θ‖π_old] from samples of π_old: with x = log π_old − log π,
    ∂/∂log π of (eˣ − x − 1)/B is (1 − eˣ)/B."""
    x = old_logp - logp
    ex = np.exp(x)
    return float((ex - x - 1.0).mean()), ((1.0 - ex) / len(x)).astype(np.float32)


class GRPO(Algorithm):
    uses_value = False

    def __init__(self, cfg, agent, num_envs):
        super().__init__(cfg, agent, num_envs)
        self.opt = adam(agent, "policy", cfg.lr, cfg.adam_eps)

    def optimizers(self):
        return {"policy": self.opt}

    def collect(self, collector: Collector) -> Batch:
        """One episode per env; env k belongs to group k // group_size and starts from
        that group's seed (drawn from the collector's generator, so runs reproduce)."""
        if not isinstance(collector.envs, SyncVectorEnv | AsyncVectorEnv):
            raise ConfigError(
                f"algo=grpo resets each env with its group's seed, which "
                f"{type(collector.envs).__name__} does not support: set env.vectorization=sync "
                "(or async).")
        groups = self.num_envs // self.cfg.group_size
        group_seeds = collector.rng.integers(0, 2**31 - 1, size=groups)
        return collector.collect_episodes(
            1, reset_seeds=[int(s) for s in np.repeat(group_seeds, self.cfg.group_size)])

    def step_advantages(self, batch: Batch) -> np.ndarray:
        """T×N: every step of an episode carries its episode's group advantage."""
        # one episode per env, each from a reset at row 0: its return is G_0 = rtg[0]
        episode_return = reward_to_go(batch.rewards, batch.dones, self.cfg.gamma)[0]
        adv_per_env = group_advantages(episode_return, self.cfg.group_size)
        return np.broadcast_to(adv_per_env, batch.rewards.shape).astype(np.float32)

    def update(self, batch: Batch, progress: float) -> dict[str, float]:
        cfg = self.cfg
        lr = self.current_lr(progress)
        set_lr(self.opt, lr)
        d = valid_arrays(batch, obs=batch.obs, actions=batch.actions, logp=batch.logp,
                         adv=self.step_advantages(batch))
        stats = Means()
        for idx in minibatches(len(d["adv"]), cfg.num_epochs, cfg.num_minibatches):
            logp, entropy, _ = self.net.evaluate(d["obs"][idx], d["actions"][idx])
            pg_loss, dlogp, info = clipped_surrogate(logp, d["logp"][idx], d["adv"][idx],
                                                     cfg.clip_eps)
            _, dkl = kl_k3(logp, d["logp"][idx])
            self.net.backward(dlogp + cfg.kl_coef * dkl, -cfg.ent_coef / len(idx))
            grad_norm = step(self.opt, cfg.max_grad_norm)
            stats.add(policy_loss=pg_loss, entropy=entropy.mean(), grad_norm=grad_norm, **info)
        out = stats.means()
        out.update(lr=lr)
        return out
