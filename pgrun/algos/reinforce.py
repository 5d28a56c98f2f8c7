"""REINFORCE (Williams 1992): the score-function estimator over whole episodes.

∇J(θ) = E_τ[ Σ_t ∇ log π_θ(a_t|s_t) Ψ_t ],  Ψ_t = G_t (reward-to-go) or G_0 (total return)

The loss averages over episodes and sums over their steps, so its gradient is exactly
the estimator above (before the optional normalization of Ψ within the batch). No critic:
a time-limit truncation ends the return like a termination.
"""

from __future__ import annotations

import numpy as np

from pgrun.algos.base import Algorithm, adam, normalize, set_lr, step, valid_arrays
from pgrun.returns import episode_total_return, reward_to_go
from pgrun.rollout import Batch, Collector


def reinforce_loss(logp: np.ndarray, psi: np.ndarray, n_episodes: int
                   ) -> tuple[float, np.ndarray]:
    """(L, ∂L/∂log π) of the policy loss L = −(1/M) Σ_episodes Σ_t log π(a_t|s_t) Ψ_t:
    ∂L/∂log π(a_t|s_t) = −Ψ_t / M. (An entropy bonus −c_H/M Σ H_t adds ∂L/∂H_t = −c_H/M.)"""
    return -float((logp * psi).sum()) / n_episodes, (-psi / n_episodes).astype(np.float32)


class Reinforce(Algorithm):
    uses_value = False

    def __init__(self, cfg, agent, num_envs):
        super().__init__(cfg, agent, num_envs)
        self.opt = adam(agent, "policy", cfg.lr)

    def optimizers(self):
        return {"policy": self.opt}

    def collect(self, collector: Collector) -> Batch:
        return collector.collect_episodes(self.cfg.episodes_per_update // self.num_envs)

    def psi(self, batch: Batch):
        """Per-step weights Ψ_t (reward-to-go or total episode return), T×N."""
        rtg = reward_to_go(batch.rewards, batch.dones, self.cfg.gamma)
        return rtg if self.cfg.reward_to_go else episode_total_return(rtg, batch.episode_starts())

    def update(self, batch: Batch, progress: float) -> dict[str, float]:
        cfg = self.cfg
        lr = self.current_lr(progress)
        set_lr(self.opt, lr)
        data = valid_arrays(batch, obs=batch.obs, actions=batch.actions, logp=batch.logp,
                            psi=self.psi(batch))
        psi = normalize(data["psi"]) if cfg.normalize_returns else data["psi"]
        n_episodes = int(batch.episode_starts().sum())
        logp, entropy, _ = self.net.evaluate(data["obs"], data["actions"])
        policy_loss, dlogp = reinforce_loss(logp, psi, n_episodes)
        self.net.backward(dlogp, -cfg.ent_coef / n_episodes)
        grad_norm = step(self.opt, cfg.max_grad_norm)
        new_logp, _, _ = self.net.evaluate(data["obs"], data["actions"])
        return {"policy_loss": policy_loss, "entropy": float(entropy.mean()),
                "approx_kl": float((data["logp"] - new_logp).mean()), "grad_norm": grad_norm,
                "lr": lr}
