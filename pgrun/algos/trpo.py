"""Trust region policy optimization (Schulman et al. 2015), as in Spinning Up.

The policy step solves

  max_θ  L(θ) = E_t[ π_θ(a_t|s_t) / π_old(a_t|s_t) · Â_t ]
  s.t.   D̄_KL(θ) = E_t[ KL[π_old(·|s_t) ‖ π_θ(·|s_t)] ] ≤ δ

by the natural gradient: with g = ∇L(θ_old) and F the Fisher matrix (the Hessian of D̄_KL
at θ_old), x ≈ F⁻¹g by ``cg_iters`` conjugate-gradient steps on Fisher-vector products
Fv = ∇(∇D̄_KL · v) + λv (autograd twice; λ = ``cg_damping``), the full step
Δ = √(2δ / xᵀFx) x, then a backtracking line search θ = θ_old + αʲΔ (α = ``backtrack_coef``,
j < ``backtrack_iters``) keeping the first step with D̄_KL ≤ δ and L(θ) ≥ L(θ_old); if none
qualifies the policy is left unchanged. The value function takes ``vf_iters`` steps of its
own Adam on E_t[(V_φ(s_t) − R̂_t)²] (Â, R̂ by GAE(λ)).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from pgrun.algos.base import (
    Algorithm,
    adam,
    explained_variance,
    figure,
    mean,
    minibatch_problems,
    normalize,
    scalar,
)
from pgrun.flat import flat_parameters
from pgrun.policies import parameters_by_role
from pgrun.rollout import Batch


@dataclass
class TRPOConfig:
    """Natural policy gradient with a KL trust region and a line search."""

    name: str = "trpo"
    num_steps: int = 256
    gamma: float = 0.99
    gae_lambda: float = 0.97
    max_kl: float = 0.01  # δ
    cg_iters: int = 10
    cg_damping: float = 0.1
    backtrack_iters: int = 10
    backtrack_coef: float = 0.8
    normalize_advantages: bool = True
    vf_lr: float = 1e-3
    vf_iters: int = 80
    vf_minibatches: int = 1  # > 1: vf_iters epochs of that many minibatches
    max_grad_norm: float | None = None  # of the value steps


def dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """aᵀb of two vectors, or row by row of two K × n stacks (one per seed)."""
    return a @ b if a.dim() == 1 else (a * b).sum(-1)


def conjugate_gradient(fvp, g: torch.Tensor, iters: int, tol: float = 1e-10) -> torch.Tensor:
    """x ≈ F⁻¹g by conjugate gradients, F given by its products ``fvp(v)`` = Fv; for K
    seeds' rows (K × n) each row is solved on its own, and stops where its residual
    rᵀr < tol, as alone."""
    x = torch.zeros_like(g)
    r, p = g.clone(), g.clone()
    rr = dot(r, r)
    done = torch.zeros_like(rr, dtype=torch.bool)
    for _ in range(iters):
        fp = fvp(p)
        alpha = torch.where(done, 0.0, rr / dot(p, fp)).unsqueeze(-1)
        x += alpha * p
        r -= alpha * fp
        rr_new = torch.where(done, rr, dot(r, r))
        done = done | (rr_new < tol)
        if done.all():
            break
        p = torch.where(done.unsqueeze(-1), 0.0, r + (rr_new / rr).unsqueeze(-1) * p)
        rr = rr_new
    return x


def to_numpy(x: torch.Tensor) -> np.ndarray:
    """A figure (0-d) or K seeds' figures as float64 NumPy, for exact comparisons."""
    return x.detach().double().cpu().numpy()


class TRPO(Algorithm):
    name = "trpo"
    Config = TRPOConfig
    second_order = True  # Fisher-vector products differentiate the KL twice
    seed_batched = True
    columns = ("kl", "step_frac")

    def __init__(self, cfg, policy, num_envs, device="cpu", generators=None):
        super().__init__(cfg, policy, num_envs, device, generators)
        self.pi_params = parameters_by_role(policy, "policy")
        flat = flat_parameters(policy)
        # the policy's parameters, one vector (a K × n stack for K seeds)
        self.theta = flat.data[..., flat.slices["policy"]]
        self.v_opt = adam(policy, "value", self.cfg.vf_lr)

    def optimizers(self):
        return {"value": self.v_opt}

    @classmethod
    def check(cls, cfg, env_cfg):
        return minibatch_problems(cfg, env_cfg, "vf_minibatches")

    def flat_grad(self, y: torch.Tensor, create_graph: bool = False,
                  retain_graph: bool | None = None) -> torch.Tensor:
        """∂y/∂θ of the policy's parameters as one vector (K × n for K seeds)."""
        grads = torch.autograd.grad(y, self.pi_params, create_graph=create_graph,
                                    retain_graph=retain_graph)
        lead = self.theta.shape[:-1]
        return torch.cat([g.reshape(*lead, -1) for g in grads], dim=-1)

    def fisher_product(self, obs: torch.Tensor, old_dist, w: torch.Tensor | None = None):
        """v ↦ Fv = ∇(∇D̄_KL · v) + λv at the current θ, D̄_KL = E_s[KL[π_old‖π_θ]]."""
        kl = mean(old_dist.kl(self.policy(obs)[0]), w)
        grad_kl = self.flat_grad(scalar(kl), create_graph=True)

        def fvp(v: torch.Tensor) -> torch.Tensor:
            return self.flat_grad(scalar(dot(grad_kl, v)), retain_graph=True).detach() \
                + self.cfg.cg_damping * v
        return fvp

    def full_step(self, x: torch.Tensor, fx: torch.Tensor) -> torch.Tensor:
        """Δ = √(2δ / xᵀFx) x, the step to the trust region's boundary."""
        scales = [(2.0 * self.cfg.max_kl / max(float(v), 1e-12)) ** 0.5
                  for v in dot(x, fx).reshape(-1)]
        if x.dim() == 1:
            return scales[0] * x
        return torch.tensor(scales, dtype=x.dtype, device=x.device).unsqueeze(-1) * x

    def set_theta(self, rows: np.ndarray, value: torch.Tensor) -> None:
        """θ ← value where ``rows`` (all of it for one run, 0-d ``rows``)."""
        if not rows.any():
            return
        if self.theta.dim() == 1:
            self.theta.copy_(value)
        else:
            idx = torch.from_numpy(np.flatnonzero(rows)).to(self.theta.device)
            self.theta[idx] = value[idx]

    def update(self, batch: Batch | list[Batch], progress: float) -> dict:
        cfg = self.cfg
        d = self.gae_tensors(batch)
        w, active = d.w, self.active_seeds(d)
        advantages = normalize(d["adv"], w) if cfg.normalize_advantages else d["adv"]
        obs, actions, old_logp = d["obs"], d["actions"], d["logp"]

        def surrogate_and_kl(old_dist=None):
            dist = self.policy(obs)[0]
            surrogate = mean((dist.log_prob(actions) - old_logp).exp() * advantages, w)
            kl = mean(old_dist.kl(dist), w) if old_dist is not None else None
            return surrogate, kl, dist

        surrogate, _, dist = surrogate_and_kl()
        old_dist = dist.detach()
        g = self.flat_grad(scalar(surrogate))
        fvp = self.fisher_product(obs, old_dist, w)
        x = conjugate_gradient(fvp, g, cfg.cg_iters)
        full_step = self.full_step(x, fvp(x))

        # backtracking line search, per seed: the first αʲ with D̄_KL ≤ δ and L ≥ L_old
        old_theta = self.theta.detach().clone()
        old_surrogate = to_numpy(surrogate)
        pending = np.ones((), dtype=bool) if active is None else active.copy()
        step_frac, kl_value = np.zeros(pending.shape), np.zeros(pending.shape)
        with torch.no_grad():
            for j in range(cfg.backtrack_iters):
                frac = cfg.backtrack_coef ** j
                self.set_theta(pending, old_theta + frac * full_step)
                new_surrogate, kl, _ = surrogate_and_kl(old_dist)
                kl = to_numpy(kl)
                accept = pending & (kl <= cfg.max_kl) & (to_numpy(new_surrogate) >= old_surrogate)
                step_frac[accept], kl_value[accept] = frac, kl[accept]
                pending &= ~accept
                if not pending.any():
                    break
            self.set_theta(pending, old_theta)  # no step qualified: unchanged

        first_v_loss = self.fit_value(d, self.v_opt, active)

        with torch.no_grad():
            entropy = figure(mean(self.policy(obs)[0].entropy(), w))
        plain = float if pending.ndim == 0 else np.asarray
        return {"policy_loss": figure(-surrogate), "value_loss": first_v_loss,
                "entropy": entropy, "kl": plain(kl_value), "step_frac": plain(step_frac),
                "grad_norm": figure(g.norm(dim=-1)),
                "approx_kl": self.final_kl(obs, actions, old_logp, w),
                "explained_variance": explained_variance(d["values"], d["ret"], w)}
