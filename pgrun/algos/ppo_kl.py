"""PPO with the adaptive KL penalty (Schulman et al. 2017, §4).

For each of ``num_epochs`` passes over the batch in shuffled minibatches:

  L^KLPEN = −E_t[ r_t(θ) Â_t − β KL[π_old(·|s_t) ‖ π_θ(·|s_t)] ]                   (eq. 8)
  L       = L^KLPEN − c_H E_t[H_t] + c_V ½ E_t[(V_θ(s_t) − R̂_t)²]

with the exact KL of the two distributions (``Distribution.kl``), π_old the policy that
collected the batch. After the update, with d = E_t[KL[π_old‖π_θ]] on the batch:

  d < d_targ / 1.5  →  β ← β / 2;      d > 1.5 d_targ  →  β ← 2 β

β is part of the run's state (checkpointed). Â is GAE(λ), normalized per minibatch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pgrun.algos.base import (
    Algorithm,
    Means,
    adam,
    entropy_term,
    explained_variance,
    minibatch_problems,
    minibatches,
    normalize,
    set_lr,
    step,
)
from pgrun.algos.ppo import value_loss
from pgrun.rollout import Batch


@dataclass
class PPOKLConfig:
    """PPO with an adaptive KL penalty instead of the clipped ratio."""

    name: str = "ppo_kl"
    lr: float = 3e-4
    anneal_lr: bool = True
    num_steps: int = 128
    num_epochs: int = 10
    num_minibatches: int = 4
    gamma: float = 0.99
    gae_lambda: float = 0.95
    kl_target: float = 0.01
    kl_beta: float = 1.0  # β's initial value
    normalize_advantages: bool = True
    ent_coef: float = 0.0
    vf_coef: float = 0.5
    max_grad_norm: float | None = 0.5
    adam_eps: float = 1e-5


def kl_penalized_surrogate(logp, old_logp, adv, kl, beta: float) -> torch.Tensor:
    """L^KLPEN = −E[r Â − β KL],  r = exp(log π_θ − log π_old)   (eq. 8)"""
    return -((logp - old_logp).exp() * adv - beta * kl).mean()


def adapt_beta(beta: float, kl: float, kl_target: float) -> float:
    """β halves when KL < d_targ/1.5 and doubles when KL > 1.5 d_targ (§4)."""
    if kl < kl_target / 1.5:
        return beta / 2.0
    if kl > kl_target * 1.5:
        return beta * 2.0
    return beta


class PPOKL(Algorithm):
    name = "ppo_kl"
    Config = PPOKLConfig
    columns = ("kl_beta", "kl")

    def __init__(self, cfg, policy, num_envs, device="cpu"):
        super().__init__(cfg, policy, num_envs, device)
        self.opt = adam(policy, "all", self.cfg.lr, self.cfg.adam_eps)
        self.beta = float(self.cfg.kl_beta)

    def optimizers(self):
        return {"agent": self.opt}

    @classmethod
    def check(cls, cfg, env_cfg):
        return minibatch_problems(cfg, env_cfg)

    def state_dict(self):
        return {"beta": self.beta}

    def load_state_dict(self, state):
        self.beta = float(state.get("beta", self.cfg.kl_beta))

    def update(self, batch: Batch, progress: float) -> dict[str, float]:
        cfg = self.cfg
        lr = self.current_lr(progress)
        set_lr(self.opt, lr)
        d = self.gae_tensors(batch)
        with torch.no_grad():
            old_dist = self.policy(d["obs"])[0].detach()
        stats = Means()
        beta = self.beta
        for idx in minibatches(len(d["adv"]), cfg.num_epochs, cfg.num_minibatches, self.device):
            dist, values = self.policy(d["obs"][idx])
            kl = old_dist[idx].kl(dist)
            mb_adv = normalize(d["adv"][idx]) if cfg.normalize_advantages else d["adv"][idx]
            pg_loss = kl_penalized_surrogate(dist.log_prob(d["actions"][idx]), d["logp"][idx],
                                             mb_adv, kl, beta)
            v_loss = value_loss(values, d["values"][idx], d["ret"][idx], None)
            entropy = entropy_term(dist, cfg.ent_coef)
            loss = pg_loss - cfg.ent_coef * entropy + cfg.vf_coef * v_loss
            grad_norm = step(self.opt, loss, cfg.max_grad_norm)
            stats.add(policy_loss=pg_loss.item(), value_loss=v_loss.item(),
                      entropy=entropy.item(), grad_norm=grad_norm)
        with torch.no_grad():
            mean_kl = float(old_dist.kl(self.policy(d["obs"])[0]).mean())
        self.beta = adapt_beta(beta, mean_kl, cfg.kl_target)
        return stats.means() | {
            "lr": lr, "kl_beta": beta, "kl": mean_kl,
            "approx_kl": self.final_kl(d["obs"], d["actions"], d["logp"]),
            "explained_variance": explained_variance(d["values"], d["ret"])}
