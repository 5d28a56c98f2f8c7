"""Proximal policy optimization (Schulman et al. 2017) with the clipped surrogate.

For each of ``num_epochs`` passes over the batch in shuffled minibatches:

  r_t(θ)  = π_θ(a_t|s_t) / π_old(a_t|s_t)
  L^CLIP  = −E_t[ min( r_t Â_t, clip(r_t, 1−ε, 1+ε) Â_t ) ]                    (eq. 7)
  L^V     = ½ E_t[(V_θ(s_t) − R̂_t)²]   (or the clipped form around V_old)
  L       = L^CLIP − c_H E_t[H_t] + c_V L^V                                     (eq. 9)

with Â the GAE(λ) advantage normalized per minibatch, one Adam (eps 1e-5) over all
parameters, global gradient-norm clipping, linear annealing of the learning rate (and
optionally ε), and an optional early stop of the update once the approximate KL of a
minibatch exceeds 1.5 × target_kl (that minibatch's step is not taken).
"""

from __future__ import annotations

import torch

from pgrun.algos.base import (
    Algorithm,
    Means,
    adam,
    explained_variance,
    minibatches,
    normalize,
    set_lr,
    step,
    valid_tensors,
)
from pgrun.returns import gae, next_values
from pgrun.rollout import Batch


def clipped_surrogate(logp: torch.Tensor, old_logp: torch.Tensor, adv: torch.Tensor,
                      clip_eps: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """L^CLIP and its diagnostics: approx_kl = E[(r − 1) − log r] (Schulman's k3
    estimator of KL[π_old‖π_θ]) and clip_frac = fraction of samples with |r − 1| > ε."""
    log_ratio = logp - old_logp
    ratio = log_ratio.exp()
    loss = torch.max(-adv * ratio, -adv * ratio.clamp(1.0 - clip_eps, 1.0 + clip_eps)).mean()
    with torch.no_grad():
        info = {
            "approx_kl": ((ratio - 1.0) - log_ratio).mean(),
            "clip_frac": ((ratio - 1.0).abs() > clip_eps).float().mean(),
        }
    return loss, info


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor,
               clip_eps: float | None) -> torch.Tensor:
    """½ E[(V − R̂)²], or with clip_eps ½ E[max((V − R̂)², (V_old + clip(V − V_old, ±ε) − R̂)²)]."""
    unclipped = (values - returns).pow(2)
    if clip_eps is None:
        return 0.5 * unclipped.mean()
    clipped = old_values + (values - old_values).clamp(-clip_eps, clip_eps)
    return 0.5 * torch.max(unclipped, (clipped - returns).pow(2)).mean()


class PPO(Algorithm):
    def __init__(self, cfg, agent, num_envs):
        super().__init__(cfg, agent, num_envs)
        self.params = list(agent.parameters())
        self.opt = adam(self.params, cfg.lr, cfg.adam_eps)

    def optimizers(self):
        return {"agent": self.opt}

    def update(self, batch: Batch, progress: float) -> dict[str, float]:
        cfg = self.cfg
        lr = self.current_lr(progress)
        set_lr(self.opt, lr)
        clip_eps = cfg.clip_eps * (1.0 - progress) if cfg.anneal_clip else cfg.clip_eps
        adv, ret = gae(batch.rewards, batch.values, next_values(batch.values, batch.last_value),
                       batch.terminated, batch.truncated, cfg.gamma, cfg.gae_lambda)
        d = valid_tensors(batch, obs=batch.obs, actions=batch.actions, logp=batch.logp,
                          values=batch.values, adv=adv, ret=ret)
        stats = Means()
        for idx in minibatches(len(d["adv"]), cfg.num_epochs, cfg.num_minibatches):
            logp, entropy, values = self.agent.evaluate(d["obs"][idx], d["actions"][idx])
            mb_adv = normalize(d["adv"][idx]) if cfg.normalize_advantages else d["adv"][idx]
            pg_loss, info = clipped_surrogate(logp, d["logp"][idx], mb_adv, clip_eps)
            if cfg.target_kl is not None and float(info["approx_kl"]) > 1.5 * cfg.target_kl:
                break
            v_loss = value_loss(values, d["values"][idx], d["ret"][idx],
                                clip_eps if cfg.clip_vloss else None)
            ent = entropy.mean()
            loss = pg_loss - cfg.ent_coef * ent + cfg.vf_coef * v_loss
            grad_norm = step(self.opt, loss, self.params, cfg.max_grad_norm)
            stats.add(policy_loss=pg_loss, value_loss=v_loss, entropy=ent, grad_norm=grad_norm,
                      **info)
        out = stats.means()
        out.update(lr=lr, clip_eps=clip_eps,
                   explained_variance=explained_variance(d["values"].numpy(), d["ret"].numpy()))
        return out
