"""What a checkpoint holds, as plain containers, and how it is put back.

A checkpoint is written at an update boundary (after that update's metrics row) and holds
everything the rest of the run depends on, so a resumed run computes what the
uninterrupted run would have:

* ``agent``, ``optimizers``: weights and optimizer states (Adam moments and step counts);
* ``step``, ``update``, ``episodes``: the counters; the learning-rate and clip schedules
  are functions of ``step / total_steps``, so the step is their position;
* ``rng``: the python, NumPy (global) and torch generator states, and ``collector``: the
  rollout's own generators, its current (raw) observations, autoreset flags and the
  returns and lengths of the episodes in progress, and the reward scaler's statistics
  and running returns (``Collector.state_dict``);
* ``env_state``: the vector environment's state where it can be captured safely (see
  ``capture_env_state``), else None, and then episodes restart on resume (recorded in
  summary.json under ``resumes``);
* ``obs_normalizer``: the observation normalizer's running mean, variance and count (and
  its clip and ε), or None without ``normalize.obs``; ``pgrun eval`` normalizes with them;
* ``eval``: evaluation bookkeeping (next evaluation step, returns so far, steps to the
  reward threshold); ``time``: wall time so far by phase; ``resumes``: earlier resumes.

NumPy arrays are stored as tensors with their dtype (``encode``/``decode``), generator
states as their plain ``bit_generator.state`` dicts: nothing needs pickled objects, so
``torch.load(..., weights_only=True)`` reads it.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

FORMAT = 4  # 4: torch.optim state dicts, the algorithm's own state ("algo"), ActorCritic module names

_ARRAY = "__ndarray__"
_RENAMED = (("pi_head.", "head.out."), ("v_head.", "v_out."), ("log_std", "head.log_std"))
"""Module names of checkpoint formats ≤ 3 (``Agent``) → today's ``ActorCritic``."""


def agent_state(ckpt: dict) -> dict:
    """The policy's state dict, with older formats' parameter names updated (``pgrun eval``
    reads checkpoints of any format; resuming needs the current one)."""
    state = ckpt["agent"]
    if ckpt.get("format", FORMAT) >= 4:
        return state
    renamed = {}
    for key, value in state.items():
        for old, new in _RENAMED:
            if key.startswith(old):
                key = new + key[len(old):]
                break
        renamed[key] = value
    return renamed


# ------------------------------------------------------------------ plain encoding

def encode(value: Any) -> Any:
    """NumPy arrays (anywhere in dicts/lists/tuples) → {"__ndarray__": tensor, "dtype": str}."""
    if isinstance(value, np.ndarray):
        arr = value
        if arr.dtype in (np.uint16, np.uint32, np.uint64):
            arr = arr.astype(np.int64) if arr.dtype != np.uint64 else arr.view(np.int64)
        return {_ARRAY: torch.from_numpy(np.ascontiguousarray(arr)).clone(), "dtype": str(value.dtype)}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: encode(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(encode(v) for v in value)
    return value


def decode(value: Any) -> Any:
    if isinstance(value, dict):
        if _ARRAY in value:
            arr = value[_ARRAY].numpy()
            dtype = np.dtype(value["dtype"])
            return arr.view(dtype) if dtype == np.uint64 else arr.astype(dtype)
        return {k: decode(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(decode(v) for v in value)
    return value


# ------------------------------------------------------------------------- RNGs

def global_rng_state() -> dict:
    return {"python": random.getstate(),
            "numpy": encode(np.random.get_state(legacy=False)),  # noqa: NPY002 (seeded by seed_everything)
            "torch": torch.get_rng_state()}


def set_global_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np.random.set_state(decode(state["numpy"]))  # noqa: NPY002
    torch.set_rng_state(state["torch"])


def generator_state(gen: np.random.Generator) -> dict:
    return encode(gen.bit_generator.state)


def set_generator_state(gen: np.random.Generator, state: dict) -> None:
    gen.bit_generator.state = decode(state)


# ---------------------------------------------------------------- vector env state

def _cartpole_vector_env():
    from gymnasium.envs.classic_control.cartpole import CartPoleVectorEnv
    return CartPoleVectorEnv


_CARTPOLE_ARRAYS = ("state", "steps", "prev_done")
_CARTPOLE_SCALARS = ("low", "high", "max_episode_steps", "steps_beyond_terminated")


def capture_env_state(envs) -> dict | None:
    """The vector env's state as plain data, or None where it cannot be captured safely.

    Captured: gymnasium's NumPy ``CartPoleVectorEnv`` (unwrapped): its state arrays, step
    counters, pending-autoreset flags and its ``np_random`` bit-generator state. Every other
    env (Python envs in a Sync/AsyncVectorEnv keep their state in arbitrary objects) → None.
    """
    if type(envs) is not _cartpole_vector_env() or envs.state is None:
        return None
    out = {"kind": "CartPoleVectorEnv", "num_envs": int(envs.num_envs),
           "np_random": generator_state(envs.np_random)}
    for name in _CARTPOLE_ARRAYS:
        out[name] = encode(np.array(getattr(envs, name)))
    for name in _CARTPOLE_SCALARS:
        out[name] = getattr(envs, name)
    return out


def env_state_fits(envs, state: dict | None) -> bool:
    """Whether ``restore_env_state`` can put ``state`` into ``envs``."""
    return (state is not None and state.get("kind") == "CartPoleVectorEnv"
            and type(envs) is _cartpole_vector_env()
            and state["num_envs"] == envs.num_envs
            and state["max_episode_steps"] == envs.max_episode_steps)


def restore_env_state(envs, state: dict | None) -> bool:
    """Put a captured state back into a vector env of the same kind (after its first
    reset); False, and the env untouched, when it does not fit."""
    if not env_state_fits(envs, state):
        return False
    for name in _CARTPOLE_ARRAYS:
        setattr(envs, name, decode(state[name]))
    for name in ("low", "high", "steps_beyond_terminated"):
        setattr(envs, name, state[name])
    set_generator_state(envs.np_random, state["np_random"])
    return True


# ------------------------------------------------------------------- the collector

def capture_collector(collector, with_episodes: bool) -> dict:
    """``Collector.state_dict``, encoded: the rollout's generators, the reward scaler's
    statistics and, with ``with_episodes`` (the env state was captured too), the episodes
    in progress."""
    return encode(collector.state_dict(with_episodes))


def restore_collector(collector, state: dict, with_episodes: bool) -> None:
    collector.load_state_dict(decode(state), with_episodes)


# ------------------------------------------------------------ observation normalizer

def capture_normalizer(collector) -> dict | None:
    """The collector's ``obs_normalizer`` statistics (mean, var, count, clip, epsilon), or
    None when observations are not normalized."""
    norm = getattr(collector, "obs_normalizer", None)
    return encode(norm.state_dict()) if norm is not None else None


def restore_normalizer(collector, state: dict | None) -> None:
    norm = getattr(collector, "obs_normalizer", None)
    if norm is not None and state is not None:
        norm.load_state_dict(decode(state))
