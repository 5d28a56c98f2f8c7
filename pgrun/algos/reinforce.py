"""REINFORCE (Williams 1992): the score-function estimator over whole episodes.

∇J(θ) = E_τ[ Σ_t ∇ log π_θ(a_t|s_t) Ψ_t ],  Ψ_t = G_t (reward-to-go) or G_0 (total return)

The loss averages over episodes and sums over their steps, so its gradient is exactly
the estimator above (before the optional normalization of Ψ within the batch). No critic:
a time-limit truncation ends the return like a termination.
"""

from __future__ import annotations

import torch

from pgrun.algos.base import Algorithm, adam, normalize, set_lr, step, valid_tensors
from pgrun.returns import episode_total_return, reward_to_go
from pgrun.rollout import Batch, Collector


def reinforce_loss(logp: torch.Tensor, psi: torch.Tensor, entropy: torch.Tensor,
                   n_episodes: int, ent_coef: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, policy_loss): −(1/M) Σ_episodes Σ_t [log π(a_t|s_t) Ψ_t + c_H H_t]."""
    policy_loss = -(logp * psi).sum() / n_episodes
    return policy_loss - ent_coef * entropy.sum() / n_episodes, policy_loss


class Reinforce(Algorithm):
    uses_value = False

    def __init__(self, cfg, agent, num_envs):
        super().__init__(cfg, agent, num_envs)
        self.params = agent.policy_parameters()
        self.opt = adam(self.params, cfg.lr)

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
        data = valid_tensors(batch, obs=batch.obs, actions=batch.actions, logp=batch.logp,
                             psi=self.psi(batch))
        psi = normalize(data["psi"]) if cfg.normalize_returns else data["psi"]
        n_episodes = int(batch.episode_starts().sum())
        logp, entropy, _ = self.agent.evaluate(data["obs"], data["actions"])
        loss, policy_loss = reinforce_loss(logp, psi, entropy, n_episodes, cfg.ent_coef)
        grad_norm = step(self.opt, loss, self.params, cfg.max_grad_norm)
        with torch.no_grad():
            new_logp, _, _ = self.agent.evaluate(data["obs"], data["actions"])
            approx_kl = float((data["logp"] - new_logp).mean())
        return {"policy_loss": policy_loss.item(), "entropy": entropy.mean().item(),
                "approx_kl": approx_kl, "grad_norm": grad_norm, "lr": lr}
