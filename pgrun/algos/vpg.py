"""Vanilla policy gradient: REINFORCE with a learned state-value baseline.

Policy: one gradient step per batch on  L_π = −E_t[ log π_θ(a_t|s_t) Â_t ] − c_H E_t[H_t]
with Â_t the GAE(λ) advantage. Value: ``vf_iters`` full-batch steps of its own optimizer
on  L_V = E_t[(V_φ(s_t) − R̂_t)²]  with R̂_t = Â_t + V(s_t) (Spinning Up's VPG, with GAE
targets). The logged value_loss is the one before fitting.
"""

from __future__ import annotations

from pgrun.algos.base import (
    Algorithm,
    adam,
    explained_variance,
    normalize,
    set_lr,
    step,
    valid_arrays,
)
from pgrun.returns import gae, next_values
from pgrun.rollout import Batch


class VPG(Algorithm):
    def __init__(self, cfg, agent, num_envs):
        super().__init__(cfg, agent, num_envs)
        self.pi_opt = adam(agent, "policy", cfg.lr)
        self.v_opt = adam(agent, "value", cfg.vf_lr)

    def optimizers(self):
        return {"policy": self.pi_opt, "value": self.v_opt}

    def update(self, batch: Batch, progress: float) -> dict[str, float]:
        cfg = self.cfg
        lr = self.current_lr(progress)
        set_lr(self.pi_opt, lr)
        adv, ret = gae(batch.rewards, batch.values, next_values(batch.values, batch.last_value),
                       batch.terminated, batch.truncated, cfg.gamma, cfg.gae_lambda)
        d = valid_arrays(batch, obs=batch.obs, actions=batch.actions, logp=batch.logp,
                         values=batch.values, adv=adv, ret=ret)
        advantages = normalize(d["adv"]) if cfg.normalize_advantages else d["adv"]
        n = len(advantages)

        # L_π = −mean(log π · Â) − c_H mean(H):  ∂/∂log π = −Â/B, ∂/∂H = −c_H/B
        logp, entropy, _ = self.net.evaluate(d["obs"], d["actions"], with_value=False)
        policy_loss = -float((logp * advantages).mean())
        self.net.backward(-advantages / n, -cfg.ent_coef / n)
        grad_norm = step(self.pi_opt, cfg.max_grad_norm)

        # L_V = mean((V − R̂)²):  ∂/∂V = 2(V − R̂)/B
        value_losses = []
        for _ in range(cfg.vf_iters):
            err = self.net.value(d["obs"]) - d["ret"]
            value_losses.append(float((err * err).mean()))
            self.net.value_backward(2.0 * err / n)
            step(self.v_opt, cfg.max_grad_norm)

        new_logp, _, _ = self.net.evaluate(d["obs"], d["actions"], with_value=False)
        return {"policy_loss": policy_loss, "value_loss": value_losses[0],
                "entropy": float(entropy.mean()), "approx_kl": float((d["logp"] - new_logp).mean()),
                "grad_norm": grad_norm,
                "explained_variance": explained_variance(d["values"], d["ret"]), "lr": lr}
