"""GRPO (Shao et al. 2024) adapted from language models to control.

In language-model GRPO a prompt is answered G times and each answer's reward is
standardized within its group, so the group mean replaces a learned critic as the
baseline. Here a "prompt" is a reset seed: every update runs ``num_envs / group_size``
groups of ``group_size`` episodes, all episodes of a group starting from the same seed
(same initial state), and every step of episode i in group g gets the advantage

  Â_i = (R_i − mean_g R) / (std_g R + ε),   R_i = Σ_t γ^t r_t  (γ = 1 by default)

The policy then takes PPO's clipped-ratio steps over several epochs of shuffled
minibatches of those steps, optionally with GRPO's KL penalty towards a reference policy,
here the policy that collected the data (control has no separate reference model):

  L = L^CLIP − c_H E_t[H_t] + β E_t[π_old/π_θ − log(π_old/π_θ) − 1]

The penalty is the GRPO paper's k3 form. It is non-negative, zero at π_θ = π_old, and an
unbiased estimate of KL[π_θ‖π_old] only for actions drawn from π_θ; these are drawn from
π_old, so it equals that KL to second order near π_old rather than in expectation.
A group whose episodes all score the same carries no signal (Â = 0), as in GRPO.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from gymnasium.vector import AsyncVectorEnv, SyncVectorEnv

from pgrun.algos.base import Algorithm, Means, adam, entropy_term, mean, set_lr, step
from pgrun.algos.ppo import clipped_surrogate, ratio_stats
from pgrun.config import ConfigError
from pgrun.returns import reward_to_go
from pgrun.rollout import Batch, Collector


@dataclass
class GRPOConfig:
    """Group relative policy optimization adapted to control: critic-free, groups of
    episodes from one reset seed, advantages standardized within each group."""

    name: str = "grpo"
    group_size: int = 8
    lr: float = 1e-3
    anneal_lr: bool = True
    gamma: float = 1.0
    num_epochs: int = 4
    num_minibatches: int = 4
    clip_eps: float = 0.2
    kl_coef: float = 0.0
    ent_coef: float = 0.0
    max_grad_norm: float | None = 0.5
    adam_eps: float = 1e-5


def group_advantages(returns: np.ndarray, group_size: int, eps: float = 1e-8) -> np.ndarray:
    """Each episode's return standardized within its group of ``group_size`` consecutive
    episodes (population std, as in GRPO)."""
    groups = returns.reshape(-1, group_size)
    adv = (groups - groups.mean(axis=1, keepdims=True)) / (groups.std(axis=1, keepdims=True) + eps)
    return adv.reshape(-1)


def kl_penalty(logp: torch.Tensor, ref_logp: torch.Tensor,
               w: torch.Tensor | None = None) -> torch.Tensor:
    """GRPO's k3 penalty E[π_ref/π_θ − log(π_ref/π_θ) − 1] (module docstring)."""
    x = ref_logp - logp
    return mean(x.exp() - x - 1.0, w)


class GRPO(Algorithm):
    name = "grpo"
    Config = GRPOConfig
    uses_value = False
    seed_batched = True

    def __init__(self, cfg, policy, num_envs, device="cpu", generators=None):
        super().__init__(cfg, policy, num_envs, device, generators)
        self.opt = adam(policy, "policy", self.cfg.lr, self.cfg.adam_eps)

    def optimizers(self):
        return {"policy": self.opt}

    @classmethod
    def check(cls, cfg, env_cfg):
        if cfg.group_size < 2 or env_cfg.num_envs % cfg.group_size:
            return [f"env.num_envs={env_cfg.num_envs!r}: must be a multiple of "
                    f"algo.group_size={cfg.group_size} ≥ 2 (each update runs num_envs / "
                    "group_size groups of group_size episodes in parallel)"]
        return []

    def episodes(self, collector: Collector):
        """One episode per env; env k belongs to group k // group_size and starts from
        that group's seed (drawn from the collector's generator, so runs reproduce)."""
        if not isinstance(collector.envs, SyncVectorEnv | AsyncVectorEnv):
            raise ConfigError(
                f"algo=grpo resets each env with its group's seed, which "
                f"{type(collector.envs).__name__} does not support: set env.vectorization=sync "
                "(or async).")
        groups = self.num_envs // self.cfg.group_size
        group_seeds = collector.rng.integers(0, 2**31 - 1, size=groups)
        return 1, [int(s) for s in np.repeat(group_seeds, self.cfg.group_size)]

    def step_advantages(self, batch: Batch) -> np.ndarray:
        """T×N: every step of an episode carries its episode's group advantage."""
        # one episode per env, each from a reset at row 0: its return is G_0 = rtg[0]
        episode_return = reward_to_go(batch.rewards, batch.dones, self.cfg.gamma)[0]
        adv_per_env = group_advantages(episode_return, self.cfg.group_size)
        return np.broadcast_to(adv_per_env, batch.rewards.shape).astype(np.float32)

    def update(self, batch: Batch | list[Batch], progress: float) -> dict:
        cfg = self.cfg
        lr = self.current_lr(progress)
        set_lr(self.opt, lr)
        d = self.samples(batch, lambda b: dict(obs=b.obs, actions=b.actions, logp=b.logp,
                                                adv=self.step_advantages(b)))
        stats = Means()
        active = self.active_seeds(d)
        for mb in d.minibatches(cfg.num_epochs, cfg.num_minibatches):
            dist, _ = self.policy(mb["obs"])
            logp, old_logp, w = dist.log_prob(mb["actions"]), mb["logp"], mb.w
            pg_loss = clipped_surrogate(logp, old_logp, mb["adv"], cfg.clip_eps, w)
            entropy = entropy_term(dist, cfg.ent_coef, w)
            loss = pg_loss - cfg.ent_coef * entropy
            if cfg.kl_coef:
                loss = loss + cfg.kl_coef * kl_penalty(logp, old_logp, w)
            _, clip_frac = ratio_stats(logp, old_logp, cfg.clip_eps, w)
            grad_norm = step(self.opt, loss, cfg.max_grad_norm, active)
            stats.add(active, policy_loss=pg_loss, entropy=entropy, grad_norm=grad_norm,
                      clip_frac=clip_frac)
        return stats.means() | {
            "lr": lr, "approx_kl": self.final_kl(d["obs"], d["actions"], d["logp"], d.w)}
