"""What every algorithm shares: the interface the training loop calls, and batch helpers.

Adding an algorithm is one module here and one YAML in ``conf/algo/``: a subclass of
``Algorithm`` that names itself (``name``), declares its hyperparameters (``Config``, a
dataclass: the config schema, ``--help`` and range checks derive from it), the extra
metrics.csv columns it reports (``columns``), and any state a checkpoint must keep
(``state_dict``); then ``update`` turns a batch into losses written in torch and takes
``torch.optim`` steps on autograd's gradients. Register it in ``algos/__init__.py``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from pgrun.algos.samples import Samples, SeedSamples, minibatches  # noqa: F401 (re-exported)
from pgrun.flat import flat_parameters
from pgrun.metrics import STAT_COLUMNS
from pgrun.policies import parameters_by_role, policy_value
from pgrun.returns import batch_gae
from pgrun.rollout import Batch, Collector


class Algorithm:
    """Turns a rollout batch into losses and takes optimizer steps.

    Subclasses set ``name``, ``Config``, ``uses_value`` (whether the policy gets a value
    head), ``columns`` (metrics beyond ``metrics.STAT_COLUMNS``), ``second_order`` (the loss is
    differentiated twice, e.g. TRPO's Fisher-vector products), and implement ``update``
    (and ``episodes`` when a batch is whole episodes rather than ``num_steps`` steps).
    """

    name: ClassVar[str]
    Config: ClassVar[type]
    uses_value: ClassVar[bool] = True
    second_order: ClassVar[bool] = False
    columns: ClassVar[tuple[str, ...]] = ()

    seed_batched: ClassVar[bool] = False
    """``update`` also takes the K seeds' batches of a seed-stacked policy (``batched.py``)."""

    def __init__(self, cfg, policy: nn.Module, num_envs: int, device: torch.device | str = "cpu",
                 generators: list[torch.Generator] | None = None):
        # the typed dataclass, not the DictConfig: attribute access in the update loop
        # would otherwise cost more than some of its tensor ops
        self.cfg = OmegaConf.to_object(cfg) if isinstance(cfg, DictConfig) else cfg
        self.policy = policy
        self.num_envs = num_envs
        self.device = torch.device(device)
        self.generators = generators  # K seeds: each seed's own torch generator
        self.live: np.ndarray | None = None  # K seeds: which still train (batched.py)

    # -- what subclasses provide
    def episodes(self, collector: Collector) -> tuple[int, list[int] | None] | None:
        """How the next batch is cut: None for ``cfg.num_steps`` steps of every env, or
        (whole episodes per env, reset seeds or None) for ``Collector.collect_episodes``."""
        return None

    def collect(self, collector: Collector) -> Batch:
        plan = self.episodes(collector)
        if plan is None:
            return collector.collect_steps(self.cfg.num_steps)
        return collector.collect_episodes(*plan)

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
    def active_seeds(self, samples) -> np.ndarray | None:
        """For K seeds' samples, which seeds take optimizer steps (all that still train;
        an update may drop more, e.g. PPO's early stop); None for one run."""
        if not samples.seeds:
            return None
        return np.ones(samples.seeds, dtype=bool) if self.live is None else self.live.copy()

    @classmethod
    def stat_keys(cls) -> tuple[str, ...]:
        """What ``update`` may report: ``metrics.STAT_COLUMNS`` and ``columns``."""
        return STAT_COLUMNS + cls.columns

    def current_lr(self, progress):
        """Linear annealing to 0 over the step budget when ``anneal_lr`` is set (per seed
        for K seeds' progress, a NumPy array)."""
        return self.cfg.lr * (1.0 - progress) if self.cfg.anneal_lr else self.cfg.lr

    def tensors(self, batch: Batch, **arrays: np.ndarray) -> dict[str, torch.Tensor]:
        """The valid steps of each T×N(×…) array as one flat batch dimension, as tensors
        on the algorithm's device."""
        mask = batch.valid
        return {name: torch.from_numpy(np.ascontiguousarray(arr[mask])).to(self.device)
                for name, arr in arrays.items()}

    def samples(self, batch: Batch | list[Batch], arrays: Callable[[Batch], dict]) -> \
            Samples | SeedSamples:
        """The valid steps of ``batch`` as ``Samples`` of the tensors ``arrays(batch)``
        names (T×N arrays); for K seeds' batches, each seed's, padded (``samples.py``)."""
        if isinstance(batch, list):
            return SeedSamples([self.samples(b, arrays).tensors for b in batch], self.generators)
        return Samples(self.tensors(batch, **arrays(batch)))

    def gae_tensors(self, batch: Batch | list[Batch]) -> Samples | SeedSamples:
        """``samples`` of a critic's batch: obs, actions, logp, values and GAE(λ)'s
        advantages ``adv`` and returns ``ret`` (``returns.batch_gae``; ``cfg.gamma``,
        ``cfg.gae_lambda``)."""
        def arrays(b: Batch) -> dict:
            adv, ret = batch_gae(b, self.cfg.gamma, self.cfg.gae_lambda)
            return dict(obs=b.obs, actions=b.actions, logp=b.logp, values=b.values, adv=adv,
                        ret=ret)
        return self.samples(batch, arrays)

    def fit_value(self, d: Samples | SeedSamples, opt: torch.optim.Optimizer,
                  active: np.ndarray | None):
        """The critic's regression onto the returns, min E[(V(s) − R̂)²], by ``cfg.vf_iters``
        steps of ``opt``: each on the whole batch, or with ``cfg.vf_minibatches`` > 1 that
        many epochs of shuffled minibatches (SB3's ``n_critic_updates`` of ``batch_size``);
        returns the loss before the first step (per seed for K seeds)."""
        cfg = self.cfg

        def loss(s):
            return mean((policy_value(self.policy, s["obs"]) - s["ret"]).pow(2), s.w)

        if cfg.vf_minibatches > 1:
            with torch.no_grad():
                first = figure(loss(d))
            for mb in d.minibatches(cfg.vf_iters, cfg.vf_minibatches):
                step(opt, loss(mb), cfg.max_grad_norm, active)
            return first
        first = None
        for _ in range(cfg.vf_iters):
            v_loss = loss(d)
            if first is None:
                first = figure(v_loss)
            step(opt, v_loss, cfg.max_grad_norm, active)
        return first

    @torch.no_grad()
    def final_kl(self, obs: torch.Tensor, actions: torch.Tensor, old_logp: torch.Tensor,
                 w: torch.Tensor | None = None):
        """metrics.csv's ``approx_kl`` for every algorithm: KL[π_old‖π_θ] of the policy
        after the update, estimated on the batch (``approx_kl``); per seed with ``w``."""
        dist, _ = self.policy(obs)
        return figure(approx_kl(dist.log_prob(actions), old_logp, w))


def minibatch_problems(cfg, env_cfg, key: str = "num_minibatches") -> list[str]:
    """``algo.<key>`` (a number of minibatches) must not exceed the batch of
    ``num_steps × num_envs`` samples."""
    batch, count = cfg.num_steps * env_cfg.num_envs, getattr(cfg, key)
    if count <= batch:
        return []
    return [f"algo.{key}={count!r}: must be ≤ the batch, "
            f"algo.num_steps × env.num_envs = {batch} (each minibatch needs at least one "
            "sample; minibatches of one are also far too slow)"]


def mean(x: torch.Tensor, w: torch.Tensor | None = None) -> torch.Tensor:
    """E[x] over the samples (the last axis): their mean, or Σ_i w_i x_i with the weights
    of K seeds' padded samples (``samples.py``), one expectation per seed."""
    return x.mean(-1) if w is None else (x * w).sum(-1)


def total(x: torch.Tensor, w: torch.Tensor | None = None) -> torch.Tensor:
    """Σ x over the samples (the last axis); with K seeds' weights, over each seed's real
    samples (the padding left out)."""
    return x.sum(-1) if w is None else (x * (w > 0)).sum(-1)


def scalar(x: torch.Tensor) -> torch.Tensor:
    """What autograd differentiates: a loss, or the sum of K seeds' losses (each seed's
    parameters then get the gradient of its own)."""
    return x.sum() if x.dim() else x


def figure(x: torch.Tensor):
    """A loss or statistic for metrics.csv: a float, or one float per seed (NumPy)."""
    x = x.detach()
    return float(x) if x.dim() == 0 else x.cpu().numpy().astype(np.float64)


def approx_kl(logp: torch.Tensor, old_logp: torch.Tensor,
              w: torch.Tensor | None = None) -> torch.Tensor:
    """E[(r − 1) − log r], r = π_θ(a|s)/π_old(a|s), a ~ π_old: Schulman's k3 estimator of
    KL[π_old‖π_θ] — unbiased and non-negative."""
    log_ratio = logp - old_logp
    return mean(log_ratio.exp() - 1.0 - log_ratio, w)


def entropy_term(dist, coef: float, w: torch.Tensor | None = None) -> torch.Tensor:
    """E[H[π(·|s)]] for the loss; with a zero coefficient it is only reported, so it is
    computed without a gradient (the same loss gradient, less autograd work)."""
    if coef:
        return mean(dist.entropy(), w)
    with torch.no_grad():
        return mean(dist.entropy(), w)


class Means:
    """Running means of per-minibatch figures for metrics.csv: floats, or per seed (NumPy
    arrays, ``add(active=…)`` counting only the seeds that took the step)."""

    def __init__(self):
        self.sums: dict = {}
        self.count = 0

    def add(self, active: np.ndarray | None = None, **figures) -> None:
        for key, value in figures.items():
            value = figure(value) if isinstance(value, torch.Tensor) else value
            if active is not None:
                value = np.where(active, value, 0.0)
            self.sums[key] = self.sums.get(key, 0.0) + value
        self.count = self.count + (1 if active is None else active.astype(np.int64))

    def means(self) -> dict:
        """Each figure's mean (nan before the first ``add``) and ``grad_steps``."""
        count = np.asarray(self.count)
        with np.errstate(invalid="ignore", divide="ignore"):
            out = {k: total / count if count.ndim else
                   (total / self.count if self.count else float("nan"))
                   for k, total in self.sums.items()}
        return out | {"grad_steps": self.count}


def normalize(x: torch.Tensor, w: torch.Tensor | None = None, eps: float = 1e-8) -> torch.Tensor:
    """(x − mean) / (std + eps) with the sample (n − 1) std; left as is for fewer than two
    samples. With K seeds' weights ``w``, per seed over its own samples (padding stays 0)."""
    if w is None:
        if x.numel() < 2:
            return x
        return (x - x.mean()) / (x.std() + eps)
    real = w > 0
    n = real.sum(-1, keepdim=True)
    mu = mean(x, w).unsqueeze(-1)
    var = ((x - mu).pow(2) * real).sum(-1, keepdim=True) / (n - 1).clamp(min=1)
    return torch.where(real & (n >= 2), (x - mu) / (var.sqrt() + eps), x)


class Adam(torch.optim.Adam):
    """``torch.optim.Adam`` that spares the process torch._dynamo's import (≈1 s, as long as
    torch's own, and most of a short run's start-up); the same arithmetic, bit for bit.
    torch.optim imports it only to tell torch.compile how to trace an optimizer, which
    pgrun never compiles: ``step`` is Adam's own under ``torch.no_grad()`` (what its
    wrapper does for a non-differentiable Adam, less the compile-time graph breaks), and
    ``add_param_group``, ``state_dict``, ``load_state_dict`` and ``zero_grad``, wrapped by
    ``torch._compile._disable_dynamo``, are marked as already handled. Once torch._dynamo is
    loaded (a user's module compiles), torch's own wrappers run.

    Parameter groups that differ only in their parameters (a seed-stacked policy's seeds at
    one learning rate) step together, in one call of Adam's (fused) kernel over all their
    tensors: Adam is elementwise with a step count per tensor, so each tensor gets the same
    bits as in a step of its own group."""

    def __init__(self, *args, **kwargs):
        if "torch._dynamo" not in sys.modules:
            wrapper = torch._compile._disable_dynamo(lambda: None).__code__
            for f in vars(torch.optim.Optimizer).values():
                if getattr(f, "__code__", None) is wrapper and hasattr(f, "__wrapped__"):
                    setattr(f.__wrapped__, "__dynamo_disable", f.__wrapped__)  # (not mangled)
        super().__init__(*args, **kwargs)

    def step(self, closure=None):
        groups = self.param_groups
        if len(groups) > 1:
            merged: dict[tuple, dict] = {}
            for group in groups:
                settings = tuple((k, v) for k, v in group.items() if k != "params")
                merged.setdefault(settings, {**group, "params": []})["params"] += group["params"]
            self.param_groups = list(merged.values())
        try:
            if "torch._dynamo" in sys.modules:
                return super().step(closure)
            with torch.no_grad():
                return torch.optim.Adam.step.__wrapped__(self, closure)
        finally:
            self.param_groups = groups


def adam(policy: nn.Module, role: str, lr: float, eps: float = 1e-8) -> torch.optim.Adam:
    """``torch.optim.Adam`` over the ``policy``, ``value`` or ``all`` parameters of
    ``policy`` as one flat tensor (``flat.FlatParameters``; fused where torch has it) —
    for a seed-stacked policy one tensor per seed, each in a parameter group of its own
    (its own learning rate) with its own Adam state."""
    parameters_by_role(policy, role)  # a clear error where the module has no such role
    params = flat_parameters(policy).parameters(role)
    groups = [{"params": [p]} for p in params]
    try:
        return Adam(groups, lr=lr, eps=eps, fused=True)
    except (RuntimeError, TypeError):  # no fused Adam for this device or torch version
        return Adam(groups, lr=lr, eps=eps)


def set_lr(optimizer: torch.optim.Optimizer, lr) -> None:
    """Set the learning rate: a float, or K seeds' (NumPy) one per parameter group."""
    groups = optimizer.param_groups
    for group, value in zip(groups, np.broadcast_to(lr, len(groups)), strict=True):
        group["lr"] = float(value)


def seed_column(x, device=None):
    """A per-seed figure (K seeds' NumPy array) as a K × 1 tensor, which broadcasts over
    each seed's samples; a float stays a float."""
    if np.ndim(x) == 0:
        return x
    return torch.as_tensor(x, dtype=torch.float32, device=device).unsqueeze(-1)


def step(optimizer: torch.optim.Optimizer, loss: torch.Tensor, max_grad_norm: float | None,
         active: np.ndarray | None = None):
    """∇loss by autograd, optional global gradient-norm clipping, then the optimizer's step
    on an ``adam``'s flat parameter; returns the norm before clipping (nan when not
    clipping). Clipping scales g by max_norm / (‖g‖ + 1e-6) when that is below 1, as
    ``torch.nn.utils.clip_grad_norm_`` does.

    For K seeds, ``loss`` holds the K seeds' losses: their sum is differentiated (seed k's
    parameters get seed k's gradient), each seed's gradient is clipped by its own norm,
    seeds not ``active`` take no step, and the K norms are returned."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    torch._foreach_zero_([param.grad for param in params])
    scalar(loss).backward()
    grads = [param.grad for param in params]
    norms = [float("nan")] * len(params)
    if max_grad_norm is not None:  # (each tensor's own norm and scale, in one call each)
        norms = torch.stack(torch._foreach_norm(grads)).tolist()
        scales = [max_grad_norm / (norm + 1e-6) for norm in norms]
        clip = [k for k, scale in enumerate(scales) if scale < 1.0]
        if clip:
            torch._foreach_mul_([grads[k] for k in clip], [scales[k] for k in clip])
    if active is None or active.all():
        optimizer.step()
    elif active.any():
        for param, on in zip(params, active, strict=True):
            if not on:
                param.grad = None  # torch.optim skips a parameter without a gradient
        optimizer.step()
        for param, grad in zip(params, grads, strict=True):
            param.grad = grad
    return norms[0] if loss.dim() == 0 else np.array(norms)


def explained_variance(values: torch.Tensor, returns: torch.Tensor,
                       w: torch.Tensor | None = None):
    """1 − Var[returns − values] / Var[returns]: 1 is a perfect critic, ≤ 0 no better than
    a constant (nan when the returns do not vary); per seed with ``w``."""
    if w is None:
        var = float(returns.var(unbiased=False))
        return float("nan") if var == 0 else \
            1.0 - float((returns - values).var(unbiased=False)) / var

    def variance(x):
        return mean((x - mean(x, w).unsqueeze(-1)).pow(2), w)

    var, resid = figure(variance(returns)), figure(variance(returns - values))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(var == 0, np.nan, 1.0 - resid / var)
