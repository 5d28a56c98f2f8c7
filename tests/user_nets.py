"""Policy modules a user might write, for tests/test_policy_modules.py."""

from __future__ import annotations

import torch
from torch import nn

from pgrun.policies import CategoricalHead


class TinyNet(nn.Module):
    """A LayerNorm MLP with pgrun's categorical head and a value head."""

    def __init__(self, obs_space, act_space, with_value=True, width=32):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(obs_space.shape[0], width), nn.LayerNorm(width),
                                  nn.Tanh())
        self.head = CategoricalHead(nn.Linear(width, int(act_space.n)))
        self.v = nn.Linear(width, 1) if with_value else None

    def forward(self, obs):
        h = self.body(obs)
        return self.head(h), (self.v(h).squeeze(-1) if self.v is not None else None)


class LogitsOnly(nn.Module):
    """Returns raw logits instead of (distribution, value): does not fit the interface."""

    def __init__(self, obs_space, act_space, with_value=True):
        super().__init__()
        self.net = nn.Linear(obs_space.shape[0], int(act_space.n))

    def forward(self, obs):
        return self.net(obs)


def not_a_module(obs_space, act_space, with_value=True):
    return torch.zeros(3)
