"""Gymnasium wrappers named in the config (``env.wrappers``), applied in order to every
single env pgrun makes, for training and evaluation alike::

    env:
      wrappers:
        - _target_: minigrid.wrappers.ImgObsWrapper
        - {_target_: gymnasium.wrappers.FrameStackObservation, stack_size: 4}

Each item is Hydra's ``_target_`` form: the wrapper's import path (``pkg.mod.Name`` or
``pkg.mod:Name``), and its keyword arguments beside it; the env is the first positional
argument. The list is part of the resolved config saved with the run. A saved ``_target_``
is code, so ``pgrun eval`` imports it only with ``--trust`` (``pgrun/trust.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym

from pgrun.config import ConfigError

TARGET = "_target_"
Wrapper = Callable[[gym.Env], gym.Env]


def wrapper_specs(env_cfg) -> list[tuple[str, dict[str, Any]]]:
    """``env.wrappers`` as ``(import path, kwargs)`` pairs; a ConfigError for an item that
    is not a mapping with a ``_target_`` string."""
    items = getattr(env_cfg, "wrappers", None) or []
    try:
        from omegaconf import OmegaConf

        if OmegaConf.is_config(items):
            items = OmegaConf.to_container(items, resolve=True)
    except ImportError:  # pragma: no cover (omegaconf comes with hydra)
        pass
    if isinstance(items, dict) or not isinstance(items, list | tuple):
        raise ConfigError(f"env.wrappers={items!r}: must be a list of wrappers, e.g. "
                          f"env.wrappers='[{{{TARGET}: gymnasium.wrappers.FlattenObservation}}]'.")
    specs = []
    for i, item in enumerate(items):
        if not (isinstance(item, dict) and isinstance(item.get(TARGET), str) and item[TARGET]):
            raise ConfigError(
                f"env.wrappers[{i}]={item!r}: each wrapper is a mapping with {TARGET} (its "
                f"import path) and its keyword arguments, e.g. "
                f"{{{TARGET}: gymnasium.wrappers.TimeAwareObservation, flatten: true}}.")
        kwargs = {k: v for k, v in item.items() if k != TARGET}
        specs.append((item[TARGET], kwargs))
    return specs


def build_wrappers(env_cfg) -> list[Wrapper]:
    """The configured wrappers as functions ``env -> wrapped env`` (each import checked
    now; a wrapper that raises on the env is a ConfigError naming it)."""
    from pgrun.envs.factory import import_object

    out = []
    for i, (path, kwargs) in enumerate(wrapper_specs(env_cfg)):
        colon = path if ":" in path else ":".join(path.rsplit(".", 1))
        what = f"env.wrappers[{i}] ({TARGET}={path!r})"
        cls = import_object(colon, what, "a gymnasium wrapper class or function",
                            "gymnasium.wrappers.FlattenObservation")
        out.append(_Apply(cls, kwargs, what))
    return out


class _Apply:
    """``env -> cls(env, **kwargs)``; picklable for async workers (cloudpickle)."""

    def __init__(self, cls: Callable[..., gym.Env], kwargs: dict[str, Any], what: str):
        self.cls, self.kwargs, self.what = cls, kwargs, what

    def __call__(self, env: gym.Env) -> gym.Env:
        try:
            return self.cls(env, **self.kwargs)
        except Exception as err:  # noqa: BLE001 (the wrapper does not fit the env or kwargs)
            from pgrun.envs.factory import _describe_exception

            missing = isinstance(err, ImportError | gym.error.DependencyNotInstalled)
            advice = ("Install the package it names." if missing else
                      "Check the wrapper's arguments and its place in env.wrappers (each "
                      "wraps the one before).")
            raise ConfigError(
                f"{self.what} with {self.kwargs} could not wrap the env, whose observation "
                f"space is {env.observation_space}: {_describe_exception(err)}. "
                f"{advice}") from None
