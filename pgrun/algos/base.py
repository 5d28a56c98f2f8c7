"""What every algorithm shares: the interface the training loop calls, and batch helpers."""

from __future__ import annotations

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from pgrun.numpy_agent import NumpyAgent
from pgrun.optim import Adam
from pgrun.policies import Agent
from pgrun.rollout import Batch, Collector


class Algorithm:
    """Turns a rollout batch into a loss and takes optimizer steps.

    Losses are written in NumPy with their gradients w.r.t. the per-sample log π(a|s),
    H[π(·|s)] and V(s) (each loss function documents its derivative);
    ``NumpyAgent.backward`` carries them to the parameters and ``step`` applies them.

    Subclasses set ``uses_value`` (whether the Agent gets a value head), implement
    ``collect`` (how a batch is cut: fixed steps or whole episodes) and ``update``.
    """

    uses_value: bool = True

    def __init__(self, cfg, agent: Agent, num_envs: int):
        # the typed dataclass, not the DictConfig: attribute access in the update loop
        # would otherwise cost more than some of its tensor ops
        self.cfg = OmegaConf.to_object(cfg) if isinstance(cfg, DictConfig) else cfg
        self.agent = agent
        self.net = NumpyAgent(agent)  # the update's forward and backward passes
        self.num_envs = num_envs

    def collect(self, collector: Collector) -> Batch:
        return collector.collect_steps(self.cfg.num_steps)

    def update(self, batch: Batch, progress: float) -> dict[str, float]:
        """One update from ``batch``; ``progress`` ∈ [0, 1) is the fraction of the step
        budget already used (for annealing). Returns the metrics.csv loss columns."""
        raise NotImplementedError

    def optimizers(self) -> dict[str, Adam]:
        raise NotImplementedError

    def current_lr(self, progress: float) -> float:
        """Linear annealing to 0 over the step budget when ``anneal_lr`` is set."""
        return self.cfg.lr * (1.0 - progress) if self.cfg.anneal_lr else self.cfg.lr


def valid_arrays(batch: Batch, **arrays: np.ndarray) -> dict[str, np.ndarray]:
    """The valid steps of each T×N(×…) array, flattened to one batch dimension."""
    mask = batch.valid
    return {name: np.ascontiguousarray(arr[mask]) for name, arr in arrays.items()}


def minibatches(size: int, num_epochs: int, num_minibatches: int):
    """Index sets for ``num_epochs`` shuffled passes over ``size`` samples, each pass split
    into ``num_minibatches`` near-equal parts (empty parts, from fewer samples than
    minibatches, are skipped). Shuffles come from torch's generator (seeded, checkpointed)."""
    for _epoch in range(num_epochs):
        for idx in np.array_split(torch.randperm(size).numpy(), num_minibatches):
            if len(idx):
                yield idx


class Means:
    """Running means of per-minibatch figures for metrics.csv."""

    def __init__(self):
        self.sums: dict[str, float] = {}
        self.count = 0

    def add(self, **figures: float) -> None:
        for key, value in figures.items():
            self.sums[key] = self.sums.get(key, 0.0) + float(value)
        self.count += 1

    def means(self) -> dict[str, float]:
        """Each figure's mean (nan before the first ``add``) and ``grad_steps``."""
        return {k: total / self.count if self.count else float("nan")
                for k, total in self.sums.items()} | {"grad_steps": self.count}


def normalize(x: np.ndarray, eps: float = 1e-8) -> np.ndarray:
    """(x − mean) / (std + eps) with the sample (n − 1) std; left as is for fewer than two
    samples."""
    n = x.size
    if n < 2:
        return x
    centered = x - np.add.reduce(x) / n
    centered /= np.sqrt(np.dot(centered, centered) / (n - 1)) + eps
    return centered


def adam(agent: Agent, role: str, lr: float, eps: float = 1e-8) -> Adam:
    """Adam over the ``policy``, ``value`` or ``all`` parameters of ``agent`` as one flat
    vector (``Agent.flat_parameter``)."""
    return Adam(agent.flat_parameter(role), lr=lr, eps=eps)


def set_lr(optimizer: Adam, lr: float) -> None:
    optimizer.lr = lr


def step(optimizer: Adam, max_grad_norm: float | None) -> float:
    """Optional global gradient-norm clipping, then the optimizer's step, on the gradient
    ``NumpyAgent.backward`` wrote; returns the norm before clipping (nan when not clipping).

    Clipping scales g by max_norm / (‖g‖ + 1e-6) when that is below 1, as
    ``torch.nn.utils.clip_grad_norm_``."""
    norm = float("nan")
    if max_grad_norm is not None:
        grad = optimizer.grad
        norm = float(np.sqrt(np.dot(grad, grad)))
        scale = max_grad_norm / (norm + 1e-6)
        if scale < 1.0:
            grad *= np.float32(scale)
    optimizer.step()
    return norm


def explained_variance(values: np.ndarray, returns: np.ndarray) -> float:
    """1 − Var[returns − values] / Var[returns]: 1 is a perfect critic, ≤ 0 no better than
    a constant (nan when the returns do not vary)."""
    var = float(np.var(returns))
    return float("nan") if var == 0 else 1.0 - float(np.var(returns - values)) / var
