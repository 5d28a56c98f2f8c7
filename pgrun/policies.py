"""Policies are ``nn.Module``\\ s. The interface every algorithm relies on:

  ``policy(obs) -> (dist, value)``

``obs`` is a batch of observations as ``pgrun/obs.py`` encodes them (a tensor: int64 state
indices for a Discrete space, uint8 for images, float32 otherwise, a Dict/Tuple's entries
flattened side by side); ``dist`` a ``pgrun.distributions.Distribution``
over the batch's actions (``log_prob``, ``entropy``, ``mode``, ``sample``, ``kl``);
``value`` the batch's V(s), shape (N,), or None for a policy without a critic. Optional:
``value(obs)`` (V alone; default ``policy(obs)[1]``) and ``policy_parameters()`` /
``value_parameters()`` (VPG and TRPO optimize the two separately).

Built in (``ActorCritic``, by ``policy.kind``): an ``mlp`` body on a Box (flattened), or
on the one-hot code of a Discrete observation, a ``tabular`` one (a row of parameters per
state, initialized to zero: the uniform policy and V = 0), and a ``cnn`` body
(Nature-DQN: three convolutions and a 512-unit layer) for images (uint8 H×W×C or C×H×W,
scaled to [0, 1] inside); a Dict/Tuple observation goes through ``MultiInputBody`` (one
encoder per entry, concatenated) and then the MLP. Heads: ``CategoricalHead`` for
Discrete and MultiDiscrete actions, ``BernoulliHead`` for MultiBinary, ``GaussianHead``
for Box actions. A user's own module is named by ``policy.module`` (see
``build_policy``) and may use these heads.

``ActorCritic.outputs`` (the networks' raw outputs) is where an optional accelerator
(``pgrun/accelerate.py``) may stand in for the torch layers of plain MLP and tabular
bodies; everything downstream — distributions, losses, gradients — is autograd's.
"""

from __future__ import annotations

import logging
import math

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from pgrun.config import ACTIVATION_NAMES, ConfigError
from pgrun.distributions import (
    LOG_STD_MAX,
    LOG_STD_MIN,
    ActionBounds,
    Bernoulli,
    Categorical,
    DiagGaussian,
    MultiCategorical,
)
from pgrun.envs.factory import check_spaces
from pgrun.obs import ObsLayout, is_image_space

log = logging.getLogger("pgrun")

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU, "gelu": nn.GELU}
assert tuple(ACTIVATIONS) == ACTIVATION_NAMES


# ---------------------------------------------------------------------------- inputs

class StateIndex(nn.Module):
    """Discrete observation → int64 row index (obs − start): the input of a table."""

    def __init__(self, n: int, start: int = 0):
        super().__init__()
        self.n, self.start = n, start

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return obs.long() - self.start


class OneHot(nn.Module):
    """Discrete observation → its one-hot code (float32, n wide): the input of an MLP."""

    def __init__(self, n: int, start: int = 0):
        super().__init__()
        self.n, self.start = n, start

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return nn.functional.one_hot(obs.long() - self.start, self.n).float()


class Flat(nn.Module):
    """An observation of ``ndim`` dimensions → one float32 vector (an MLP's input), for
    any leading batch dimensions."""

    def __init__(self, ndim: int):
        super().__init__()
        self.ndim = ndim

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return obs.flatten(-self.ndim).float()


class NatureCNN(nn.Module):
    """Mnih et al. 2015's convolutional body on uint8 images: x/255, conv 32×8×8 stride 4,
    conv 64×4×4 stride 2, conv 64×3×3 stride 1, dense 512, ReLU after each. ``channels_last``:
    the observations are H×W×C (permuted to C×H×W inside). ``precision="bfloat16"``: the
    layers compute in bfloat16 under ``torch.autocast`` (weights, their gradients and the
    features returned stay float32); Pong trains ≈ 1.5× faster so on CPUs with AVX512-BF16
    (``benchmarks/atari_speed.py``)."""

    def __init__(self, shape: tuple[int, ...], channels_last: bool, features: int = 512,
                 precision: str = "float32"):
        super().__init__()
        self.channels_last = channels_last
        self.precision = precision
        c = shape[-1] if channels_last else shape[0]
        self.convs = nn.Sequential(
            nn.Conv2d(c, 32, 8, stride=4), nn.ReLU(),
            nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=1), nn.ReLU(), nn.Flatten(-3))
        with torch.no_grad():
            n_flat = self.convs(torch.zeros(1, *self._chw(shape))).shape[-1]
        self.dense = nn.Sequential(nn.Linear(n_flat, features), nn.ReLU())
        self.out_features = features

    def _chw(self, shape):
        return (shape[2], shape[0], shape[1]) if self.channels_last else tuple(shape)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        if not self.channels_last:  # C×H×W images laid out H×W×C in memory (a uint8 copy)
            obs = obs.movedim(-3, -1).contiguous()
        # (…, C, H, W) with channels-last strides: oneDNN's convolutions on the CPU run
        # ≈1.4× faster on them (benchmarks/atari_speed.py); the arithmetic is the same
        x = (obs.float() / 255.0).movedim(-1, -3)
        if self.precision == "bfloat16":
            with torch.autocast(x.device.type, dtype=torch.bfloat16):
                return self.dense(self.convs(x)).float()
        return self.dense(self.convs(x))


class MultiInputBody(nn.Module):
    """A Dict/Tuple observation (encoded by ``pgrun/obs.py``: its entries flattened side by
    side) through one encoder per entry, outputs concatenated, as Stable-Baselines3's
    ``CombinedExtractor``: NatureCNN (256 features) for image entries when ``cnn``, the
    one-hot code for Discrete ones, the flattened values for the rest."""

    def __init__(self, layout: ObsLayout, cnn: bool = True, precision: str = "float32"):
        super().__init__()
        self.fields, encoders, width = [], [], 0
        for f in layout.fields:
            kind = f.kind if (f.kind != "image" or cnn) else "flat"
            if kind == "image":
                shape = tuple(f.space.shape)
                enc: nn.Module = NatureCNN(shape, channels_last=shape[-1] <= 4, features=256,
                                           precision=precision)
                width += enc.out_features
            elif kind == "discrete":
                enc = OneHot(int(f.space.n), int(f.space.start))
                width += enc.n
            else:
                enc = nn.Identity()
                width += f.size
            self.fields.append((f.start, f.size, tuple(f.space.shape), kind))
            encoders.append(enc)
        self.encoders = nn.ModuleList(encoders)
        self.out_features = width

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        parts = []
        for (start, size, shape, kind), enc in zip(self.fields, self.encoders, strict=True):
            x = obs[..., start:start + size]  # any leading batch dimensions
            if kind == "image":
                x = x.reshape(*x.shape[:-1], *shape)
            elif kind == "discrete":
                x = x[..., 0]
            parts.append(enc(x))
        return torch.cat(parts, dim=-1)


def mlp(sizes: list[int], activation: str) -> nn.Sequential:
    """Linear layers with the activation after each (sizes[0] in, sizes[-1] out)."""
    layers: list[nn.Module] = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True):
        layers += [nn.Linear(n_in, n_out), ACTIVATIONS[activation]()]
    return nn.Sequential(*layers)


def orthogonal_init(module: nn.Module, gain: float) -> None:
    """Orthogonal weights with the given gain, zero biases (as in Engstrom et al. 2020)."""
    for layer in module.modules():
        if isinstance(layer, nn.Linear | nn.Conv2d):
            nn.init.orthogonal_(layer.weight, gain)
            nn.init.zeros_(layer.bias)


# ----------------------------------------------------------------------------- heads

class CategoricalHead(nn.Module):
    """Features → logits (a Linear, or a table row) → ``Categorical``, or with ``nvec``
    (MultiDiscrete actions) one Categorical per factor, ``MultiCategorical``."""

    def __init__(self, out: nn.Module, nvec=None):
        super().__init__()
        self.out = out
        self.nvec = None if nvec is None else [int(n) for n in nvec]

    def distribution(self, z: torch.Tensor) -> Categorical | MultiCategorical:
        return Categorical(z) if self.nvec is None else MultiCategorical(z, self.nvec)

    def forward(self, features: torch.Tensor):
        return self.distribution(self.out(features))


class BernoulliHead(nn.Module):
    """Features → logits → ``Bernoulli`` (MultiBinary actions: independent 0/1 factors)."""

    def __init__(self, out: nn.Module):
        super().__init__()
        self.out = out

    def distribution(self, z: torch.Tensor) -> Bernoulli:
        return Bernoulli(z)

    def forward(self, features: torch.Tensor) -> Bernoulli:
        return self.distribution(self.out(features))


class GaussianHead(nn.Module):
    """Features → μ (and log σ with ``state_dependent_std``, clamped to [LOG_STD_MIN,
    LOG_STD_MAX]; else log σ is a free parameter per dimension) → ``DiagGaussian``."""

    def __init__(self, out: nn.Module, act_dim: int, bounds: ActionBounds | None,
                 log_std_init: float = 0.0, state_dependent_std: bool = False):
        super().__init__()
        self.out, self.act_dim, self.bounds = out, act_dim, bounds
        self.state_dependent_std = state_dependent_std
        if not state_dependent_std:
            self.log_std = nn.Parameter(torch.full((act_dim,), float(log_std_init)))

    def distribution(self, z: torch.Tensor) -> DiagGaussian:
        if self.state_dependent_std:
            mean, log_std = z.split(self.act_dim, dim=-1)
            return DiagGaussian(mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX), self.bounds)
        return DiagGaussian(z, self.log_std, self.bounds)

    def forward(self, features: torch.Tensor) -> DiagGaussian:
        return self.distribution(self.out(features))


# ---------------------------------------------------------------------- actor-critic

class ActorCritic(nn.Module):
    """π(a|s) and optionally V(s) on separate bodies (or one shared body)."""

    def __init__(self, obs_space: gym.Space, act_space: gym.Space, *, kind: str = "mlp",
                 hidden_sizes=(64, 64), activation: str = "tanh", with_value: bool = True,
                 shared: bool = False, ortho_init: bool = True,
                 bounds: ActionBounds | None = None, log_std_init: float = 0.0,
                 state_dependent_std: bool = False, cnn_precision: str = "float32"):
        super().__init__()
        discrete_obs = isinstance(obs_space, gym.spaces.Discrete)
        layout = ObsLayout(obs_space)
        composite = layout.kind == "composite"
        has_image = (any(f.kind == "image" for f in layout.fields) if composite
                     else is_image_space(obs_space))
        if kind == "tabular" and not discrete_obs:
            raise ConfigError(f"policy.kind=tabular needs a Discrete observation space; this "
                              f"environment observes {obs_space} (use policy.kind=mlp or auto).")
        if kind == "cnn" and not has_image:
            raise ConfigError(f"policy.kind=cnn needs image observations (a uint8 Box of shape "
                              f"H×W×C or C×H×W, at least 36×36, or a Dict/Tuple with one); "
                              f"this environment observes {obs_space} (use policy.kind=mlp "
                              "or auto).")
        if cnn_precision != "float32" and kind != "cnn":
            raise ConfigError(f"policy.cnn_precision={cnn_precision} sets the precision of the "
                              f"cnn body's layers; this policy has none (policy.kind={kind}). "
                              "Use policy.cnn_precision=float32, or policy.kind=cnn on images.")
        self.kind, self.with_value = kind, with_value
        self.shared = shared and with_value and (kind == "cnn" or bool(hidden_sizes))
        continuous = isinstance(act_space, gym.spaces.Box)
        if continuous:
            act_dim = int(act_space.shape[0])
        elif isinstance(act_space, gym.spaces.MultiDiscrete):
            act_dim = int(np.sum(act_space.nvec))
        elif isinstance(act_space, gym.spaces.MultiBinary):
            act_dim = int(act_space.n)
        else:
            act_dim = int(act_space.n)
        n_out = 2 * act_dim if continuous and state_dependent_std else act_dim

        def body() -> tuple[nn.Module, int]:
            if kind == "tabular":
                return StateIndex(int(obs_space.n), int(obs_space.start)), int(obs_space.n)
            if kind == "cnn" and not composite:
                net = NatureCNN(obs_space.shape, channels_last=obs_space.shape[-1] <= 4,
                                precision=cnn_precision)
                return net, net.out_features
            layers: list[nn.Module] = []
            if composite:  # one encoder per entry (CNN for images unless kind=mlp)
                layers.append(MultiInputBody(layout, cnn=kind == "cnn", precision=cnn_precision))
                width = layers[-1].out_features
            elif discrete_obs:
                width = int(obs_space.n)
                layers.append(OneHot(width, int(obs_space.start)))
            elif len(obs_space.shape) > 1:  # a grid of numbers (highway-env's 5×5), an image
                layers.append(Flat(len(obs_space.shape)))
                width = int(np.prod(obs_space.shape))
            else:
                width = int(obs_space.shape[0])
            if hidden_sizes:
                layers.append(mlp([width, *hidden_sizes], activation))
                width = hidden_sizes[-1]
            return (nn.Sequential(*layers) if layers else nn.Identity()), width

        def out(features: int, n: int) -> nn.Module:
            if kind == "tabular":
                table = nn.Embedding(features, n)
                nn.init.zeros_(table.weight)
                return table
            return nn.Linear(features, n)

        self.pi_body, feat = body()
        if continuous:
            self.head: nn.Module = GaussianHead(out(feat, n_out), act_dim, bounds, log_std_init,
                                                state_dependent_std)
        elif isinstance(act_space, gym.spaces.MultiBinary):
            self.head = BernoulliHead(out(feat, n_out))
        else:
            self.head = CategoricalHead(out(feat, n_out), getattr(act_space, "nvec", None))
        if with_value:
            if self.shared:
                self.v_body = self.pi_body
            else:
                self.v_body, feat = body()
            self.v_out = out(feat, 1)
        if ortho_init and kind != "tabular":
            orthogonal_init(self.pi_body, math.sqrt(2))
            orthogonal_init(self.head.out, 0.01)
            if with_value:
                if not self.shared:
                    orthogonal_init(self.v_body, math.sqrt(2))
                orthogonal_init(self.v_out, 1.0)
        if continuous and state_dependent_std:  # the log σ half starts at log_std_init
            with torch.no_grad():
                bias = self.head.out.bias if kind != "tabular" else self.head.out.weight
                bias[..., act_dim:] = float(log_std_init)
        self.accelerator = None  # set by pgrun.accelerate.attach where it is exact

    def __getstate__(self):
        """Copies (``copy.deepcopy``) start without the accelerator and the flat buffers
        (``flat.py``): both belong to the original's parameters."""
        state = {**self.__dict__, "accelerator": None}
        state.pop("_pgrun_flat", None)
        return state

    # -- parameters by role (VPG and TRPO optimize them separately)
    def policy_parameters(self) -> list[nn.Parameter]:
        return [*self.pi_body.parameters(), *self.head.parameters()]

    def value_parameters(self) -> list[nn.Parameter]:
        if not self.with_value:
            return []
        body = [] if self.shared else list(self.v_body.parameters())
        return [*body, *self.v_out.parameters()]

    # -- forward
    def outputs(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(the policy head's raw output z, V(s) or None)."""
        if self.accelerator is not None and self.accelerator.handles(obs):
            return self.accelerator.outputs(obs)
        h = self.pi_body(obs)
        z = self.head.out(h)
        if not self.with_value:
            return z, None
        hv = h if self.shared else self.v_body(obs)
        return z, self.v_out(hv).squeeze(-1)

    def forward(self, obs: torch.Tensor):
        z, value = self.outputs(obs)
        return self.head.distribution(z), value

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        if self.accelerator is not None and self.accelerator.handles(obs):
            return self.accelerator.value(obs)
        hv = self.pi_body(obs) if self.shared else self.v_body(obs)
        return self.v_out(hv).squeeze(-1)


# --------------------------------------------------------------------------- building

def resolve_kind(kind: str, obs_space: gym.Space) -> str:
    """``auto``: tabular for Discrete observations, cnn for images (and for a Dict/Tuple
    with an image entry: the CNN encodes those entries), mlp otherwise."""
    if kind == "auto":
        if isinstance(obs_space, gym.spaces.Discrete):
            return "tabular"
        layout = ObsLayout(obs_space)
        if layout.kind == "composite":
            return "cnn" if any(f.kind == "image" for f in layout.fields) else "mlp"
        return "cnn" if is_image_space(obs_space) else "mlp"
    return kind


def action_bounds(policy_cfg, act_space: gym.Space) -> ActionBounds | None:
    """The Box's bounds as ``policy.action_bounds`` maps into them (None for Discrete)."""
    if not isinstance(act_space, gym.spaces.Box):
        return None
    mode = getattr(policy_cfg, "action_bounds", "clip")
    try:
        return ActionBounds(act_space.low, act_space.high, mode)
    except ValueError as err:
        raise ConfigError(f"policy.action_bounds={mode}: {err} ({act_space}); use "
                          "policy.action_bounds=clip.") from None


def build_policy(policy_cfg, obs_space: gym.Space, act_space: gym.Space,
                 with_value: bool) -> nn.Module:
    """The policy for the spaces of a (single) environment: ``ActorCritic``, or the user's
    module named by ``policy.module`` (``pkg.mod:Class``, called as
    ``Class(obs_space, act_space, with_value=..., **policy.kwargs)``), checked against the
    interface on a sample observation. Unsupported spaces are a ConfigError naming them.
    (Keys missing from an older run's saved config take their defaults.)"""
    check_spaces(obs_space, act_space)  # the one place that decides what is supported
    dropped = ObsLayout(obs_space).dropped
    if dropped:
        log.info("observation entries %s have no encoding in pgrun and are left out (select "
                 "entries with gymnasium.wrappers.FilterObservation in env.wrappers)",
                 ", ".join(dropped))
    opt = lambda key, default: getattr(policy_cfg, key, default)  # noqa: E731
    module_path = opt("module", None)
    if module_path:
        if opt("cnn_precision", "float32") != "float32":
            raise ConfigError(f"policy.cnn_precision={policy_cfg.cnn_precision} sets the "
                              f"precision of pgrun's cnn body; policy.module={module_path} is "
                              "your own module (use torch.autocast inside it instead). Use "
                              "policy.cnn_precision=float32.")
        from pgrun.user_policy import build_user_policy
        return build_user_policy(module_path, dict(opt("kwargs", {}) or {}), obs_space,
                                 act_space, with_value)
    return ActorCritic(
        obs_space, act_space,
        kind=resolve_kind(opt("kind", "auto"), obs_space),
        hidden_sizes=list(policy_cfg.hidden_sizes),
        activation=policy_cfg.activation,
        with_value=with_value,
        shared=policy_cfg.shared,
        ortho_init=policy_cfg.ortho_init,
        bounds=action_bounds(policy_cfg, act_space),
        log_std_init=float(opt("log_std_init", 0.0)),
        state_dependent_std=bool(opt("state_dependent_std", False)),
        cnn_precision=opt("cnn_precision", "float32"),
    )


def obs_dtype(obs_space: gym.Space) -> type:
    """How observations are stored and fed (``pgrun/obs.py``): int64 state indices, uint8
    images, float32 otherwise."""
    return ObsLayout(obs_space).dtype


def policy_value(policy: nn.Module, obs: torch.Tensor) -> torch.Tensor:
    """V(s) alone: ``policy.value`` where the module has it, else ``policy(obs)[1]``."""
    value = getattr(policy, "value", None)
    return value(obs) if callable(value) else policy(obs)[1]


def parameters_by_role(policy: nn.Module, role: str) -> list[nn.Parameter]:
    """``policy`` or ``value`` parameters (``policy_parameters()`` / ``value_parameters()``
    where the module has them), or ``all``."""
    if role == "all":
        return list(policy.parameters())
    method = getattr(policy, f"{role}_parameters", None)
    if method is None:
        raise ConfigError(f"this algorithm optimizes the policy and the value function "
                          f"separately: the policy module {type(policy).__name__} needs "
                          f"policy_parameters() and value_parameters() methods.")
    return list(method())
