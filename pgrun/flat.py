"""A module's parameters as views of one flat buffer, and their gradients of a second.

An optimizer step over one tensor is a handful of kernel calls, where ``torch.optim`` over
a dozen small tensors spends most of its time in per-tensor bookkeeping; gradient
clipping likewise. ``flat_parameters(module)`` rebinds every parameter's storage (and its
``.grad``) to a slice of the buffers, ordered by role — the policy's parameters, then the
value function's, then any others — so each role is one contiguous ``nn.Parameter``
(``FlatParameters.parameter``) that ``torch.optim`` can step. Autograd still sees the
module's own parameters: it accumulates their gradients in place into the shared buffer
(gradients are zeroed in place, never set to None). Any ``nn.Module`` can be flattened.
"""

from __future__ import annotations

import torch
from torch import nn

_ATTR = "_pgrun_flat"


class FlatParameters:
    """``seeds`` = K > 0 flattens a seed-stacked module (``stack.py``: every parameter has
    a leading dimension of K): the buffers are then K × n, one row per seed, each row laid
    out as one seed's module would be, so that row k is seed k's flat parameter vector.
    ``storage`` = (data, grad) binds the parameters into given buffers (a seed's rows of a
    stack's) instead of new ones; their current values are copied in."""

    def __init__(self, module: nn.Module, seeds: int = 0,
                 storage: tuple[torch.Tensor, torch.Tensor] | None = None):
        roles: dict[str, list[nn.Parameter]] = {}
        seen: set[int] = set()
        for role in ("policy", "value"):
            method = getattr(module, f"{role}_parameters", None)
            if method is not None:
                roles[role] = [p for p in method() if id(p) not in seen]
                seen.update(id(p) for p in roles[role])
        roles["other"] = [p for p in module.parameters() if id(p) not in seen]
        params = [p for ps in roles.values() for p in ps]
        first = params[0] if params else torch.zeros(0)
        self.seeds = seeds
        lead = (seeds,) if seeds else ()
        size = lambda p: p.numel() // seeds if seeds else p.numel()  # noqa: E731
        total = sum(size(p) for p in params)
        if storage is None:
            self.data = torch.zeros(*lead, total, dtype=first.dtype, device=first.device)
            self.grad = torch.zeros_like(self.data)
        else:
            self.data, self.grad = storage
        self.offsets: dict[int, int] = {}
        self.slices: dict[str, slice] = {}
        offset = 0
        for role, ps in roles.items():
            start = offset
            for p in ps:
                n = size(p)
                cut = (slice(None), slice(offset, offset + n)) if seeds else slice(offset, offset + n)
                self.data[cut].copy_(p.detach().reshape(*lead, n))
                p.data = self.data[cut].view_as(p)
                p.grad = self.grad[cut].view_as(p)
                self.offsets[id(p)] = offset
                offset += n
            self.slices[role] = slice(start, offset)
        self.slices["all"] = slice(0, offset)
        self._params: dict[str, list[nn.Parameter]] = {}

    def parameters(self, role: str = "all") -> list[nn.Parameter]:
        """The ``policy``, ``value`` or ``all`` parameters as tensors sharing their storage,
        with the matching slices of the gradient buffer as their ``.grad``: one tensor,
        or one per seed (a row each) for a seed-stacked module."""
        if role not in self._params:
            s = self.slices[role]
            if s.stop == s.start and role != "all":
                raise ValueError(f"the policy module has no {role} parameters")
            rows = [(self.data[s], self.grad[s])] if not self.seeds else \
                [(self.data[k, s], self.grad[k, s]) for k in range(self.seeds)]
            params = []
            for data, grad in rows:
                param = nn.Parameter(data)
                param.grad = grad
                params.append(param)
            self._params[role] = params
        return self._params[role]

    def parameter(self, role: str = "all") -> nn.Parameter:
        """``parameters(role)`` of a module that is not seed-stacked: one tensor."""
        assert not self.seeds, "a seed-stacked module has one parameter vector per seed"
        return self.parameters(role)[0]


def flat_parameters(module: nn.Module, seeds: int = 0,
                    storage: tuple[torch.Tensor, torch.Tensor] | None = None) -> FlatParameters:
    """The module's ``FlatParameters``, flattening it on first use (do it after moving the
    module to its device: ``Module.to`` replaces the storage). ``seeds``/``storage``: see
    ``FlatParameters``; with ``storage`` the module is always bound anew."""
    flat = module.__dict__.get(_ATTR)
    if storage is not None or flat is None or (
            flat.data.numel() and flat.data.device != next(module.parameters()).device):
        flat = FlatParameters(module, seeds, storage)
        module.__dict__[_ATTR] = flat
    return flat
