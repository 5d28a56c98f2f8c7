"""What every algorithm shares: the interface the training loop calls, and batch helpers."""

from __future__ import annotations

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from pgrun.policies import Agent
from pgrun.rollout import Batch, Collector


class Algorithm:
    """Turns a rollout batch into a loss and takes optimizer steps.

    Subclasses set ``uses_value`` (whether the Agent gets a value head), implement
    ``collect`` (how a batch is cut: fixed steps or whole episodes) and ``update``.
    """

    uses_value: bool = True

    def __init__(self, cfg, agent: Agent, num_envs: int):
        # the typed dataclass, not the DictConfig: attribute access in the update loop
        # would otherwise cost more than some of its tensor ops
        self.cfg = OmegaConf.to_object(cfg) if isinstance(cfg, DictConfig) else cfg
        self.agent = agent
        self.num_envs = num_envs

    def collect(self, collector: Collector) -> Batch:
        return collector.collect_steps(self.cfg.num_steps)

    def update(self, batch: Batch, progress: float) -> dict[str, float]:
        """One update from ``batch``; ``progress`` ∈ [0, 1) is the fraction of the step
        budget already used (for annealing). Returns the metrics.csv loss columns."""
        raise NotImplementedError

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        raise NotImplementedError

    def current_lr(self, progress: float) -> float:
        """Linear annealing to 0 over the step budget when ``anneal_lr`` is set."""
        return self.cfg.lr * (1.0 - progress) if self.cfg.anneal_lr else self.cfg.lr


def valid_tensors(batch: Batch, **arrays: np.ndarray) -> dict[str, torch.Tensor]:
    """The valid steps of each T×N(×…) array, flattened to one batch dimension."""
    mask = batch.valid
    return {name: torch.from_numpy(np.ascontiguousarray(arr[mask])) for name, arr in arrays.items()}


def minibatches(size: int, num_epochs: int, num_minibatches: int):
    """Index sets for ``num_epochs`` shuffled passes over ``size`` samples, each pass split
    into ``num_minibatches`` near-equal parts (empty parts, from fewer samples than
    minibatches, are skipped)."""
    for _epoch in range(num_epochs):
        for idx in torch.randperm(size).tensor_split(num_minibatches):
            if len(idx):
                yield idx


class Means:
    """Running means of per-minibatch figures (tensors or floats) for metrics.csv."""

    def __init__(self):
        self.sums: dict[str, float] = {}
        self.count = 0

    def add(self, **figures) -> None:
        for key, value in figures.items():
            value = value.item() if isinstance(value, torch.Tensor) else value
            self.sums[key] = self.sums.get(key, 0.0) + value
        self.count += 1

    def means(self) -> dict[str, float]:
        """Each figure's mean (nan before the first ``add``) and ``grad_steps``."""
        return {k: total / self.count if self.count else float("nan")
                for k, total in self.sums.items()} | {"grad_steps": self.count}


def normalize(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(x − mean) / (std + eps); left as is for fewer than two samples."""
    if x.numel() < 2:
        return x
    return (x - x.mean()) / (x.std() + eps)


def adam(params, lr: float, eps: float = 1e-8) -> torch.optim.Adam:
    """Adam with the fused kernel (one op for all parameters; same update rule)."""
    return torch.optim.Adam(params, lr=lr, eps=eps, fused=True)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def step(optimizer: torch.optim.Optimizer, loss: torch.Tensor, params, max_grad_norm) -> float:
    """zero_grad, backward, optional global gradient-norm clipping, step; returns the
    gradient norm before clipping (nan when not clipping)."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    norm = float("nan")
    if max_grad_norm is not None:
        norm = float(torch.nn.utils.clip_grad_norm_(params, max_grad_norm, foreach=True))
    optimizer.step()
    return norm


def explained_variance(values: np.ndarray, returns: np.ndarray) -> float:
    """1 − Var[returns − values] / Var[returns]: 1 is a perfect critic, ≤ 0 no better than
    a constant (nan when the returns do not vary)."""
    var = float(np.var(returns))
    return float("nan") if var == 0 else 1.0 - float(np.var(returns - values)) / var
