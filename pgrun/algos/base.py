"""What every algorithm shares: the interface the training loop calls, and batch helpers.

Adding an algorithm is one module here and one YAML in ``conf/algo/``: a subclass of
``Algorithm`` that names itself (``name``), declares its hyperparameters (``Config``, a
dataclass: the config schema, ``--help`` and range checks derive from it), the extra
metrics.csv columns it reports (``columns``), and any state a checkpoint must keep
(``state_dict``); then ``update`` turns a batch into losses written in torch and takes
``torch.optim`` steps on autograd's gradients. Register it in ``algos/__init__.py``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from pgrun.flat import flat_parameters
from pgrun.metrics import STAT_COLUMNS
from pgrun.policies import parameters_by_role
from pgrun.returns import batch_gae
from pgrun.rollout import Batch, Collector


class Algorithm:
    """Turns a rollout batch into losses and takes optimizer steps.

    Subclasses set ``name``, ``Config``, ``uses_value`` (whether the policy gets a value
    head), ``columns`` (metrics beyond ``metrics.STAT_COLUMNS``), ``second_order`` (the loss is
    differentiated twice, e.g. TRPO's Fisher-vector products), and implement ``update``
    (and ``collect`` when a batch is not ``num_steps`` steps of every env).
    """

    name: ClassVar[str]
    Config: ClassVar[type]
    uses_value: ClassVar[bool] = True
    second_order: ClassVar[bool] = False
    columns: ClassVar[tuple[str, ...]] = ()

    def __init__(self, cfg, policy: nn.Module, num_envs: int, device: torch.device | str = "cpu"):
        # the typed dataclass, not the DictConfig: attribute access in the update loop
        # would otherwise cost more than some of its tensor ops
        self.cfg = OmegaConf.to_object(cfg) if isinstance(cfg, DictConfig) else cfg
        self.policy = policy
        self.num_envs = num_envs
        self.device = torch.device(device)

    # -- what subclasses provide
    def collect(self, collector: Collector) -> Batch:
        return collector.collect_steps(self.cfg.num_steps)

    def update(self, batch: Batch, progress: float) -> dict[str, float]:
        """One update from ``batch``; ``progress`` ∈ [0, 1) is the fraction of the step
        budget already used (for annealing). Returns metrics.csv figures: keys from
        ``metrics.STAT_COLUMNS`` and ``columns``."""
        raise NotImplementedError

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """State beyond the optimizers that a resumed run needs (e.g. PPO-KL's β)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    @classmethod
    def check(cls, cfg, env_cfg) -> list[str]:
        """Problems with this algorithm's settings that the generic range checks in
        ``config.validate`` cannot see (e.g. a count that must divide env.num_envs)."""
        return []

    # -- helpers
    @classmethod
    def stat_keys(cls) -> tuple[str, ...]:
        """What ``update`` may report: ``metrics.STAT_COLUMNS`` and ``columns``."""
        return STAT_COLUMNS + cls.columns

    def current_lr(self, progress: float) -> float:
        """Linear annealing to 0 over the step budget when ``anneal_lr`` is set."""
        return self.cfg.lr * (1.0 - progress) if self.cfg.anneal_lr else self.cfg.lr

    def tensors(self, batch: Batch, **arrays: np.ndarray) -> dict[str, torch.Tensor]:
        """The valid steps of each T×N(×…) array as one flat batch dimension, as tensors
        on the algorithm's device."""
        mask = batch.valid
        return {name: torch.from_numpy(np.ascontiguousarray(arr[mask])).to(self.device)
                for name, arr in arrays.items()}

    def gae_tensors(self, batch: Batch) -> dict[str, torch.Tensor]:
        """``tensors`` of a critic's batch: obs, actions, logp, values and GAE(λ)'s
        advantages ``adv`` and returns ``ret`` (``returns.batch_gae``; ``cfg.gamma``,
        ``cfg.gae_lambda``)."""
        adv, ret = batch_gae(batch, self.cfg.gamma, self.cfg.gae_lambda)
        return self.tensors(batch, obs=batch.obs, actions=batch.actions, logp=batch.logp,
                            values=batch.values, adv=adv, ret=ret)

    @torch.no_grad()
    def final_kl(self, obs: torch.Tensor, actions: torch.Tensor, old_logp: torch.Tensor) -> float:
        """metrics.csv's ``approx_kl`` for every algorithm: KL[π_old‖π_θ] of the policy
        after the update, estimated on the batch (``approx_kl``)."""
        dist, _ = self.policy(obs)
        return float(approx_kl(dist.log_prob(actions), old_logp))


def minibatch_problems(cfg, env_cfg) -> list[str]:
    """``num_minibatches`` must not exceed the batch of ``num_steps × num_envs`` samples."""
    batch = cfg.num_steps * env_cfg.num_envs
    if cfg.num_minibatches <= batch:
        return []
    return [f"algo.num_minibatches={cfg.num_minibatches!r}: must be ≤ the batch, "
            f"algo.num_steps × env.num_envs = {batch} (each minibatch needs at least one "
            "sample; minibatches of one are also far too slow)"]


def approx_kl(logp: torch.Tensor, old_logp: torch.Tensor) -> torch.Tensor:
    """E[(r − 1) − log r], r = π_θ(a|s)/π_old(a|s), a ~ π_old: Schulman's k3 estimator of
    KL[π_old‖π_θ] — unbiased and non-negative."""
    log_ratio = logp - old_logp
    return (log_ratio.exp() - 1.0 - log_ratio).mean()


def entropy_term(dist, coef: float) -> torch.Tensor:
    """E[H[π(·|s)]] for the loss; with a zero coefficient it is only reported, so it is
    computed without a gradient (the same loss gradient, less autograd work)."""
    if coef:
        return dist.entropy().mean()
    with torch.no_grad():
        return dist.entropy().mean()


def minibatches(size: int, num_epochs: int, num_minibatches: int, device=None):
    """Index sets for ``num_epochs`` shuffled passes over ``size`` samples, each pass split
    into ``num_minibatches`` near-equal parts (empty parts, from fewer samples than
    minibatches, are skipped). Shuffles come from torch's generator (seeded, checkpointed)."""
    for _epoch in range(num_epochs):
        for idx in torch.randperm(size).tensor_split(num_minibatches):
            if len(idx):
                yield idx if device is None else idx.to(device)


class Means:
    """Running means of per-minibatch figures for metrics.csv."""

    def __init__(self):
        self.sums: dict[str, float] = {}
        self.count = 0

    def add(self, **figures) -> None:
        for key, value in figures.items():
            self.sums[key] = self.sums.get(key, 0.0) + float(value)
        self.count += 1

    def means(self) -> dict[str, float]:
        """Each figure's mean (nan before the first ``add``) and ``grad_steps``."""
        return {k: total / self.count if self.count else float("nan")
                for k, total in self.sums.items()} | {"grad_steps": self.count}


def normalize(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(x − mean) / (std + eps) with the sample (n − 1) std; left as is for fewer than two
    samples."""
    if x.numel() < 2:
        return x
    return (x - x.mean()) / (x.std() + eps)


def adam(policy: nn.Module, role: str, lr: float, eps: float = 1e-8) -> torch.optim.Adam:
    """``torch.optim.Adam`` over the ``policy``, ``value`` or ``all`` parameters of
    ``policy`` as one flat tensor (``flat.FlatParameters``; fused where torch has it)."""
    parameters_by_role(policy, role)  # a clear error where the module has no such role
    param = flat_parameters(policy).parameter(role)
    try:
        return torch.optim.Adam([param], lr=lr, eps=eps, fused=True)
    except (RuntimeError, TypeError):  # no fused Adam for this device or torch version
        return torch.optim.Adam([param], lr=lr, eps=eps)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def step(optimizer: torch.optim.Optimizer, loss: torch.Tensor, max_grad_norm: float | None) -> float:
    """∇loss by autograd, optional global gradient-norm clipping, then the optimizer's step
    on an ``adam``'s flat parameter; returns the norm before clipping (nan when not
    clipping). Clipping scales g by max_norm / (‖g‖ + 1e-6) when that is below 1, as
    ``torch.nn.utils.clip_grad_norm_`` does."""
    (param,) = optimizer.param_groups[0]["params"]
    param.grad.zero_()
    loss.backward()
    norm = float("nan")
    if max_grad_norm is not None:
        norm = float(param.grad.norm())
        scale = max_grad_norm / (norm + 1e-6)
        if scale < 1.0:
            param.grad.mul_(scale)
    optimizer.step()
    return norm


def explained_variance(values: torch.Tensor, returns: torch.Tensor) -> float:
    """1 − Var[returns − values] / Var[returns]: 1 is a perfect critic, ≤ 0 no better than
    a constant (nan when the returns do not vary)."""
    var = float(returns.var(unbiased=False))
    return float("nan") if var == 0 else 1.0 - float((returns - values).var(unbiased=False)) / var
