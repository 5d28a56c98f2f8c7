"""REINFORCE (Williams 1992): the score-function estimator over whole episodes.

∇J(θ) = E_τ[ Σ_t ∇ log π_θ(a_t|s_t) Ψ_t ],  Ψ_t = G_t (reward-to-go) or G_0 (total return)

The loss averages over episodes and sums over their steps,

  L = −(1/M) Σ_episodes Σ_t [log π_θ(a_t|s_t) Ψ_t + c_H H[π_θ(·|s_t)]],

so its gradient is exactly the estimator above (before the optional normalization of Ψ
within the batch). No critic: a time-limit truncation ends the return like a termination.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pgrun.algos.base import Algorithm, adam, normalize, set_lr, step
from pgrun.returns import episode_total_return, reward_to_go
from pgrun.rollout import Batch, Collector


@dataclass
class ReinforceConfig:
    """Monte-Carlo policy gradient over whole episodes, no critic."""

    name: str = "reinforce"
    lr: float = 1e-3
    gamma: float = 0.99
    reward_to_go: bool = True
    normalize_returns: bool = True
    episodes_per_update: int = 8
    ent_coef: float = 0.0
    max_grad_norm: float | None = None
    anneal_lr: bool = False


def reinforce_loss(logp: torch.Tensor, psi: torch.Tensor, n_episodes: int) -> torch.Tensor:
    """L = −(1/M) Σ_episodes Σ_t log π(a_t|s_t) Ψ_t over the batch's M episodes."""
    return -(logp * psi).sum() / n_episodes


class Reinforce(Algorithm):
    name = "reinforce"
    Config = ReinforceConfig
    uses_value = False

    def __init__(self, cfg, policy, num_envs, device="cpu"):
        super().__init__(cfg, policy, num_envs, device)
        self.opt = adam(policy, "policy", self.cfg.lr)

    def optimizers(self):
        return {"policy": self.opt}

    @classmethod
    def check(cls, cfg, env_cfg):
        if env_cfg.num_envs >= 1 and cfg.episodes_per_update % env_cfg.num_envs:
            return [f"algo.episodes_per_update={cfg.episodes_per_update!r}: must be a multiple "
                    f"of env.num_envs={env_cfg.num_envs} (each env runs the same number of "
                    "whole episodes per update)"]
        return []

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
        d = self.tensors(batch, obs=batch.obs, actions=batch.actions, logp=batch.logp,
                         psi=self.psi(batch))
        psi = normalize(d["psi"]) if cfg.normalize_returns else d["psi"]
        n_episodes = int(batch.episode_starts().sum())
        dist, _ = self.policy(d["obs"])
        policy_loss = reinforce_loss(dist.log_prob(d["actions"]), psi, n_episodes)
        entropy = dist.entropy()
        grad_norm = step(self.opt, policy_loss - cfg.ent_coef * entropy.sum() / n_episodes,
                         cfg.max_grad_norm)
        return {"policy_loss": policy_loss.item(), "entropy": entropy.mean().item(),
                "grad_norm": grad_norm, "lr": lr,
                "approx_kl": self.final_kl(d["obs"], d["actions"], d["logp"])}
