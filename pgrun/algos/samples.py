"""A batch's valid steps as tensors, for one run or for the K seeds of a seed-batched one.

One run: each tensor holds the M valid steps of the batch, (M, …), in time-major order.
K seeds (``SeedSamples``): each tensor is (K, M_max, …), seed k's M_k valid steps first in
the same order, then padding; ``w`` (K, M_max) weighs seed k's real steps 1/M_k and the
padding 0, so that an expectation over a seed's samples is ``mean(x, w)`` = Σ_i w_i x_i
(``base.mean``), exactly the mean seed k computes alone. Minibatches follow the same rule:
seed k's indices are its own ``torch.randperm(M_k)`` from its own generator, split into
near-equal parts as alone, padded to the longest part across seeds.

The losses are written once for both: they reduce over the last axis with ``mean(x, w)``,
so for K seeds they return K losses, whose sum autograd differentiates — each seed's
parameters get exactly the gradient of that seed's loss.
"""

from __future__ import annotations

import torch
from torch.nn.utils.rnn import pad_sequence


class Samples:
    """One run's valid steps: ``samples[name]``; ``w`` is None (plain means). A minibatch's
    ``index`` selects its samples from the whole batch's (e.g. from a stored π_old)."""

    w = None
    seeds = 0

    def __init__(self, tensors: dict[str, torch.Tensor], index: torch.Tensor | None = None):
        self.tensors, self.index = tensors, index
        self.size = len(next(iter(tensors.values())))

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.tensors[name]

    def minibatches(self, num_epochs: int, num_minibatches: int):
        """``minibatches`` of these samples, each a ``Samples``."""
        device = next(iter(self.tensors.values())).device
        for idx in minibatches(self.size, num_epochs, num_minibatches, device):
            yield Samples({k: v[idx] for k, v in self.tensors.items()}, idx)


def minibatches(size: int, num_epochs: int, num_minibatches: int, device=None):
    """Index sets for ``num_epochs`` shuffled passes over ``size`` samples, each pass split
    into ``num_minibatches`` near-equal parts (empty parts, from fewer samples than
    minibatches, are skipped). Shuffles come from torch's generator (seeded, checkpointed)."""
    for _epoch in range(num_epochs):
        for idx in torch.randperm(size).tensor_split(num_minibatches):
            if len(idx):
                yield idx if device is None else idx.to(device)


class SeedSamples:
    """The valid steps of K seeds' batches, padded to (K, M_max, …), with weights ``w``;
    ``generators`` are the seeds' own torch generators for the minibatch shuffles."""

    def __init__(self, per_seed: list[dict[str, torch.Tensor]],
                 generators: list[torch.Generator] | None = None):
        self.seeds = len(per_seed)
        self.sizes = [len(next(iter(d.values()))) for d in per_seed]
        self.generators = generators
        self.tensors = {name: pad_stack([d[name] for d in per_seed]) for name in per_seed[0]}
        device = next(iter(self.tensors.values())).device
        self.w = weights(self.sizes, max(self.sizes), device)

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.tensors[name]

    def minibatches(self, num_epochs: int, num_minibatches: int):
        assert self.generators is not None, "minibatches need the seeds' generators"
        device = self.w.device
        rows = torch.arange(self.seeds, device=device).unsqueeze(1)
        starts = rows * self.w.shape[-1]  # seed k's samples from row k·M_max of ``flat``
        flat = {k: v.flatten(0, 1) for k, v in self.tensors.items()}
        for _epoch in range(num_epochs):
            parts = [torch.randperm(m, generator=g).tensor_split(num_minibatches)
                     for m, g in zip(self.sizes, self.generators, strict=True)]
            for j in range(num_minibatches):
                idx = [p[j] for p in parts]
                sizes = [len(i) for i in idx]
                if not max(sizes):
                    continue
                index = pad_stack(idx).to(device)  # v[rows, index], as one index_select:
                at = (starts + index).flatten()
                w = self.w if sizes == self.sizes else weights(sizes, max(sizes), device)
                yield _Minibatch({k: v.index_select(0, at).unflatten(0, index.shape)
                                  for k, v in flat.items()}, w, self.seeds, (rows, index))


class _Minibatch:
    def __init__(self, tensors, w, seeds, index):
        self.tensors, self.w, self.seeds, self.index = tensors, w, seeds, index

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.tensors[name]


def pad_stack(tensors: list[torch.Tensor]) -> torch.Tensor:
    """(K, max length, …) from K tensors of different lengths, padded with zeros."""
    return pad_sequence(tensors, batch_first=True)


def weights(sizes: list[int], width: int, device) -> torch.Tensor:
    """(K, width): 1/M_k on seed k's first M_k entries, 0 on the padding (and on a seed
    with no samples)."""
    sizes_t = torch.tensor(sizes, device=device)
    real = torch.arange(width, device=device).unsqueeze(0) < sizes_t.unsqueeze(1)
    return real / sizes_t.clamp(min=1).unsqueeze(1)
