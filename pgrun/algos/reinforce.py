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

from pgrun.algos.base import Algorithm, adam, figure, mean, normalize, set_lr, step, total
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


def reinforce_loss(logp: torch.Tensor, psi: torch.Tensor, n_episodes,
                   w: torch.Tensor | None = None) -> torch.Tensor:
    """L = −(1/M) Σ_episodes Σ_t log π(a_t|s_t) Ψ_t over the batch's M episodes (per
    seed, with K seeds' weights ``w`` and episode counts)."""
    return -total(logp * psi, w) / n_episodes


class Reinforce(Algorithm):
    name = "reinforce"
    Config = ReinforceConfig
    uses_value = False
    seed_batched = True

    def __init__(self, cfg, policy, num_envs, device="cpu", generators=None):
        super().__init__(cfg, policy, num_envs, device, generators)
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

    def episodes(self, collector: Collector):
        return self.cfg.episodes_per_update // self.num_envs, None

    def psi(self, batch: Batch):
        """Per-step weights Ψ_t (reward-to-go or total episode return), T×N."""
        rtg = reward_to_go(batch.rewards, batch.dones, self.cfg.gamma)
        return rtg if self.cfg.reward_to_go else episode_total_return(rtg, batch.episode_starts())

    def update(self, batch: Batch | list[Batch], progress: float) -> dict:
        cfg = self.cfg
        lr = self.current_lr(progress)
        set_lr(self.opt, lr)
        d = self.samples(batch, lambda b: dict(obs=b.obs, actions=b.actions, logp=b.logp,
                                                psi=self.psi(b)))
        w, active = d.w, self.active_seeds(d)
        psi = normalize(d["psi"], w) if cfg.normalize_returns else d["psi"]
        n_episodes = int(batch.episode_starts().sum()) if w is None else torch.tensor(
            [float(b.episode_starts().sum()) for b in batch], device=self.device)
        dist, _ = self.policy(d["obs"])
        policy_loss = reinforce_loss(dist.log_prob(d["actions"]), psi, n_episodes, w)
        entropy = dist.entropy()
        grad_norm = step(self.opt, policy_loss - cfg.ent_coef * total(entropy, w) / n_episodes,
                         cfg.max_grad_norm, active)
        return {"policy_loss": figure(policy_loss), "entropy": figure(mean(entropy, w)),
                "grad_norm": grad_norm, "lr": lr,
                "approx_kl": self.final_kl(d["obs"], d["actions"], d["logp"], w)}
