"""The algorithm registry: ``algo.name`` → class. Each class declares its config
dataclass, checks, metric columns and checkpointed state (``base.Algorithm``)."""

from pgrun.algos.base import Algorithm
from pgrun.algos.grpo import GRPO
from pgrun.algos.ppo import PPO
from pgrun.algos.ppo_kl import PPOKL
from pgrun.algos.reinforce import Reinforce
from pgrun.algos.trpo import TRPO
from pgrun.algos.vpg import VPG

ALGORITHMS: dict[str, type[Algorithm]] = {
    cls.name: cls for cls in (Reinforce, VPG, PPO, GRPO, PPOKL, TRPO)}

__all__ = ["ALGORITHMS", "Algorithm"]
