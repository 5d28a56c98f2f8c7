"""Vanilla policy gradient: REINFORCE with a learned state-value baseline.

Policy: one gradient step per batch on  L_π = −E_t[ log π_θ(a_t|s_t) Â_t ] − c_H E_t[H_t]
with Â_t the GAE(λ) advantage. Value: ``vf_iters`` full-batch steps of its own optimizer
on  L_V = E_t[(V_φ(s_t) − R̂_t)²]  with R̂_t = Â_t + V(s_t) (Spinning Up's VPG, with GAE
targets). The logged value_loss is the one before fitting.
"""

from __future__ import annotations

from dataclasses import dataclass

from pgrun.algos.base import (
    Algorithm,
    adam,
    entropy_term,
    explained_variance,
    figure,
    mean,
    minibatch_problems,
    normalize,
    set_lr,
    step,
)
from pgrun.rollout import Batch


@dataclass
class VPGConfig:
    """REINFORCE with a learned state-value baseline and GAE(λ) advantages."""

    name: str = "vpg"
    lr: float = 3e-4
    vf_lr: float = 1e-3
    vf_iters: int = 80
    vf_minibatches: int = 1  # > 1: vf_iters epochs of that many minibatches
    num_steps: int = 256
    gamma: float = 0.99
    gae_lambda: float = 0.97
    normalize_advantages: bool = True
    ent_coef: float = 0.0
    max_grad_norm: float | None = None
    anneal_lr: bool = False


def policy_gradient_loss(logp, adv, w=None):
    """L_π = −E_t[log π_θ(a_t|s_t) Â_t]: its gradient is the score-function estimator."""
    return -mean(logp * adv, w)


class VPG(Algorithm):
    name = "vpg"
    Config = VPGConfig
    seed_batched = True

    def __init__(self, cfg, policy, num_envs, device="cpu", generators=None):
        super().__init__(cfg, policy, num_envs, device, generators)
        self.pi_opt = adam(policy, "policy", self.cfg.lr)
        self.v_opt = adam(policy, "value", self.cfg.vf_lr)

    def optimizers(self):
        return {"policy": self.pi_opt, "value": self.v_opt}

    @classmethod
    def check(cls, cfg, env_cfg):
        return minibatch_problems(cfg, env_cfg, "vf_minibatches")

    def update(self, batch: Batch | list[Batch], progress: float) -> dict:
        cfg = self.cfg
        lr = self.current_lr(progress)
        set_lr(self.pi_opt, lr)
        d = self.gae_tensors(batch)
        w, active = d.w, self.active_seeds(d)
        advantages = normalize(d["adv"], w) if cfg.normalize_advantages else d["adv"]

        dist, _ = self.policy(d["obs"])
        pg_loss = policy_gradient_loss(dist.log_prob(d["actions"]), advantages, w)
        entropy = entropy_term(dist, cfg.ent_coef, w)
        grad_norm = step(self.pi_opt, pg_loss - cfg.ent_coef * entropy, cfg.max_grad_norm,
                         active)

        first_v_loss = self.fit_value(d, self.v_opt, active)

        return {"policy_loss": figure(pg_loss), "value_loss": first_v_loss,
                "entropy": figure(entropy), "grad_norm": grad_norm, "lr": lr,
                "approx_kl": self.final_kl(d["obs"], d["actions"], d["logp"], w),
                "explained_variance": explained_variance(d["values"], d["ret"], w)}
