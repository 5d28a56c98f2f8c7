"""The tutorials' own experiments, as one-line presets, reach their targets."""

from __future__ import annotations

import pytest
import torch

from pgrun.runfolder import load_checkpoint
from pgrun.train import train
from tests.conftest import compose_config


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tabular_reinforce_finds_the_8_step_gridworld_path_within_20k_steps(tmp_path, seed):
    cfg = compose_config("algo=reinforce", "env=GridWorld-v0", f"seed={seed}", "progress=none")
    assert cfg.policy.kind == "tabular" and cfg.total_steps == 20000  # the preset
    summary = train(cfg, tmp_path)
    assert summary["steps_to_threshold"] is not None, summary  # greedy return −69 reached
    assert summary["final_eval_return"] == -69.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_reinforce_bandit_puts_90_percent_on_the_best_arm_within_1000_pulls(tmp_path, seed):
    cfg = compose_config("algo=reinforce", "env=Bandit-v0", f"seed={seed}", "progress=none")
    summary = train(cfg, tmp_path)
    assert summary["steps"] <= 1000
    logits = load_checkpoint(tmp_path / "checkpoint.pt")["agent"]["head.out.weight"][0]
    probs = torch.softmax(logits, -1)
    assert probs.argmax() == 1 and probs[1] >= 0.9, probs
