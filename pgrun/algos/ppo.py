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

import numpy as np

from pgrun.algos.base import (
    Algorithm,
    Means,
    adam,
    explained_variance,
    minibatches,
    normalize,
    set_lr,
    step,
    valid_arrays,
)
from pgrun.returns import gae, next_values
from pgrun.rollout import Batch


def clipped_surrogate(logp: np.ndarray, old_logp: np.ndarray, adv: np.ndarray,
                      clip_eps: float) -> tuple[float, np.ndarray, dict[str, float]]:
    """(L^CLIP, ∂L^CLIP/∂log π, diagnostics): approx_kl = E[(r − 1) − log r] (Schulman's k3
    estimator of KL[π_old‖π_θ]) and clip_frac = fraction of samples with |r − 1| > ε.

    Per sample the loss is max(−Â r, −Â clip(r, 1±ε)) / B, and ∂r/∂log π = r: the
    derivative is −Â r / B where the unclipped term is the larger (or they tie, inside the
    range) and 0 where the clipped, constant term is."""
    log_ratio = logp - old_logp
    ratio = np.exp(log_ratio)
    unclipped = -adv * ratio
    clipped = -adv * np.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps)
    n = len(logp)
    loss = float(np.add.reduce(np.maximum(unclipped, clipped))) / n
    dlogp = np.where(unclipped >= clipped, unclipped / n, np.float32(0.0))
    ratio -= 1.0  # r − 1
    info = {"approx_kl": float(np.add.reduce(ratio - log_ratio)) / n,
            "clip_frac": np.count_nonzero(np.abs(ratio) > clip_eps) / n}
    return loss, dlogp, info


def value_loss(values: np.ndarray, old_values: np.ndarray, returns: np.ndarray,
               clip_eps: float | None) -> tuple[float, np.ndarray]:
    """(L^V, ∂L^V/∂V): ½ E[(V − R̂)²], ∂ = (V − R̂)/B; or with clip_eps
    ½ E[max((V − R̂)², (V_old + clip(V − V_old, ±ε) − R̂)²)], whose derivative is (V − R̂)/B
    where the unclipped term is the larger (or they tie) and 0 where the clipped one is."""
    n = len(values)
    err = values - returns
    unclipped = err * err
    if clip_eps is None:
        return 0.5 * float(np.add.reduce(unclipped)) / n, err / n
    clipped = old_values + np.clip(values - old_values, -clip_eps, clip_eps) - returns
    clipped *= clipped
    loss = 0.5 * float(np.add.reduce(np.maximum(unclipped, clipped))) / n
    return loss, np.where(unclipped >= clipped, err / n, np.float32(0.0))


class PPO(Algorithm):
    def __init__(self, cfg, agent, num_envs):
        super().__init__(cfg, agent, num_envs)
        self.opt = adam(agent, "all", cfg.lr, cfg.adam_eps)

    def optimizers(self):
        return {"agent": self.opt}

    def update(self, batch: Batch, progress: float) -> dict[str, float]:
        cfg = self.cfg
        lr = self.current_lr(progress)
        set_lr(self.opt, lr)
        clip_eps = cfg.clip_eps * (1.0 - progress) if cfg.anneal_clip else cfg.clip_eps
        adv, ret = gae(batch.rewards, batch.values, next_values(batch.values, batch.last_value),
                       batch.terminated, batch.truncated, cfg.gamma, cfg.gae_lambda)
        d = valid_arrays(batch, obs=batch.obs, actions=batch.actions, logp=batch.logp,
                         values=batch.values, adv=adv, ret=ret)
        stats = Means()
        for idx in minibatches(len(d["adv"]), cfg.num_epochs, cfg.num_minibatches):
            logp, entropy, values = self.net.evaluate(d["obs"][idx], d["actions"][idx])
            mb_adv = normalize(d["adv"][idx]) if cfg.normalize_advantages else d["adv"][idx]
            pg_loss, dlogp, info = clipped_surrogate(logp, d["logp"][idx], mb_adv, clip_eps)
            if cfg.target_kl is not None and info["approx_kl"] > 1.5 * cfg.target_kl:
                break
            v_loss, dvalues = value_loss(values, d["values"][idx], d["ret"][idx],
                                         clip_eps if cfg.clip_vloss else None)
            # L = L^CLIP − c_H mean(H) + c_V L^V
            self.net.backward(dlogp, -cfg.ent_coef / len(idx), cfg.vf_coef * dvalues)
            grad_norm = step(self.opt, cfg.max_grad_norm)
            stats.add(policy_loss=pg_loss, value_loss=v_loss, entropy=np.add.reduce(entropy) / len(idx),
                      grad_norm=grad_norm, **info)
        out = stats.means()
        out.update(lr=lr, clip_eps=clip_eps,
                   explained_variance=explained_variance(d["values"], d["ret"]))
        return out
