"""Adam (Kingma & Ba 2015, Algorithm 1) in NumPy, in place on a flat parameter vector.

  m ← β₁ m + (1 − β₁) g,   v ← β₂ v + (1 − β₂) g²,   t ← t + 1
  θ ← θ − (α / (1 − β₁ᵗ)) · m / (√v / √(1 − β₂ᵗ) + ε)

ε is added after the bias correction of √v, as ``torch.optim.Adam`` does (tested against
it). The parameters and gradients are NumPy views of an Agent's flat buffers
(``Agent.flat_parameter``), so a step is a handful of vector operations, without
torch.optim's per-step bookkeeping, which for a 9k-parameter network costs several times
the arithmetic.
"""

from __future__ import annotations

import numpy as np
import torch


class Adam:
    def __init__(self, param: torch.Tensor, lr: float, betas=(0.9, 0.999), eps: float = 1e-8):
        """``param``: a flat float32 tensor whose ``grad`` holds the gradient (both are
        updated or read in place)."""
        self.param, self.grad = param.detach().numpy(), param.grad.numpy()
        self.lr, self.betas, self.eps = lr, tuple(betas), eps
        self.step_count = 0
        self.exp_avg = np.zeros_like(self.param)
        self.exp_avg_sq = np.zeros_like(self.param)
        self._tmp = np.empty_like(self.param)

    def step(self) -> None:
        b1, b2 = self.betas
        g, m, v, tmp = self.grad, self.exp_avg, self.exp_avg_sq, self._tmp
        self.step_count += 1
        m *= b1
        m += np.multiply(g, 1.0 - b1, out=tmp)
        v *= b2
        np.multiply(g, g, out=tmp)
        tmp *= 1.0 - b2
        v += tmp
        t = self.step_count
        np.sqrt(v, out=tmp)
        tmp *= 1.0 / np.sqrt(1.0 - b2**t)
        tmp += self.eps
        np.divide(m, tmp, out=tmp)
        tmp *= self.lr / (1.0 - b1**t)
        self.param -= tmp

    def state_dict(self) -> dict:
        return {"step": self.step_count, "exp_avg": torch.from_numpy(self.exp_avg.copy()),
                "exp_avg_sq": torch.from_numpy(self.exp_avg_sq.copy()), "lr": self.lr,
                "betas": list(self.betas), "eps": self.eps}

    def load_state_dict(self, state: dict) -> None:
        if state.get("exp_avg") is None or state["exp_avg"].numel() != self.param.size:
            raise ValueError("optimizer state from another network or pgrun version")
        self.step_count = int(state["step"])
        self.exp_avg[:] = state["exp_avg"].numpy()
        self.exp_avg_sq[:] = state["exp_avg_sq"].numpy()
        self.lr, self.betas, self.eps = state["lr"], tuple(state["betas"]), state["eps"]
