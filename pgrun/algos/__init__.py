"""The algorithm registry: ``algo.name`` → class."""

from pgrun.algos.base import Algorithm
from pgrun.algos.grpo import GRPO
from pgrun.algos.ppo import PPO
from pgrun.algos.reinforce import Reinforce
from pgrun.algos.vpg import VPG

ALGORITHMS: dict[str, type[Algorithm]] = {
    "reinforce": Reinforce, "vpg": VPG, "ppo": PPO, "grpo": GRPO}

__all__ = ["ALGORITHMS", "Algorithm"]
