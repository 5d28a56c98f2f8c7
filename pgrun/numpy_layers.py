"""NumPy layers that mirror an Agent's torch modules on views of their parameters: each
keeps what its backward needs, and the backward writes the parameters' gradients into
views of the Agent's gradient buffer (``Agent.flat_grad``).

  dense   y = x Wᵀ + b:  ∂L/∂W = δᵀx,  ∂L/∂b = Σ_i δ_i,  ∂L/∂x = δW
  table   y = T[i]:      ∂L/∂T[j] = Σ_{i = j} δ_i
  f(x) elementwise:      ∂L/∂x = δ ⊙ f′(x)   (tanh: 1 − y²; relu: [x > 0];
                         elu: 1 or eˣ; gelu: Φ(x) + x φ(x))

``Stack`` is a body or head as a list of layers; ``Packed`` puts the policy and value
towers side by side for acting.
"""

from __future__ import annotations

import numpy as np
from scipy.special import erf
from torch import nn

from pgrun.policies import ACTIVATIONS, OneHot, StateIndex


def param_grad(param: nn.Parameter) -> np.ndarray:
    """The NumPy view of a parameter's slot in the Agent's gradient buffer."""
    return param.grad.numpy()


class Dense:
    """y = x Wᵀ + b (torch's Linear; W is out × in)."""

    def __init__(self, layer: nn.Linear):
        self.w, self.b = layer.weight.detach().numpy(), layer.bias.detach().numpy()
        self.wt = self.w.T
        self.gw, self.gb = param_grad(layer.weight), param_grad(layer.bias)

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.x = x
        y = x @ self.wt
        y += self.b
        return y

    def backward(self, dy: np.ndarray, need_dx: bool) -> np.ndarray | None:
        np.matmul(dy.T, self.x, out=self.gw)
        np.add.reduce(dy, axis=0, out=self.gb)
        return dy @ self.w if need_dx else None


class Table:
    """y = T[i] for state indices i (a tabular body's head)."""

    def __init__(self, layer: nn.Embedding):
        self.table, self.gtable = layer.weight.detach().numpy(), param_grad(layer.weight)

    def forward(self, idx: np.ndarray) -> np.ndarray:
        self.idx = idx
        return self.table[idx]

    def backward(self, dy: np.ndarray, need_dx: bool) -> None:
        self.gtable.fill(0.0)
        np.add.at(self.gtable, self.idx, dy)


class Activation:
    """An elementwise f and its derivative f′, written from what the forward kept."""

    def __init__(self, kind: type):
        self.kind = kind

    def forward(self, x: np.ndarray) -> np.ndarray:
        if self.kind is nn.Tanh:  # in place: x is always a dense layer's fresh output
            self.y = np.tanh(x, out=x)
            return self.y
        self.x = x
        if self.kind is nn.ReLU:
            return np.maximum(x, 0.0)
        if self.kind is nn.ELU:
            return np.where(x > 0, x, np.expm1(np.minimum(x, 0.0)))
        return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0))).astype(x.dtype)  # GELU

    def backward(self, dy: np.ndarray, need_dx: bool) -> np.ndarray:
        if self.kind is nn.Tanh:
            d = np.multiply(self.y, self.y)
            np.subtract(1.0, d, out=d)
            d *= dy
            return d
        x = self.x
        if self.kind is nn.ReLU:
            return dy * (x > 0)
        if self.kind is nn.ELU:
            return dy * np.where(x > 0, 1.0, np.exp(np.minimum(x, 0.0))).astype(x.dtype)
        cdf = 0.5 * (1.0 + erf(x / np.sqrt(2.0)))  # GELU: Φ(x) + x φ(x)
        pdf = np.exp(-0.5 * x * x) / np.sqrt(2.0 * np.pi)
        return dy * (cdf + x * pdf).astype(x.dtype)


class Inputs:
    """Discrete observation → row index (``StateIndex``) or one-hot code (``OneHot``)."""

    def __init__(self, layer: StateIndex | OneHot):
        self.start = layer.start
        self.eye = np.eye(layer.n, dtype=np.float32) if isinstance(layer, OneHot) else None

    def forward(self, obs: np.ndarray) -> np.ndarray:
        idx = obs - self.start if self.start else obs
        return idx if self.eye is None else self.eye[idx]

    def backward(self, dy: np.ndarray, need_dx: bool) -> None:
        return None


class Stack:
    """A body or head as a list of layers sharing the Agent's parameter storage."""

    def __init__(self, module: nn.Module):
        self.layers: list = []
        for layer in module.modules():
            if isinstance(layer, nn.Linear):
                self.layers.append(Dense(layer))
            elif isinstance(layer, nn.Embedding):
                self.layers.append(Table(layer))
            elif isinstance(layer, StateIndex | OneHot):
                self.layers.append(Inputs(layer))
            elif type(layer) in ACTIVATIONS.values():
                self.layers.append(Activation(type(layer)))
            elif not isinstance(layer, nn.Sequential | nn.Identity):
                raise TypeError(f"NumpyAgent cannot run {type(layer).__name__}")

    def forward(self, x: np.ndarray) -> np.ndarray:
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, dy: np.ndarray, need_dx: bool = False) -> np.ndarray | None:
        """∂L/∂input (when ``need_dx``), writing the parameters' gradients on the way."""
        for i in range(len(self.layers) - 1, -1, -1):
            dy = self.layers[i].backward(dy, need_dx or i > 0)
        return dy


class Packed:
    """The policy and the value towers side by side as one network, for acting.

    Two towers of the same shape on the same input become one twice as wide: the first
    dense layer stacks both weight matrices ([W_π; W_V] on the shared input), every later
    one is block-diagonal (diag(W_π, W_V)), so a layer is one matrix product instead of
    two. The off-diagonal blocks are zeros, so each output is the same sum of products
    (to float32 rounding: BLAS may order the sums differently). The output is
    [policy head | value head]. ``fill`` copies the current weights in.
    """

    def __init__(self, pi: list, v: list):
        self.pairs, self.layers = [], []
        first = True
        for a, b in zip(pi, v, strict=True):
            if isinstance(a, Dense):
                (out_a, in_a), (out_b, in_b) = a.w.shape, b.w.shape
                shape = (in_a, out_a + out_b) if first else (in_a + in_b, out_a + out_b)
                layer = (np.zeros(shape, dtype=np.float32), np.zeros(out_a + out_b, np.float32))
                self.pairs.append((a, b, layer, first))
                self.layers.append(layer)
                first = False
            else:
                self.layers.append(a)  # an activation (same kind in both) or the shared Inputs
        self.width = pi[-1].w.shape[0]  # the policy head's outputs come first
        self.fill()

    @staticmethod
    def fits(pi: list, v: list) -> bool:
        """Same layer kinds and activations, dense layers only (no tables), Inputs only
        first: what ``Packed`` can merge."""
        if len(pi) != len(v) or not pi or not isinstance(pi[-1], Dense):
            return False
        for i, (a, b) in enumerate(zip(pi, v, strict=True)):
            if type(a) is not type(b) or isinstance(a, Table):
                return False
            if isinstance(a, Activation) and a.kind is not b.kind:
                return False
            if isinstance(a, Inputs) and (i > 0 or a.start != b.start
                                          or (a.eye is None) != (b.eye is None)):
                return False
        return True

    def fill(self) -> None:
        for a, b, (wt, bias), first in self.pairs:
            (out_a, in_a) = a.w.shape
            if first:
                wt[:, :out_a], wt[:, out_a:] = a.wt, b.wt
            else:
                wt[:in_a, :out_a], wt[in_a:, out_a:] = a.wt, b.wt
            bias[:out_a], bias[out_a:] = a.b, b.b

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(policy head output, V(s))."""
        for layer in self.layers:
            if isinstance(layer, tuple):
                x = x @ layer[0]
                x += layer[1]
            else:
                x = layer.forward(x)
        return x[:, :self.width], x[:, self.width]
