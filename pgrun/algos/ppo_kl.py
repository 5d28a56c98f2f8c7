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

import numpy as np
import torch

from pgrun.algos.base import (
    Algorithm,
    Means,
    adam,
    entropy_term,
    explained_variance,
    figure,
    mean,
    minibatch_problems,
    normalize,
    seed_column,
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


def kl_penalized_surrogate(logp, old_logp, adv, kl, beta, w=None) -> torch.Tensor:
    """L^KLPEN = −E[r Â − β KL],  r = exp(log π_θ − log π_old)   (eq. 8)"""
    return -mean((logp - old_logp).exp() * adv - beta * kl, w)


def adapt_beta(beta, kl, kl_target: float):
    """β halves when KL < d_targ/1.5 and doubles when KL > 1.5 d_targ (§4); per seed
    for K seeds' arrays."""
    new = np.where(kl < kl_target / 1.5, beta / 2.0,
                   np.where(kl > kl_target * 1.5, beta * 2.0, beta))
    return float(new) if new.ndim == 0 else new


class PPOKL(Algorithm):
    name = "ppo_kl"
    Config = PPOKLConfig
    columns = ("kl_beta", "kl")
    seed_batched = True

    def __init__(self, cfg, policy, num_envs, device="cpu", generators=None):
        super().__init__(cfg, policy, num_envs, device, generators)
        self.opt = adam(policy, "all", self.cfg.lr, self.cfg.adam_eps)
        self.beta = float(self.cfg.kl_beta)  # K seeds: one per seed (NumPy)

    def optimizers(self):
        return {"agent": self.opt}

    @classmethod
    def check(cls, cfg, env_cfg):
        return minibatch_problems(cfg, env_cfg)

    def state_dict(self):
        return {"beta": self.beta}

    def load_state_dict(self, state):
        beta = state.get("beta", self.cfg.kl_beta)
        self.beta = np.asarray(beta, dtype=np.float64) if np.ndim(beta) else float(beta)

    def update(self, batch: Batch | list[Batch], progress: float) -> dict:
        cfg = self.cfg
        lr = self.current_lr(progress)
        set_lr(self.opt, lr)
        d = self.gae_tensors(batch)
        with torch.no_grad():
            old_dist = self.policy(d["obs"])[0].detach()
        stats = Means()
        active = self.active_seeds(d)
        beta = self.beta
        beta_t = seed_column(beta, self.device)
        for mb in d.minibatches(cfg.num_epochs, cfg.num_minibatches):
            dist, values = self.policy(mb["obs"])
            w = mb.w
            kl = old_dist[mb.index].kl(dist)
            adv = normalize(mb["adv"], w) if cfg.normalize_advantages else mb["adv"]
            pg_loss = kl_penalized_surrogate(dist.log_prob(mb["actions"]), mb["logp"], adv, kl,
                                             beta_t, w)
            v_loss = value_loss(values, mb["values"], mb["ret"], None, w)
            entropy = entropy_term(dist, cfg.ent_coef, w)
            loss = pg_loss - cfg.ent_coef * entropy + cfg.vf_coef * v_loss
            grad_norm = step(self.opt, loss, cfg.max_grad_norm, active)
            stats.add(active, policy_loss=pg_loss, value_loss=v_loss, entropy=entropy,
                      grad_norm=grad_norm)
        with torch.no_grad():
            mean_kl = figure(mean(old_dist.kl(self.policy(d["obs"])[0]), d.w))
        self.beta = adapt_beta(beta, mean_kl, cfg.kl_target)
        return stats.means() | {
            "lr": lr, "kl_beta": beta, "kl": mean_kl,
            "approx_kl": self.final_kl(d["obs"], d["actions"], d["logp"], d.w),
            "explained_variance": explained_variance(d["values"], d["ret"], d.w)}
