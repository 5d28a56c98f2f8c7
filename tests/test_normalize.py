"""Observation normalization and reward scaling: the running statistics, where the
Collector applies them, evaluation leaving them alone, checkpoints and resume."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
import torch

from pgrun.checkpoint import decode
from pgrun.config import ConfigError
from pgrun.evalcmd import evaluate_run
from pgrun.evaluate import evaluate
from pgrun.metrics import TIMING_COLUMNS
from pgrun.normalize import ObsNormalizer, RewardScaler, RunningMeanStd, build_normalizers
from pgrun.rollout import Actor
from pgrun.runfolder import load_checkpoint
from pgrun.train import train
from tests.conftest import compose_config
from tests.helpers import evaluate as policy_outputs
from tests.helpers import make_actor, make_collector, make_policy


def test_running_mean_var_equal_numpy_over_chunks():
    rng = np.random.default_rng(0)
    data = rng.normal(loc=[3.0, -100.0, 0.0], scale=[0.1, 50.0, 1e-3], size=(1000, 3))
    rms = RunningMeanStd((3,))
    cuts = np.sort(rng.choice(np.arange(1, 1000), size=40, replace=False))
    for chunk in np.split(data, cuts):  # chunks of 1 to ~100 rows
        rms.update(chunk)
    rms.update(data[:0])  # an empty chunk changes nothing
    assert rms.count == 1000
    np.testing.assert_allclose(rms.mean, data.mean(0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(rms.var, data.var(0), rtol=1e-10)


def test_obs_normalizer_formula_and_clip():
    norm = ObsNormalizer((2,), clip=3.0, epsilon=1e-8)
    data = np.array([[0.0, 10.0], [2.0, 10.0], [4.0, 10.0]], dtype=np.float32)
    norm.update(data)
    z = norm.normalize(np.array([[2.0, 10.0], [100.0, 11.0]], dtype=np.float32))
    assert z.dtype == np.float32
    np.testing.assert_allclose(z[0], [0.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(z[1], [3.0, 3.0])  # clipped (the constant dimension: 1/1e-4)
    before = norm.state_dict()
    norm.normalize(np.ones((5, 2), dtype=np.float32))
    assert norm.state_dict()["count"] == before["count"] == 3


def test_reward_scaler_against_a_step_by_step_reference():
    rng = np.random.default_rng(1)
    T, N, gamma = 30, 3, 0.9
    rewards = rng.normal(2.0, 1.0, size=(T, N))
    done = rng.random((T, N)) < 0.15
    valid = rng.random((T, N)) > 0.1
    scaler = RewardScaler(N, gamma, clip=100.0, epsilon=1e-8)
    ret = np.zeros(N)
    seen = []
    for t in range(T):
        out = scaler.scale(rewards[t], valid[t], done[t])
        for i in range(N):
            if valid[t, i]:
                ret[i] = gamma * ret[i] + rewards[t, i]
                seen.append(ret[i])
        np.testing.assert_allclose(out, rewards[t] / np.sqrt(np.var(seen) + 1e-8), rtol=1e-5)
        ret[done[t] & valid[t]] = 0.0
        np.testing.assert_allclose(scaler.returns, ret)


class CountingEnv(gym.Env):
    """Observes [k, k²] for the k-th observation it ever returned (resets included); pays
    10 per step; episodes of 4 steps."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, offset=0.0):
        self.k, self.t, self.offset = 0, 0, offset

    def _obs(self):
        self.k += 1
        return np.array([self.k + self.offset, (self.k + self.offset) ** 2], dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        return self._obs(), 10.0, self.t >= 4, False, {}


def _counting_envs():
    return gym.vector.SyncVectorEnv([lambda: CountingEnv(0.0), lambda: CountingEnv(0.5)])


def _policy(seed=0):
    return make_policy(2, 2, [8], with_value=True, seed=seed)


def test_collector_normalizes_what_it_stores_and_acts_on():
    norm = ObsNormalizer((2,))
    policy = _policy()
    col = make_collector(_counting_envs(), policy, seed=0, obs_normalizer=norm)
    batch = col.collect_steps(9)
    # statistics: every observation the envs returned (9 steps + the reset, per env)
    raw = np.array([[k + off, (k + off) ** 2] for k in range(1, 11) for off in (0.0, 0.5)])
    assert norm.rms.count == 20
    np.testing.assert_allclose(norm.rms.mean, raw.mean(0), rtol=1e-6)
    np.testing.assert_allclose(norm.rms.var, raw.var(0), rtol=1e-6)
    # stored observations are normalized, each with the statistics of its own time
    assert np.abs(batch.obs).max() < 3
    first = np.array([[1.0, 1.0], [1.5, 2.25]])
    np.testing.assert_allclose(batch.obs[0], (first - first.mean(0)) / np.sqrt(first.var(0) + 1e-8),
                               rtol=1e-5)
    # the update sees what the rollout acted on: log-probs and values recomputed from the
    # stored observations are those the rollout recorded
    with torch.no_grad():
        logp, _, values = policy_outputs(policy, torch.from_numpy(batch.obs.reshape(-1, 2)),
                                         torch.from_numpy(batch.actions.reshape(-1)))
    np.testing.assert_allclose(batch.logp.reshape(-1), logp.numpy(), atol=1e-5)
    np.testing.assert_allclose(batch.values.reshape(-1), values.numpy(), atol=1e-5)
    with torch.no_grad():
        last = policy.value(torch.from_numpy(norm.normalize(col.obs)))
    np.testing.assert_allclose(batch.last_value, last.numpy(), atol=1e-5)
    assert col.obs[0, 0] == 10  # the collector keeps raw observations (for checkpoints)


def test_reward_scaling_changes_only_the_learning_signal():
    batches, episodes = [], []
    for scaler in (None, RewardScaler(2, gamma=0.99)):
        col = make_collector(_counting_envs(), _policy(), seed=0, reward_scaler=scaler)
        batches.append(col.collect_steps(12))
        episodes.append(col.pop_episodes())
    raw, scaled = batches
    np.testing.assert_array_equal(raw.actions, scaled.actions)  # same policy, same stream
    np.testing.assert_array_equal(episodes[0][0], episodes[1][0])  # returns stay raw: 4 × 10
    assert (episodes[1][0] == 40).all()
    assert (raw.rewards[raw.valid] == 10).all()
    assert not np.allclose(scaled.rewards[scaled.valid], 10)


def test_evaluation_leaves_the_statistics_alone_and_uses_them(monkeypatch):
    norm = ObsNormalizer((2,))
    norm.update(np.random.default_rng(0).normal(5.0, 2.0, size=(100, 2)))
    before = norm.state_dict()
    seen = []
    mode = Actor.mode  # greedy evaluation's actions

    def spy(self, obs):
        seen.append(obs.copy())
        return mode(self, obs)

    monkeypatch.setattr(Actor, "mode", spy)
    envs = _counting_envs()
    evaluate(make_actor(_policy(3), envs), envs, episodes=2, seed=0, obs_normalizer=norm)
    after = norm.state_dict()
    assert after["count"] == before["count"]
    np.testing.assert_array_equal(after["mean"], before["mean"])
    np.testing.assert_array_equal(after["var"], before["var"])
    assert len(seen) == 4  # one 4-step round of 2 envs
    np.testing.assert_allclose(seen[0][0], (np.array([1.0, 1.0]) - before["mean"])
                               / np.sqrt(before["var"] + 1e-8), rtol=1e-5)


def test_normalize_obs_needs_a_box_observation_space():
    cfg = compose_config("normalize.obs=true")
    with pytest.raises(ConfigError, match="normalize.obs=true needs a Box observation space"):
        build_normalizers(cfg, gym.spaces.Discrete(5), 2)
    _, scaler = build_normalizers(compose_config("normalize.reward=true", "algo.gamma=0.7"),
                                  gym.spaces.Discrete(5), 2)
    assert scaler.gamma == 0.7  # the algorithm's γ unless normalize.gamma says otherwise


# ------------------------------------------------------------------ runs: checkpoint and resume
SMALL = ["total_steps=3000", "eval.interval=1000", "eval.episodes=2", "progress=none",
         "normalize.obs=true", "normalize.reward=true"]


def _metrics(run_dir):
    return pd.read_csv(run_dir / "metrics.csv").drop(columns=list(TIMING_COLUMNS))


def _evals(run_dir):
    return pd.read_csv(run_dir / "eval.csv").drop(columns="time_s")


def test_resume_with_normalization_equals_the_uninterrupted_run(tmp_path):
    common = ["algo=ppo", *SMALL, "checkpoint.every=2"]
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    train(compose_config(*common), whole)
    first = train(compose_config(*common, "checkpoint.stop_after_updates=5"), parts)
    assert first["status"] == "interrupted"
    ckpt = load_checkpoint(parts / "checkpoint.pt")
    stats = decode(ckpt["obs_normalizer"])
    # every observation so far: the reset, then one per step of each of the 8 envs
    assert stats["count"] == 8 * (1 + 5 * 32)
    assert decode(ckpt["collector"])["reward_scaler"]["count"] == first["steps"]
    second = train(compose_config(*common), parts)
    assert second["resumes"][0]["env_state"] == "restored"
    pd.testing.assert_frame_equal(_metrics(whole), _metrics(parts))
    pd.testing.assert_frame_equal(_evals(whole), _evals(parts))
    # the normalizer is not a no-op: the same run without it computes something else
    plain = tmp_path / "plain"
    train(compose_config("algo=ppo", *SMALL[:-2], "checkpoint.every=2"), plain)
    assert not _metrics(plain)["policy_loss"].equals(_metrics(whole)["policy_loss"])
    # CartPole returns are episode lengths: logged returns stay raw under reward scaling
    m = pd.read_csv(whole / "metrics.csv").dropna(subset=["return_mean"])
    np.testing.assert_allclose(m["return_mean"], m["length_mean"])


def test_pgrun_eval_uses_the_saved_statistics(tmp_path, monkeypatch):
    train(compose_config("algo=ppo", *SMALL[:-1], "total_steps=2000"), tmp_path)
    last = pd.read_csv(tmp_path / "eval.csv").iloc[-1]
    r = evaluate_run(tmp_path)
    assert r["return_mean"] == pytest.approx(last["return_mean"])
    # without the statistics the same policy plays differently
    import pgrun.evalcmd

    monkeypatch.setattr(pgrun.evalcmd, "_saved_normalizer", lambda ckpt: None)
    assert evaluate_run(tmp_path)["return_mean"] != pytest.approx(last["return_mean"])
