"""Vanilla policy gradient: REINFORCE with a learned state-value baseline.

Policy: one gradient step per batch on  L_π = −E_t[ log π_θ(a_t|s_t) Â_t ] − c_H E_t[H_t]
with Â_t the GAE(λ) advantage. Value: ``vf_iters`` full-batch steps of its own optimizer
on  L_V = E_t[(V_φ(s_t) − R̂_t)²]  with R̂_t = Â_t + V(s_t) (Spinning Up's VPG, with GAE
targets). The logged value_loss is the one before fitting.
"""

from __future__ import annotations

import torch

from pgrun.algos.base import (
    Algorithm,
    adam,
    explained_variance,
    normalize,
    set_lr,
    step,
    valid_tensors,
)
from pgrun.returns import gae, next_values
from pgrun.rollout import Batch


class VPG(Algorithm):
    def __init__(self, cfg, agent, num_envs):
        super().__init__(cfg, agent, num_envs)
        self.pi_params = agent.policy_parameters()
        self.v_params = agent.value_parameters()
        self.pi_opt = adam(self.pi_params, cfg.lr)
        self.v_opt = adam(self.v_params, cfg.vf_lr)

    def optimizers(self):
        return {"policy": self.pi_opt, "value": self.v_opt}

    def update(self, batch: Batch, progress: float) -> dict[str, float]:
        cfg = self.cfg
        lr = self.current_lr(progress)
        set_lr(self.pi_opt, lr)
        adv, ret = gae(batch.rewards, batch.values, next_values(batch.values, batch.last_value),
                       batch.terminated, batch.truncated, cfg.gamma, cfg.gae_lambda)
        d = valid_tensors(batch, obs=batch.obs, actions=batch.actions, logp=batch.logp,
                          values=batch.values, adv=adv, ret=ret)
        advantages = normalize(d["adv"]) if cfg.normalize_advantages else d["adv"]

        logp, entropy, _ = self.agent.evaluate(d["obs"], d["actions"])
        policy_loss = -(logp * advantages).mean()
        grad_norm = step(self.pi_opt, policy_loss - cfg.ent_coef * entropy.mean(),
                         self.pi_params, cfg.max_grad_norm)

        value_losses = []
        for _ in range(cfg.vf_iters):
            value_loss = (self.agent.value(d["obs"]) - d["ret"]).pow(2).mean()
            step(self.v_opt, value_loss, self.v_params, cfg.max_grad_norm)
            value_losses.append(value_loss.item())

        with torch.no_grad():
            new_logp, _, _ = self.agent.evaluate(d["obs"], d["actions"])
            approx_kl = float((d["logp"] - new_logp).mean())
        return {"policy_loss": policy_loss.item(), "value_loss": value_losses[0],
                "entropy": entropy.mean().item(), "approx_kl": approx_kl, "grad_norm": grad_norm,
                "explained_variance": explained_variance(d["values"].numpy(), d["ret"].numpy()),
                "lr": lr}
