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
    normalize,
    set_lr,
    step,
)
from pgrun.policies import policy_value
from pgrun.rollout import Batch


@dataclass
class VPGConfig:
    """REINFORCE with a learned state-value baseline and GAE(λ) advantages."""

    name: str = "vpg"
    lr: float = 3e-4
    vf_lr: float = 1e-3
    vf_iters: int = 80
    num_steps: int = 256
    gamma: float = 0.99
    gae_lambda: float = 0.97
    normalize_advantages: bool = True
    ent_coef: float = 0.0
    max_grad_norm: float | None = None
    anneal_lr: bool = False


def policy_gradient_loss(logp, adv):
    """L_π = −E_t[log π_θ(a_t|s_t) Â_t]: its gradient is the score-function estimator."""
    return -(logp * adv).mean()


class VPG(Algorithm):
    name = "vpg"
    Config = VPGConfig

    def __init__(self, cfg, policy, num_envs, device="cpu"):
        super().__init__(cfg, policy, num_envs, device)
        self.pi_opt = adam(policy, "policy", self.cfg.lr)
        self.v_opt = adam(policy, "value", self.cfg.vf_lr)

    def optimizers(self):
        return {"policy": self.pi_opt, "value": self.v_opt}

    def update(self, batch: Batch, progress: float) -> dict[str, float]:
        cfg = self.cfg
        lr = self.current_lr(progress)
        set_lr(self.pi_opt, lr)
        d = self.gae_tensors(batch)
        advantages = normalize(d["adv"]) if cfg.normalize_advantages else d["adv"]

        dist, _ = self.policy(d["obs"])
        pg_loss = policy_gradient_loss(dist.log_prob(d["actions"]), advantages)
        entropy = entropy_term(dist, cfg.ent_coef)
        grad_norm = step(self.pi_opt, pg_loss - cfg.ent_coef * entropy, cfg.max_grad_norm)

        value_losses = []
        for _ in range(cfg.vf_iters):
            v_loss = (policy_value(self.policy, d["obs"]) - d["ret"]).pow(2).mean()
            value_losses.append(v_loss.item())
            step(self.v_opt, v_loss, cfg.max_grad_norm)

        return {"policy_loss": pg_loss.item(), "value_loss": value_losses[0],
                "entropy": entropy.item(), "grad_norm": grad_norm, "lr": lr,
                "approx_kl": self.final_kl(d["obs"], d["actions"], d["logp"]),
                "explained_variance": explained_variance(d["values"], d["ret"])}
