"""The diagonal Gaussian action distribution and how its samples reach a Box's bounds, in
torch (the reference ``Agent.evaluate``) and NumPy (``NumpyAgent``: rollout and update).

  π(u|s) = Π_i N(u_i; μ_i(s), σ_i²),   log π(u|s) = Σ_i [−½((u_i − μ_i)/σ_i)² − log σ_i − ½ log 2π]
  H[π(·|s)] = Σ_i [½ + ½ log 2π + log σ_i]

σ = exp(log σ) is a learned parameter per action dimension (state-independent, the default)
or a second output of the policy head (``policy.state_dependent_std``).

**Bounds.** A Gaussian is unbounded and a Box is not. The stored action — the one the
update scores with ``evaluate(obs, actions)`` — is always the Gaussian sample u itself;
only the copy sent to the env is mapped into [low, high]. Two mappings
(``policy.action_bounds``):

* ``clip`` (default; CleanRL's and Stable-Baselines3's choice for PPO): a = clip(u, low,
  high). log π(u|s) is exact for the stored u, so likelihood ratios and the score
  function are those of the distribution that was sampled; the env simply saturates
  actions outside its range (as the physical actuator would). Cheap, and with the mean
  head initialized near zero the policy starts well inside the bounds.
* ``tanh``: a = c + s·tanh(u), c = (high + low)/2, s = (high − low)/2 (SAC's squashing).
  The density of the env action is then
  log π(a|s) = log N(u) − Σ_i log(s_i (1 − tanh² u_i)), and that is the log-prob reported,
  computed from the stored u: the correction does not depend on θ, so ratios and
  gradients equal the Gaussian's, but the figure is the true density of what the env
  received. The entropy bonus uses the Gaussian's entropy H[N(μ, σ²)] (the squashed
  distribution's has no closed form; SB3 does the same for its squashed policies).
  Needs finite bounds.

Deterministic (evaluation) actions are the mean, mapped the same way.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0
"""Range a state-dependent log σ is clamped to (a state-independent one is left free)."""

BOUNDS = ("clip", "tanh")


# ------------------------------------------------------------------------------ torch

def gaussian_log_prob(mean: torch.Tensor, log_std: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Σ_i log N(x_i; μ_i, σ_i²) over the last dimension."""
    z = (x - mean) * (-log_std).exp()
    return (-0.5 * z.pow(2) - log_std - LOG_SQRT_2PI).sum(-1)


def gaussian_entropy(log_std: torch.Tensor) -> torch.Tensor:
    """Σ_i (½ + ½ log 2π + log σ_i) over the last dimension."""
    return (0.5 + LOG_SQRT_2PI + log_std).sum(-1)


def tanh_log_det(u: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """Σ_i log |∂a_i/∂u_i| for a = c + s·tanh(u): log s + log(1 − tanh² u), the latter as
    2(log 2 − u − softplus(−2u)), which stays finite for large |u|."""
    return (log_scale + 2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))).sum(-1)


# ------------------------------------------------------------------------------ NumPy

def np_tanh_log_det(u: np.ndarray, log_scale: np.ndarray) -> np.ndarray:
    return (log_scale + 2.0 * (np.float32(math.log(2.0)) - u - np.logaddexp(np.float32(0.0), -2.0 * u))).sum(-1)


# ----------------------------------------------------------------------------- bounds

class ActionBounds:
    """Maps stored Gaussian samples u to env actions in [low, high] (see the module
    docstring): ``clip`` or ``tanh``. ``log_det`` is the log-prob correction (0 for clip)."""

    def __init__(self, low: np.ndarray, high: np.ndarray, mode: str = "clip"):
        if mode not in BOUNDS:
            raise ValueError(f"action bounds {mode!r}: one of {BOUNDS}")
        self.mode = mode
        self.low = np.asarray(low, dtype=np.float32)
        self.high = np.asarray(high, dtype=np.float32)
        if mode == "tanh":
            if not (np.isfinite(self.low).all() and np.isfinite(self.high).all()):
                raise ValueError("tanh squashing needs finite action bounds")
            self.center = (self.high + self.low) / 2
            self.scale = (self.high - self.low) / 2
            self.log_scale = np.log(self.scale).astype(np.float32)
            self._t = {name: torch.from_numpy(getattr(self, name))
                       for name in ("center", "scale", "log_scale")}
        self._t_low, self._t_high = torch.from_numpy(self.low), torch.from_numpy(self.high)

    # NumPy (rollout)
    def to_env(self, u: np.ndarray) -> np.ndarray:
        if self.mode == "clip":
            return np.clip(u, self.low, self.high)
        return np.clip(self.center + self.scale * np.tanh(u), self.low, self.high)  # clip: rounding

    def log_det(self, u: np.ndarray) -> np.ndarray | float:
        return 0.0 if self.mode == "clip" else np_tanh_log_det(u, self.log_scale)

    # torch (update, reference)
    def to_env_torch(self, u: torch.Tensor) -> torch.Tensor:
        if self.mode == "clip":
            return torch.clamp(u, self._t_low, self._t_high)
        return torch.clamp(self._t["center"] + self._t["scale"] * torch.tanh(u),
                           self._t_low, self._t_high)

    def log_det_torch(self, u: torch.Tensor) -> torch.Tensor | float:
        return 0.0 if self.mode == "clip" else tanh_log_det(u, self._t["log_scale"])
