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

import torch

from pgrun.algos.base import Algorithm, adam, explained_variance, normalize, step
from pgrun.flat import flat_parameters
from pgrun.policies import parameters_by_role, policy_value
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
    max_grad_norm: float | None = None  # of the value steps


def conjugate_gradient(fvp, g: torch.Tensor, iters: int, tol: float = 1e-10) -> torch.Tensor:
    """x ≈ F⁻¹g by conjugate gradients, F given by its products ``fvp(v)`` = Fv."""
    x = torch.zeros_like(g)
    r, p = g.clone(), g.clone()
    rr = r @ r
    for _ in range(iters):
        fp = fvp(p)
        alpha = rr / (p @ fp)
        x += alpha * p
        r -= alpha * fp
        rr_new = r @ r
        if rr_new < tol:
            break
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x


class TRPO(Algorithm):
    name = "trpo"
    Config = TRPOConfig
    second_order = True  # Fisher-vector products differentiate the KL twice
    columns = ("kl", "step_frac")

    def __init__(self, cfg, policy, num_envs, device="cpu"):
        super().__init__(cfg, policy, num_envs, device)
        self.pi_params = parameters_by_role(policy, "policy")
        flat = flat_parameters(policy)
        self.theta = flat.data[flat.slices["policy"]]  # the policy's parameters, one vector
        self.v_opt = adam(policy, "value", self.cfg.vf_lr)

    def optimizers(self):
        return {"value": self.v_opt}

    def flat_grad(self, y: torch.Tensor, create_graph: bool = False,
                  retain_graph: bool | None = None) -> torch.Tensor:
        """∂y/∂θ of the policy's parameters as one vector."""
        grads = torch.autograd.grad(y, self.pi_params, create_graph=create_graph,
                                    retain_graph=retain_graph)
        return torch.cat([g.reshape(-1) for g in grads])

    def fisher_product(self, obs: torch.Tensor, old_dist):
        """v ↦ Fv = ∇(∇D̄_KL · v) + λv at the current θ, D̄_KL = E_s[KL[π_old‖π_θ]]."""
        grad_kl = self.flat_grad(old_dist.kl(self.policy(obs)[0]).mean(), create_graph=True)

        def fvp(v: torch.Tensor) -> torch.Tensor:
            return self.flat_grad(grad_kl @ v, retain_graph=True).detach() + self.cfg.cg_damping * v
        return fvp

    def update(self, batch: Batch, progress: float) -> dict[str, float]:
        cfg = self.cfg
        d = self.gae_tensors(batch)
        advantages = normalize(d["adv"]) if cfg.normalize_advantages else d["adv"]
        obs, actions, old_logp = d["obs"], d["actions"], d["logp"]

        def surrogate_and_kl(old_dist=None):
            dist = self.policy(obs)[0]
            surrogate = ((dist.log_prob(actions) - old_logp).exp() * advantages).mean()
            kl = old_dist.kl(dist).mean() if old_dist is not None else None
            return surrogate, kl, dist

        surrogate, _, dist = surrogate_and_kl()
        old_dist = dist.detach()
        g = self.flat_grad(surrogate)
        fvp = self.fisher_product(obs, old_dist)
        x = conjugate_gradient(fvp, g, cfg.cg_iters)
        full_step = (2.0 * cfg.max_kl / max(float(x @ fvp(x)), 1e-12)) ** 0.5 * x
        old_theta = self.theta.detach().clone()
        old_surrogate = float(surrogate.detach())
        step_frac, kl_value = 0.0, 0.0
        with torch.no_grad():
            for j in range(cfg.backtrack_iters):
                frac = cfg.backtrack_coef ** j
                self.theta.copy_(old_theta + frac * full_step)
                new_surrogate, kl, _ = surrogate_and_kl(old_dist)
                if float(kl) <= cfg.max_kl and float(new_surrogate) >= old_surrogate:
                    step_frac, kl_value = frac, float(kl)
                    break
            else:
                self.theta.copy_(old_theta)

        value_losses = []
        for _ in range(cfg.vf_iters):
            v_loss = (policy_value(self.policy, obs) - d["ret"]).pow(2).mean()
            value_losses.append(v_loss.item())
            step(self.v_opt, v_loss, cfg.max_grad_norm)

        with torch.no_grad():
            entropy = float(self.policy(obs)[0].entropy().mean())
        return {"policy_loss": -old_surrogate, "value_loss": value_losses[0],
                "entropy": entropy, "kl": kl_value, "step_frac": step_frac,
                "grad_norm": float(g.norm()),
                "approx_kl": self.final_kl(obs, actions, old_logp),
                "explained_variance": explained_variance(d["values"], d["ret"])}
