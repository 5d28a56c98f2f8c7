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
    def __init__(self, module: nn.Module):
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
        total = sum(p.numel() for p in params)
        self.data = torch.zeros(total, dtype=first.dtype, device=first.device)
        self.grad = torch.zeros_like(self.data)
        self.offsets: dict[int, int] = {}
        self.slices: dict[str, slice] = {}
        offset = 0
        for role, ps in roles.items():
            start = offset
            for p in ps:
                n = p.numel()
                self.data[offset:offset + n].copy_(p.detach().reshape(-1))
                p.data = self.data[offset:offset + n].view_as(p)
                p.grad = self.grad[offset:offset + n].view_as(p)
                self.offsets[id(p)] = offset
                offset += n
            self.slices[role] = slice(start, offset)
        self.slices["all"] = slice(0, offset)
        self._params: dict[str, nn.Parameter] = {}

    def parameter(self, role: str = "all") -> nn.Parameter:
        """The ``policy``, ``value`` or ``all`` parameters as one tensor sharing their
        storage, with the matching slice of the gradient buffer as its ``.grad``."""
        if role not in self._params:
            s = self.slices[role]
            if s.stop == s.start and role != "all":
                raise ValueError(f"the policy module has no {role} parameters")
            param = nn.Parameter(self.data[s])
            param.grad = self.grad[s]
            self._params[role] = param
        return self._params[role]


def flat_parameters(module: nn.Module) -> FlatParameters:
    """The module's ``FlatParameters``, flattening it on first use (do it after moving the
    module to its device: ``Module.to`` replaces the storage)."""
    flat = module.__dict__.get(_ATTR)
    if flat is None or (flat.data.numel() and flat.data.device != next(module.parameters()).device):
        flat = FlatParameters(module)
        module.__dict__[_ATTR] = flat
    return flat
