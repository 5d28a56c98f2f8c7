"""Learning on CartPole-v1 at small budgets with fixed seeds (the real training loop)."""

from __future__ import annotations

import pandas as pd
import pytest

from pgrun.train import train
from tests.conftest import compose_config


def _train(tmp_path, *overrides):
    cfg = compose_config("progress=none", "checkpoint.enabled=false", *overrides)
    summary = train(cfg, tmp_path)
    return summary, pd.read_csv(tmp_path / "metrics.csv"), pd.read_csv(tmp_path / "eval.csv")


@pytest.mark.parametrize("algo", ["reinforce", "vpg", "ppo"])
def test_every_algorithm_improves_clearly(tmp_path, algo):
    summary, metrics, evals = _train(tmp_path, f"algo={algo}", "total_steps=25000",
                                     "eval.interval=5000", "seed=1")
    early = metrics["return_mean"].dropna().iloc[:3].mean()  # a random policy: ~20
    late = metrics["return_mean"].dropna().iloc[-5:].mean()
    assert early < 40
    assert late > 3 * early, (early, late)
    assert evals["return_mean"].iloc[-2:].mean() > 150, evals


@pytest.mark.slow  # ~35 s; test_every_algorithm_improves_clearly[ppo] keeps PPO's learning in the default suite
def test_ppo_preset_solves_cartpole_within_100k_steps(tmp_path):
    summary, _, evals = _train(tmp_path, "algo=ppo", "env=CartPole-v1", "seed=0")
    assert summary["steps"] <= 100_000 + 256
    assert summary["steps_to_threshold"] is not None, evals
    assert evals["return_mean"].max() >= 475


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["reinforce", "vpg", "ppo"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_presets_reach_threshold(tmp_path, algo, seed):
    summary, _, evals = _train(tmp_path, f"algo={algo}", f"seed={seed}")
    assert summary["steps_to_threshold"] is not None, evals
