"""Atari's training-only semantics: ``env.life_loss_terminal`` (a lost life ends the
learning target, not the game) and ``normalize.reward_sign`` (learn from sign(r)), on a
tiny game with lives (``tests/lives_env.py``), plus one real ALE smoke test.

What must hold: GAE never bootstraps across a lost life; the env is not reset at one;
metrics.csv and eval.csv (and ``pgrun eval``) count whole games with raw scores."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest

from pgrun.config import ConfigError, validate
from pgrun.evalcmd import evaluate_run
from pgrun.returns import batch_gae
from pgrun.train import train
from tests.conftest import compose_config
from tests.helpers import make_collector, make_policy
from tests.lives_env import LivesGame

# env 0: 3 lives × 3 steps (a 9-step game scoring 12 raw, 3 in signs); env 1: 2 lives × 4
# steps (8 steps, 8 raw, 2 in signs). Rows of a 12-step batch where a life is lost:
LIFE_LOST = {0: [2, 5], 1: [3]}
GAME_OVER = {0: 8, 1: 7}  # then one autoreset row (invalid), then game 1


def _envs():
    return gym.vector.SyncVectorEnv([lambda: LivesGame(3, 3), lambda: LivesGame(2, 4)])


def _collect(**options):
    col = make_collector(_envs(), make_policy(2, 2, [8], with_value=True, seed=0), seed=0,
                         **options)
    batch = col.collect_steps(12)
    return col, batch, col.pop_episodes()


def test_life_loss_is_terminal_for_learning_only_and_the_game_goes_on():
    col, batch, (returns, lengths) = _collect(life_loss_terminal=True, reward_sign=True)
    for i in (0, 1):
        ends = sorted([*LIFE_LOST[i], GAME_OVER[i]])
        assert np.flatnonzero(batch.terminated[:, i]).tolist() == ends
        # no reset at a lost life: the step after it is valid and the game counter goes on
        assert np.flatnonzero(~batch.valid[:, i]).tolist() == [GAME_OVER[i] + 1]
        game, t = batch.obs[:, i, 0], batch.obs[:, i, 1]
        assert (game[:GAME_OVER[i] + 2] == 0).all() and (game[GAME_OVER[i] + 2:] == 1).all()
        np.testing.assert_array_equal(t[:GAME_OVER[i] + 2], np.arange(GAME_OVER[i] + 2))
    # whole games with raw scores in the episode accounting (metrics.csv)
    assert sorted(returns.tolist()) == [8.0, 12.0] and sorted(lengths.tolist()) == [8, 9]
    assert col.ep_return.tolist() == [2.0, 4.0]  # game 1 so far, raw: 5 − 3; 5 − 3 + 2
    # the learning signal is signs
    assert set(np.unique(batch.rewards[batch.valid])) <= {-1.0, 0.0, 1.0}
    np.testing.assert_array_equal(batch.rewards[batch.valid],
                                  np.sign(batch.rewards[batch.valid]))
    assert batch.rewards[0, 0] == 1.0 and batch.rewards[1, 0] == -1.0


def test_gae_does_not_bootstrap_across_a_lost_life():
    _, cut, _ = _collect(life_loss_terminal=True)
    _, whole, _ = _collect()
    np.testing.assert_array_equal(cut.actions, whole.actions)  # same stream, same values
    np.testing.assert_array_equal(cut.values, whole.values)
    adv_cut, ret_cut = batch_gae(cut, 0.99, 0.95)
    adv_whole, ret_whole = batch_gae(whole, 0.99, 0.95)
    for i, rows in LIFE_LOST.items():
        for t in rows:
            # terminal: the target is the reward alone, nothing from V(s_{t+1}) or beyond
            assert ret_cut[t, i] == pytest.approx(cut.rewards[t, i])
            assert adv_cut[t, i] == pytest.approx(cut.rewards[t, i] - cut.values[t, i])
            # without the option the same step bootstraps from the next life
            assert ret_whole[t, i] == pytest.approx(
                whole.rewards[t, i] + 0.99 * whole.values[t + 1, i] + 0.99 * 0.95 * adv_whole[t + 1, i],
                rel=1e-5)
            assert ret_whole[t, i] != pytest.approx(ret_cut[t, i])
    assert not whole.terminated[[2, 5], 0].any()


def test_a_drop_to_zero_lives_waits_for_the_game_to_end():
    # 2 lives × 3 steps, then 2 steps at 0 lives before game over (as CleanRL's
    # EpisodicLifeEnv: only a drop to a count above 0 is terminal)
    envs = gym.vector.SyncVectorEnv([lambda: LivesGame(2, 3, linger=2)])
    col = make_collector(envs, make_policy(2, 2, [8], with_value=True), life_loss_terminal=True)
    batch = col.collect_steps(9)
    assert np.flatnonzero(batch.terminated[:, 0]).tolist() == [2, 7]  # life 1 lost; game over
    assert np.flatnonzero(~batch.valid[:, 0]).tolist() == [8]
    returns, lengths = col.pop_episodes()
    assert returns.tolist() == [8.0] and lengths.tolist() == [8]


def test_options_off_leave_the_batch_as_the_env_gives_it():
    _, batch, (returns, _) = _collect()
    assert np.flatnonzero(batch.terminated[:, 0]).tolist() == [GAME_OVER[0]]
    assert batch.rewards[0, 0] == 5.0 and batch.rewards[1, 0] == -3.0
    assert sorted(returns.tolist()) == [8.0, 12.0]


def test_sign_then_scale_with_normalize_reward():
    from pgrun.normalize import RewardScaler

    _, batch, (returns, _) = _collect(reward_sign=True, reward_scaler=RewardScaler(2, 0.99))
    signs = np.sign(batch.rewards)
    # the scaler divides the signs by one positive running std per step
    assert set(np.unique(signs[batch.valid])) <= {-1.0, 0.0, 1.0}
    np.testing.assert_array_equal(signs[:2, 0], [1.0, -1.0])
    assert not np.isin(np.abs(batch.rewards[batch.valid]), [5.0, 3.0, 2.0]).any()
    assert sorted(returns.tolist()) == [8.0, 12.0]


def test_life_loss_needs_lives_in_info():
    envs = gym.vector.SyncVectorEnv([lambda: gym.make("CartPole-v1")])
    with pytest.raises(ConfigError, match=r"env.life_loss_terminal=true .* info\['lives'\]"):
        make_collector(envs, make_policy(4, 2, [8], with_value=True), life_loss_terminal=True)


def test_life_loss_is_refused_for_whole_episode_algorithms():
    for algo in ("reinforce", "grpo"):
        with pytest.raises(ConfigError, match=f"algo={algo} learns from whole episodes"):
            validate(compose_config(f"algo={algo}", "env.life_loss_terminal=true"))
    validate(compose_config("algo=ppo", "env.life_loss_terminal=true"))  # checked at reset


def test_collector_state_keeps_the_lives():
    col, _, _ = _collect(life_loss_terminal=True)
    col.collect_steps(2)  # env 0: game 1 at t=4 (2 lives left); env 1: t=5 (1 left)
    col.pop_episodes()
    assert col.lives.tolist() == [2, 1]
    state = col.state_dict(with_episodes=True)
    other, _, _ = _collect(life_loss_terminal=True)
    other.load_state_dict(state, with_episodes=True)
    assert other.lives.tolist() == [2, 1]
    assert "lives" not in _collect()[0].state_dict(with_episodes=True)["episodes"]


RUN = ["algo=ppo", "env=generic", "env.id=tests.lives_env:LivesGame-v0", "env.num_envs=2",
       "env.life_loss_terminal=true", "normalize.reward_sign=true", "algo.num_steps=20",
       "algo.num_minibatches=2", "total_steps=400", "eval.interval=200", "eval.episodes=3",
       "eval.num_envs=2", "progress=none", "checkpoint.every=2"]


def test_run_logs_whole_games_with_raw_scores_and_resumes(tmp_path):
    whole = tmp_path / "whole"
    train(compose_config(*RUN), whole)
    m = pd.read_csv(whole / "metrics.csv")
    done = m.dropna(subset=["return_mean"])
    assert len(done) >= 5
    assert (done["return_mean"] == 12.0).all() and (done["return_std"] == 0.0).all()
    assert (done["length_mean"] == 9.0).all()  # whole 9-step games, 3 lives each
    # every 9 valid steps of an env is one game (a life-loss terminal counts no episode)
    assert m["episodes"].iloc[-1] == 2 * ((m["step"].iloc[-1] // 2) // 9)
    ev = pd.read_csv(whole / "eval.csv")
    assert len(ev) >= 2 and (ev["return_mean"] == 12.0).all() and (ev["length_mean"] == 9.0).all()
    assert evaluate_run(whole, trust=True)["return_mean"] == 12.0  # pgrun eval: whole games
    # checkpointed mid-run and resumed: the episodes restart (a Python env's state is not
    # captured) and the run still logs whole, raw games
    parts = tmp_path / "parts"
    first = train(compose_config(*RUN, "checkpoint.stop_after_updates=3"), parts)
    assert first["status"] == "interrupted"
    train(compose_config(*RUN), parts)
    p = pd.read_csv(parts / "metrics.csv").dropna(subset=["return_mean"])
    assert (p["return_mean"] == 12.0).all() and (p["length_mean"] == 9.0).all()
    assert pd.read_csv(parts / "metrics.csv")["step"].iloc[-1] == m["step"].iloc[-1]


def test_real_ale_breakout_loses_lives_without_resets():
    pytest.importorskip("ale_py")
    pytest.importorskip("cv2")
    from pgrun.envs.factory import make_vec_env
    from pgrun.policies import build_policy
    from pgrun.rollout import Actor, Collector

    cfg = compose_config("env=Breakout-v5")
    assert cfg.env.life_loss_terminal and cfg.normalize.reward_sign
    envs = make_vec_env(cfg.env, 2, vectorization="sync")
    obs_space, act_space = envs.single_observation_space, envs.single_action_space
    policy = build_policy(cfg.policy, obs_space, act_space, with_value=True)
    col = Collector(envs, Actor(policy, obs_space, act_space), seed=0, with_value=True,
                    reward_sign=True, life_loss_terminal=True)
    assert col.lives.tolist() == [5, 5]
    batch = col.collect_steps(160)
    returns, _ = col.pop_episodes()
    envs.close()
    lost = batch.terminated & batch.valid
    assert lost.sum() >= 2  # random play loses a life every few dozen steps
    t, i = np.nonzero(lost[:-1])
    assert batch.valid[t + 1, i].all()  # the game went on: no autoreset after a lost life
    assert (col.lives < 5).any() or len(returns)
    assert set(np.unique(batch.rewards)) <= {-1.0, 0.0, 1.0}
