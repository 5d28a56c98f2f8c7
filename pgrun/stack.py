"""K seeds' policies as one module with a leading seed dimension (seed-batched runs).

``SeedStack(policies)`` takes K policies of one architecture (each built and initialized
as its seed's run would build it) and returns a copy of the first whose layers hold the
K seeds' parameters stacked: a Linear's weight is K × out × in and its forward is one
batched matrix product, y[k] = x[k] W[k]ᵀ + b[k] (``torch.baddbmm``); a table is K × n × d,
y[k, i] = T[k, s_{k,i}]; any other parameter (a Gaussian's free log σ) is K × 1 × … and
broadcasts over the samples. The module's own code — ``ActorCritic.forward``, its heads,
distributions — runs unchanged on observations shaped (K, B, …) and returns distributions
and values shaped (K, B): seed k's outputs depend only on seed k's parameters and inputs.

The stack is flattened seed-major (``flat.py``: a K × n buffer whose row k is laid out as
seed k's module alone would be), and each seed's own module is rebound to its row: the K
modules and the stack share storage, so a checkpoint, an evaluation or a NaN check of seed
k reads seed k's current parameters with no copying.

Every built-in body and head is supported (a Conv2d runs as one grouped convolution, the
K seeds' channels side by side; the built-in modules take any leading batch dimensions);
a user's own module is refused with a clear error (``check_stackable``). On the CPU the
optional accelerator runs the stack too (``accelerate.py``: its NumPy layers take the
leading seed dimension).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from pgrun.config import ConfigError
from pgrun.flat import flat_parameters
from pgrun.policies import ActorCritic


class StackedLinear(nn.Module):
    """K Linear layers, one per seed: (K, B, in) → (K, B, out)."""

    def __init__(self, layers: list[nn.Linear]):
        super().__init__()
        self.weight = nn.Parameter(torch.stack([layer.weight.detach() for layer in layers]))
        self.bias = nn.Parameter(torch.stack([layer.bias.detach() for layer in layers]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias.unsqueeze(1), x, self.weight.transpose(1, 2))


class StackedConv2d(nn.Module):
    """K Conv2d layers, one per seed: (K, B, C, H, W) → (K, B, out, H', W'), as one
    grouped convolution with the K seeds' channels side by side (groups = K)."""

    def __init__(self, layers: list[nn.Conv2d]):
        super().__init__()
        first = layers[0]
        if first.groups != 1 or first.padding_mode != "zeros" or first.bias is None:
            raise ConfigError("seed batching stacks plain Conv2d layers (no groups, zero "
                              "padding, a bias)")
        self.stride, self.padding, self.dilation = first.stride, first.padding, first.dilation
        self.weight = nn.Parameter(torch.stack([layer.weight.detach() for layer in layers]))
        self.bias = nn.Parameter(torch.stack([layer.bias.detach() for layer in layers]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, b = x.shape[:2]
        # (K, B, C, H, W) → (B, K·C, H, W) laid out channels-last (``NatureCNN.forward``);
        # a free view where x is the channels-last output of the layer before
        x = x.permute(1, 3, 4, 0, 2).reshape(b, *x.shape[-2:], -1).permute(0, 3, 1, 2)
        y = F.conv2d(x, self.weight.reshape(-1, *self.weight.shape[2:]), self.bias.reshape(-1),
                     self.stride, self.padding, self.dilation, groups=k)
        return y.reshape(b, k, -1, *y.shape[-2:]).transpose(0, 1)


class StackedEmbedding(nn.Module):
    """K tables, one per seed: int rows (K, B) → (K, B, d)."""

    def __init__(self, tables: list[nn.Embedding]):
        super().__init__()
        self.weight = nn.Parameter(torch.stack([table.weight.detach() for table in tables]))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        seeds = torch.arange(len(self.weight), device=idx.device).unsqueeze(1)
        return self.weight[seeds, idx]


def check_stackable(policy: nn.Module) -> None:
    """A ConfigError unless ``policy`` is one of pgrun's built-in ``ActorCritic`` modules
    (any of its bodies and heads); a user's own module is refused."""
    if not isinstance(policy, ActorCritic):
        raise ConfigError(f"seed batching (hydra/launcher=batched) runs pgrun's built-in "
                          f"policies; the policy module {type(policy).__name__} is not "
                          "supported yet. Run this sweep with hydra/launcher=local (one "
                          "process per seed) instead.")


def _stack_modules(target: nn.Module, sources: list[nn.Module], done: dict[int, nn.Module]) -> None:
    """Replace, in ``target`` (a copy of sources[0]), every Linear and Embedding by its
    stacked version and every other parameter by the K seeds' values, K × 1 × … (a module
    shared within the policy, such as a shared body, is stacked once)."""
    for name, child in list(target.named_children()):
        if id(child) in done:
            setattr(target, name, done[id(child)])
            continue
        peers = [getattr(s, name) for s in sources]
        if isinstance(child, nn.Linear):
            new = StackedLinear(peers)
        elif isinstance(child, nn.Conv2d):
            new = StackedConv2d(peers)
        elif isinstance(child, nn.Embedding):
            new = StackedEmbedding(peers)
        else:
            new = child
            _stack_modules(child, peers, done)
        done[id(child)] = new
        setattr(target, name, new)
    for name, _ in list(target.named_parameters(recurse=False)):
        stacked = torch.stack([getattr(s, name).detach() for s in sources])
        setattr(target, name, nn.Parameter(stacked.unsqueeze(1)))


def SeedStack(policies: list[nn.Module]) -> nn.Module:  # noqa: N802 (a constructor)
    """The K policies as one seed-stacked module; the K modules are rebound to its rows
    (module docstring). Every policy must have the first one's architecture."""
    for policy in policies:
        check_stackable(policy)
    seeds = len(policies)
    first = policies[0]
    stack = copy.deepcopy(first)  # ActorCritic.__getstate__: no accelerator, no flat buffers
    _stack_modules(stack, policies, {})
    stack.accelerator = None
    flat = flat_parameters(stack, seeds=seeds)
    for k, policy in enumerate(policies):
        solo = flat_parameters(policy, storage=(flat.data[k], flat.grad[k]))
        if solo.slices != flat.slices:
            raise ValueError("the seeds' policies differ in architecture")
    return stack
