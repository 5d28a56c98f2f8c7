"""Observation spaces → how observations are stored and fed to the policy (one place).

* ``Discrete``: int64 state indices, shape (N,);
* an image — a uint8 Box H×W×C or C×H×W with C ≤ 4 and H, W ≥ 36 (the smallest input
  Nature-DQN's convolutions take): uint8, as it is;
* any other Box (any shape: highway-env's 5×5 kinematics, a 7×7×3 MiniGrid grid),
  MultiBinary, MultiDiscrete: float32, as it is (the MLP flattens it);
* ``Dict`` / ``Tuple``: each supported entry (those above) flattened to float32 and
  concatenated into one vector per observation, in key order; ``ObsLayout.fields`` says
  where each entry lies, so the policy's combined body (``policies.MultiInputBody``)
  takes them apart again. Entries of any other space (MiniGrid's ``mission`` text) are
  dropped; ``dropped`` names them (to select entries yourself, put
  ``gymnasium.wrappers.FilterObservation`` in ``env.wrappers``).

The rollout buffers, evaluation and the policy all see ``ObsLayout.encode``'s arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np

MIN_IMAGE_SIDE = 36
"""The smallest height and width NatureCNN's convolutions (8/4, 4/2, 3/1) accept."""


def is_image_space(space: gym.Space) -> bool:
    """A uint8 Box of shape H×W×C or C×H×W (C ≤ 4 on one side, H and W ≥ 36): what the
    CNN body takes."""
    if not (isinstance(space, gym.spaces.Box) and space.dtype == np.uint8
            and len(space.shape) == 3):
        return False
    shape = space.shape
    hw = shape[:2] if shape[-1] <= 4 else shape[1:] if shape[0] <= 4 else (0, 0)
    return min(hw) >= MIN_IMAGE_SIDE


def entry_kind(space: gym.Space) -> str | None:
    """How one (non-composite) space is encoded: ``discrete``, ``image``, ``flat``, or
    None where pgrun has no encoding for it."""
    if isinstance(space, gym.spaces.Discrete):
        return "discrete"
    if is_image_space(space):
        return "image"
    if isinstance(space, gym.spaces.Box) and len(space.shape) >= 1:
        return "flat"
    if isinstance(space, gym.spaces.MultiBinary | gym.spaces.MultiDiscrete):
        return "flat"
    return None


def is_composite(space: gym.Space) -> bool:
    return isinstance(space, gym.spaces.Dict | gym.spaces.Tuple)


@dataclass(frozen=True)
class Field:
    """One entry of a Dict/Tuple observation inside the encoded vector."""

    key: str | int
    space: gym.Space
    kind: str
    start: int
    size: int


class ObsLayout:
    """How observations of ``space`` are stored (``dtype``) and encoded (``encode``)."""

    def __init__(self, space: gym.Space):
        self.space = space
        self.fields: list[Field] = []
        self.dropped: list[str] = []
        if not is_composite(space):
            self.kind = entry_kind(space)
            self.dtype = {"discrete": np.int64, "image": np.uint8}.get(self.kind, np.float32)
            return
        self.kind, self.dtype = "composite", np.float32
        items = (space.spaces.items() if isinstance(space, gym.spaces.Dict)
                 else enumerate(space.spaces))
        start = 0
        for key, sub in items:
            kind = entry_kind(sub)
            if kind is None:
                self.dropped.append(f"{key!r} ({sub})")
                continue
            size = 1 if kind == "discrete" else int(np.prod(sub.shape))
            self.fields.append(Field(key, sub, kind, start, size))
            start += size
        self.width = start

    @property
    def supported(self) -> bool:
        return bool(self.fields) if self.kind == "composite" else self.kind is not None

    def encode(self, obs) -> np.ndarray:
        """A batch of observations (a vector env's) as one array: (N, ...) as stored."""
        if self.kind != "composite":
            return np.asarray(obs, dtype=self.dtype)
        parts = [np.asarray(obs[f.key], dtype=np.float32) for f in self.fields]
        n = len(parts[0])
        return np.concatenate([p.reshape(n, -1) for p in parts], axis=1)

    def encode_one(self, obs) -> np.ndarray:
        """A single env's observation, encoded without the batch axis."""
        if self.kind != "composite":
            return np.asarray(obs, dtype=self.dtype)
        return np.concatenate([np.asarray(obs[f.key], dtype=np.float32).reshape(-1)
                               for f in self.fields])
