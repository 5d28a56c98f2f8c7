"""GRPO for control: groups from one reset seed, group-standardized returns, the loss."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from pgrun.algos.grpo import GRPO, group_advantages
from pgrun.config import ConfigError, GRPOConfig
from pgrun.policies import Agent
from pgrun.rollout import Collector
from pgrun.train import train
from tests.conftest import compose_config


def _grpo(num_envs=8, group_size=4, vectorization="sync", **cfg):
    envs = gym.make_vec("CartPole-v1", num_envs, vectorization_mode=vectorization)
    torch.manual_seed(0)
    agent = Agent(4, 2, [16], with_value=False)
    algo = GRPO(OmegaConf.structured(GRPOConfig(group_size=group_size, **cfg)), agent, num_envs)
    return algo, Collector(envs, agent, seed=0)


def test_group_advantages_standardize_within_each_group():
    adv = group_advantages(np.array([1.0, 2.0, 3.0, 4.0, 10.0, 10.0, 10.0, 10.0]), 4)
    z = (np.array([1, 2, 3, 4]) - 2.5) / np.std([1, 2, 3, 4])
    np.testing.assert_allclose(adv[:4], z, rtol=1e-6)
    np.testing.assert_array_equal(adv[4:], 0.0)  # all equal: no signal


def test_groups_start_from_one_seed_and_steps_carry_their_episode_advantage():
    algo, collector = _grpo()
    batch = algo.collect(collector)
    first = batch.obs[0]
    assert (first[1:4] == first[0]).all()  # group 0: one initial state
    assert (first[5:8] == first[4]).all()  # group 1
    assert not np.array_equal(first[0], first[4])
    assert (batch.dones & batch.valid).sum(axis=0).tolist() == [1] * 8  # one episode each

    returns = (batch.rewards * batch.valid).sum(axis=0)  # gamma = 1
    expected = group_advantages(returns, 4)
    adv = algo.step_advantages(batch)
    for env in range(8):
        steps = batch.valid[:, env]
        np.testing.assert_allclose(adv[steps, env], expected[env], rtol=1e-6)

    seeds_next = algo.collect(collector).obs[0]
    assert not np.array_equal(seeds_next[0], first[0])  # a new seed per update


def test_update_moves_towards_high_advantage_episodes_and_kl_starts_at_zero():
    algo, collector = _grpo(num_epochs=1, num_minibatches=1, kl_coef=1.0, lr=1e-2,
                            anneal_lr=False)
    batch = algo.collect(collector)
    adv = algo.step_advantages(batch)
    obs = torch.from_numpy(batch.obs[batch.valid])
    actions = torch.from_numpy(batch.actions[batch.valid])
    weights = torch.from_numpy(adv[batch.valid])
    with torch.no_grad():
        before = (algo.agent.evaluate(obs, actions)[0] * weights).sum()
    stats = algo.update(batch, 0.0)
    assert stats["clip_frac"] == 0 and abs(stats["approx_kl"]) < 1e-6  # first minibatch: ratio 1
    with torch.no_grad():
        after = (algo.agent.evaluate(obs, actions)[0] * weights).sum()
    assert after > before  # log-probs of above-average episodes went up


def test_native_vector_env_is_refused_with_a_clear_message():
    algo, collector = _grpo(vectorization="vector_entry_point")
    with pytest.raises(ConfigError, match="env.vectorization=sync"):
        algo.collect(collector)


def test_num_envs_must_split_into_groups(cli, tmp_path):
    out = cli("train", "algo=grpo", "env.num_envs=12", "algo.group_size=8",
              f"hydra.run.dir={tmp_path}", "progress=none")
    assert out.returncode == 2 and "env.num_envs=12" in out.stderr
    assert "Traceback" not in out.stderr


def test_grpo_learns_cartpole_quickly(tmp_path):
    cfg = compose_config("algo=grpo", "total_steps=30000", "eval.interval=10000",
                         "progress=none", "seed=1")
    summary = train(cfg, tmp_path)
    assert summary["final_eval_return"] > 200, summary
