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

from dataclasses import dataclass

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
from pgrun.rollout import Batch


@dataclass
class PPOConfig:
    """Proximal policy optimization with the clipped surrogate."""

    name: str = "ppo"
    lr: float = 2.5e-4
    anneal_lr: bool = True
    num_steps: int = 128
    num_epochs: int = 4
    num_minibatches: int = 4
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_eps: float = 0.2
    anneal_clip: bool = False
    clip_vloss: bool = False
    normalize_advantages: bool = True
    ent_coef: float = 0.0
    vf_coef: float = 0.5
    max_grad_norm: float | None = 0.5
    target_kl: float | None = None
    adam_eps: float = 1e-5


def clipped_surrogate(logp: torch.Tensor, old_logp: torch.Tensor, adv: torch.Tensor,
                      clip_eps: float, w: torch.Tensor | None = None) -> torch.Tensor:
    """L^CLIP = −E[min(r Â, clip(r, 1−ε, 1+ε) Â)],  r = exp(log π_θ − log π_old)   (eq. 7)"""
    ratio = (logp - old_logp).exp()
    return -mean(torch.min(ratio * adv, ratio.clamp(1.0 - clip_eps, 1.0 + clip_eps) * adv), w)


@torch.no_grad()
def ratio_stats(logp: torch.Tensor, old_logp: torch.Tensor, clip_eps: float,
                w: torch.Tensor | None = None):
    """(approx_kl, clip_frac): ``base.approx_kl`` and the fraction of samples whose ratio
    lies outside [1 − ε, 1 + ε], from one ratio (floats, or per seed with ``w``)."""
    log_ratio = logp - old_logp
    ratio_m1 = log_ratio.exp() - 1.0
    return (figure(mean(ratio_m1 - log_ratio, w)),
            figure(mean((ratio_m1.abs() > clip_eps).float(), w)))


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor,
               clip_eps: float | None, w: torch.Tensor | None = None) -> torch.Tensor:
    """L^V = ½ E[(V − R̂)²]; with ``clip_eps``
    ½ E[max((V − R̂)², (V_old + clip(V − V_old, −ε, ε) − R̂)²)]."""
    unclipped = (values - returns).pow(2)
    if clip_eps is None:
        return 0.5 * mean(unclipped, w)
    clipped = (old_values + (values - old_values).clamp(-clip_eps, clip_eps) - returns).pow(2)
    return 0.5 * mean(torch.max(unclipped, clipped), w)


class PPO(Algorithm):
    name = "ppo"
    Config = PPOConfig
    columns = ("clip_eps",)
    seed_batched = True

    def __init__(self, cfg, policy, num_envs, device="cpu", generators=None):
        super().__init__(cfg, policy, num_envs, device, generators)
        self.opt = adam(policy, "all", self.cfg.lr, self.cfg.adam_eps)

    def optimizers(self):
        return {"agent": self.opt}

    @classmethod
    def check(cls, cfg, env_cfg):
        return minibatch_problems(cfg, env_cfg)

    def update(self, batch: Batch | list[Batch], progress: float) -> dict:
        cfg = self.cfg
        lr = self.current_lr(progress)
        set_lr(self.opt, lr)
        clip_eps = cfg.clip_eps * (1.0 - progress) if cfg.anneal_clip else cfg.clip_eps
        eps = seed_column(clip_eps, self.device)  # K seeds: each its own, K × 1
        d = self.gae_tensors(batch)
        stats = Means()
        active = self.active_seeds(d)  # K seeds: which take steps (per-seed early stop)
        for mb in d.minibatches(cfg.num_epochs, cfg.num_minibatches):
            dist, values = self.policy(mb["obs"])
            logp, old_logp, w = dist.log_prob(mb["actions"]), mb["logp"], mb.w
            kl, clip_frac = ratio_stats(logp, old_logp, eps, w)   # before the step
            if cfg.target_kl is not None:
                too_far = kl > 1.5 * cfg.target_kl
                if active is None and too_far:
                    break
                if active is not None:
                    active &= ~too_far
                    if not active.any():
                        break
            adv = normalize(mb["adv"], w) if cfg.normalize_advantages else mb["adv"]
            pg_loss = clipped_surrogate(logp, old_logp, adv, eps, w)
            v_loss = value_loss(values, mb["values"], mb["ret"],
                                eps if cfg.clip_vloss else None, w)
            entropy = entropy_term(dist, cfg.ent_coef, w)
            loss = pg_loss - cfg.ent_coef * entropy + cfg.vf_coef * v_loss   # eq. 9
            grad_norm = step(self.opt, loss, cfg.max_grad_norm, active)
            stats.add(active, policy_loss=pg_loss, value_loss=v_loss, entropy=entropy,
                      grad_norm=grad_norm, clip_frac=clip_frac)
        return stats.means() | {
            "lr": lr, "clip_eps": clip_eps,
            "approx_kl": self.final_kl(d["obs"], d["actions"], d["logp"], d.w),
            "explained_variance": explained_variance(d["values"], d["ret"], d.w)}
