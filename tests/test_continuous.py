"""Box actions: the Gaussian head's log-probs and entropy, bounds, the rollout with float
actions, the algorithms on Pendulum, and the box2d extra's error."""

from __future__ import annotations

import os
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
import torch
from torch.distributions import AffineTransform, Normal, TanhTransform, TransformedDistribution

from pgrun.accelerate import attach
from pgrun.config import ConfigError
from pgrun.distributions import ActionBounds
from pgrun.policies import ActorCritic, build_policy
from pgrun.rollout import Actor, rng_for
from pgrun.train import train
from tests.conftest import REPO, compose_config
from tests.helpers import box, evaluate, make_collector

LOW, HIGH = np.array([-2.0, 0.5], dtype=np.float32), np.array([2.0, 1.5], dtype=np.float32)
ACT = gym.spaces.Box(LOW, HIGH, dtype=np.float32)


def _policy(bounds="clip", state_dependent=False, log_std_init=0.3, seed=0):
    torch.manual_seed(seed)
    policy = ActorCritic(box(3), ACT, hidden_sizes=[16], with_value=True,
                         bounds=ActionBounds(LOW, HIGH, bounds), log_std_init=log_std_init,
                         state_dependent_std=state_dependent)
    with torch.no_grad():
        policy.head.out.weight.normal_()  # means and (state-dependent) log σ that vary with s
        policy.head.out.bias.normal_(0.0, 0.3)
    return policy


def _actor(policy):
    return Actor(policy, box(3), ACT, policy.head.bounds)


def _mean_std(policy, obs):
    with torch.no_grad():
        dist, _ = policy(obs)
    return dist.mean, dist.log_std.exp()


@pytest.mark.parametrize("state_dependent", [False, True])
def test_gaussian_log_prob_and_entropy_equal_torch_distributions(state_dependent):
    policy = _policy("clip", state_dependent)
    obs = torch.randn(50, 3)
    mean, std = _mean_std(policy, obs)
    assert not torch.allclose(std[0], std[1]) if state_dependent else torch.allclose(std[0], std[1])
    actions = mean + 2.0 * torch.randn(50, 2)  # some far outside [LOW, HIGH]
    logp, entropy, _ = evaluate(policy, obs, actions)
    ref = Normal(mean, std)
    torch.testing.assert_close(logp, ref.log_prob(actions).sum(-1), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(entropy, ref.entropy().sum(-1), atol=1e-5, rtol=1e-5)
    # the entropy has gradients w.r.t. log σ (the bonus can raise it)
    entropy.sum().backward()
    grad = policy.head.out.weight.grad if state_dependent else policy.head.log_std.grad
    assert grad is not None and grad.abs().sum() > 0


def test_clip_keeps_env_actions_in_bounds_and_log_probs_of_the_stored_action():
    policy = _policy("clip", log_std_init=1.5)  # σ ≈ 4.5: most samples fall outside the box
    actor = _actor(policy)
    obs = torch.randn(2000, 3)
    actions, logp, _ = actor.act(obs.numpy(), rng_for(0, 0))
    env_actions = torch.from_numpy(actor.to_env(actions))
    actions, logp = torch.from_numpy(actions), torch.from_numpy(logp)
    outside = ((actions < torch.from_numpy(LOW)) | (actions > torch.from_numpy(HIGH))).any(-1)
    assert outside.float().mean() > 0.5
    assert (env_actions >= torch.from_numpy(LOW)).all() and (env_actions <= torch.from_numpy(HIGH)).all()
    inside = ~outside
    torch.testing.assert_close(env_actions[inside], actions[inside])  # clipping only
    mean, std = _mean_std(policy, obs)
    torch.testing.assert_close(logp, Normal(mean, std).log_prob(actions).sum(-1))
    # scoring the clipped copy instead would be another number
    assert not torch.allclose(Normal(mean, std).log_prob(env_actions).sum(-1)[outside], logp[outside])


@pytest.mark.parametrize("accelerate", [False, True], ids=["autograd", "accelerated"])
def test_tanh_squash_log_prob_is_the_density_of_the_env_action(accelerate):
    policy = _policy("tanh", log_std_init=1.0)
    assert attach(policy, accelerate) == ("numpy-layers" if accelerate else "autograd")
    actor = _actor(policy)
    obs = torch.randn(500, 3)
    u, logp, _ = actor.act(obs.numpy(), rng_for(0, 0))
    a = torch.from_numpy(actor.to_env(u))
    u, logp = torch.from_numpy(u), torch.from_numpy(logp)
    assert (a >= torch.from_numpy(LOW)).all() and (a <= torch.from_numpy(HIGH)).all()
    mean, std = _mean_std(policy, obs)
    center, scale = torch.from_numpy((HIGH + LOW) / 2), torch.from_numpy((HIGH - LOW) / 2)
    squashed = TransformedDistribution(Normal(mean, std),
                                       [TanhTransform(), AffineTransform(center, scale)])
    keep = (torch.tanh(u).abs() < 0.999).all(-1)  # torch's inverse of tanh is lossy near ±1
    assert keep.float().mean() > 0.5
    torch.testing.assert_close(logp[keep], squashed.log_prob(a).sum(-1)[keep], atol=2e-3, rtol=1e-4)
    # the update scores the stored pre-squash sample the same way, also far in the tails
    with torch.no_grad():
        logp2, entropy, _ = evaluate(policy, obs, u)
        far, _, _ = evaluate(policy, obs[:1], torch.tensor([[40.0, -40.0]]))
    torch.testing.assert_close(logp2, logp)
    assert torch.isfinite(far).all()
    torch.testing.assert_close(entropy, Normal(mean, std).entropy().sum(-1))
    # deterministic: the squashed mean
    det = actor.mode(obs.numpy())
    torch.testing.assert_close(torch.from_numpy(actor.to_env(det)), center + scale * torch.tanh(mean))


def test_tanh_needs_finite_bounds():
    cfg = compose_config("policy.action_bounds=tanh").policy
    space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
    with pytest.raises(ConfigError, match="finite action bounds.*policy.action_bounds=clip"):
        build_policy(cfg, gym.spaces.Box(-1, 1, (3,)), space, with_value=True)


class RecordingEnv(gym.Env):
    """Box(2) actions in [LOW, HIGH]; remembers every action it receives; pays −|a|²."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
    action_space = gym.spaces.Box(LOW, HIGH, dtype=np.float32)

    def __init__(self):
        self.received = []
        self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self.np_random.normal(size=3).astype(np.float32), {}

    def step(self, action):
        self.received.append(np.array(action))
        self.t += 1
        obs = self.np_random.normal(size=3).astype(np.float32)
        return obs, -float(np.sum(np.square(action))), self.t >= 5, False, {}


def test_rollout_stores_unbounded_float_actions_and_sends_clipped_ones():
    envs = gym.vector.SyncVectorEnv([RecordingEnv, RecordingEnv])
    policy = _policy("clip", log_std_init=1.0)
    batch = make_collector(envs, policy, seed=0).collect_steps(12)
    assert batch.actions.dtype == np.float32 and batch.actions.shape == (12, 2, 2)
    assert batch.obs.shape == (12, 2, 3)
    received = np.stack([np.stack(env.received) for env in envs.envs], axis=1)  # (valid rows, 2, 2)
    for i in range(2):
        sent = batch.actions[batch.valid[:, i], i]
        np.testing.assert_allclose(received[:, i], np.clip(sent, LOW, HIGH))
    assert ((batch.actions < LOW) | (batch.actions > HIGH)).any()
    with torch.no_grad():
        logp, _, _ = evaluate(policy, torch.from_numpy(batch.obs.reshape(-1, 3)),
                              torch.from_numpy(batch.actions.reshape(-1, 2)))
    np.testing.assert_allclose(batch.logp, logp.numpy().reshape(12, 2), atol=1e-4)
    np.testing.assert_allclose(batch.rewards[batch.valid],
                               -np.square(np.clip(batch.actions, LOW, HIGH)).sum(-1)[batch.valid],
                               rtol=1e-5)


def _train(tmp_path, *overrides):
    cfg = compose_config("env=Pendulum-v1", "progress=none", "checkpoint.enabled=false", *overrides)
    summary = train(cfg, tmp_path)
    return summary, pd.read_csv(tmp_path / "metrics.csv"), pd.read_csv(tmp_path / "eval.csv")


@pytest.mark.parametrize("algo", ["reinforce", "vpg", "ppo"])
def test_every_algorithm_runs_on_box_actions(tmp_path, algo):
    extra = {"reinforce": ["algo.episodes_per_update=4"], "vpg": ["algo.vf_iters=2"],
             "ppo": ["algo.num_minibatches=4"]}[algo]
    summary, metrics, evals = _train(tmp_path, f"algo={algo}", "env.num_envs=4",
                                     "algo.num_steps=64" if algo != "reinforce" else "seed=0",
                                     "total_steps=1600", "eval.interval=800", "eval.episodes=2",
                                     "normalize.obs=true", "policy.log_std_init=-0.25", *extra)
    assert summary["status"] == "complete"
    assert np.isfinite(metrics["policy_loss"]).all() and np.isfinite(metrics["entropy"]).all()
    # Gaussian entropy of 1 dimension with log σ = −0.25 at the start: ½ + ½ log 2π − 0.25
    assert metrics["entropy"].iloc[0] == pytest.approx(1.419 - 0.25, abs=0.05)
    assert (evals["return_mean"] < 0).all() and (evals["length_mean"] == 200).all()


def test_ppo_improves_on_pendulum(tmp_path):
    """30k steps of the Pendulum preset: the greedy return rises well above the start."""
    summary, _, evals = _train(tmp_path, "algo=ppo", "total_steps=30000", "eval.interval=10000",
                               "seed=1")
    first, last = evals["return_mean"].iloc[0], evals["return_mean"].iloc[-1]
    assert first < -1000, evals
    assert last > first + 500, evals  # measured: −1344 → −247


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_pendulum_preset_reaches_minus_250_within_200k(tmp_path, seed):
    summary, _, evals = _train(tmp_path, "algo=ppo", f"seed={seed}")
    assert summary["steps"] <= 200_000 + 2048
    assert summary["steps_to_threshold"] is not None, evals  # −250
    assert evals["return_mean"].iloc[-1] >= -250, evals


@pytest.mark.slow
def test_mountain_car_continuous_preset_solves_it(tmp_path):
    cfg = compose_config("env=MountainCarContinuous-v0", "progress=none", "checkpoint.enabled=false")
    summary = train(cfg, tmp_path)
    evals = pd.read_csv(tmp_path / "eval.csv")
    assert summary["steps_to_threshold"] is not None and evals["return_mean"].iloc[-1] >= 90, evals


def test_presets_compose():
    for env in ("Pendulum-v1", "MountainCarContinuous-v0", "LunarLander-v3",
                "LunarLanderContinuous-v3"):
        cfg = compose_config("algo=ppo", f"env={env}")
        assert cfg.env.id == env and cfg.env.reward_threshold is not None
        assert cfg.algo.num_steps > 128  # the hparams preset was picked up


def test_missing_box2d_is_a_one_line_error_with_exit_status_2(tmp_path):
    """The real CLI, with a Box2D on the path that fails to import as a missing one does."""
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "Box2D.py").write_text("raise ModuleNotFoundError(\"No module named 'Box2D'\")\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(fake), str(REPO)])}
    out = subprocess.run([sys.executable, "-m", "pgrun", "train", "env=LunarLanderContinuous-v3",
                          f"hydra.run.dir={tmp_path / 'run'}"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    assert "pip install -e '.[box2d]'" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "run" / "metrics.csv").exists()


def test_missing_box2d_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "Box2D", None)  # `import Box2D` now raises ImportError
    for env in ("LunarLander-v3", "LunarLanderContinuous-v3"):
        with pytest.raises(ConfigError, match=r"needs the Box2D package.*pip install -e '\.\[box2d\]'"):
            train(compose_config(f"env={env}", "progress=none"), tmp_path / env)
    assert not (tmp_path / "LunarLander-v3" / "metrics.csv").exists()
