"""pgrun's own environments: GridWorld and Bandit dynamics, spaces, seeding, gymnasium's
env checker, vectorization, their configs, and short training runs on them."""

from __future__ import annotations

import json
import warnings

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
from gymnasium.utils.env_checker import check_env
from omegaconf import OmegaConf

from pgrun.config import ConfigError, EnvConfig
from pgrun.envs import BANDIT_ID, GRIDWORLD_ID, make_vec_env
from pgrun.envs.gridworld import GridWorldEnv, optimal_return
from tests.conftest import compose_config

UP, RIGHT, DOWN, LEFT = range(4)


def run(env, actions):
    """Step through ``actions`` from a reset; returns (observations, rewards, terminated,
    truncated) per step, the reset observation first in observations."""
    obs, _ = env.reset(seed=0)
    observations, rewards, terms, truncs = [obs], [], [], []
    for a in actions:
        obs, r, term, trunc, _ = env.step(a)
        observations.append(obs)
        rewards.append(r)
        terms.append(term)
        truncs.append(trunc)
    return observations, rewards, terms, truncs


# ------------------------------------------------------------------ registration

def test_registered_under_pgrun_namespace():
    assert GRIDWORLD_ID == "pgrun/GridWorld-v0" and BANDIT_ID == "pgrun/Bandit-v0"
    grid = gym.spec(GRIDWORLD_ID)
    assert grid.namespace == "pgrun" and grid.max_episode_steps == 100
    assert grid.reward_threshold == -69.0
    assert gym.spec(BANDIT_ID).namespace == "pgrun"


# ------------------------------------------------------------------ GridWorld

def test_gridworld_walls_keep_the_agent_in_place():
    env = GridWorldEnv(n=3, obs_mode="index")
    observations, rewards, terms, _ = run(env, [UP, LEFT, RIGHT, RIGHT, RIGHT, UP])
    # start 0; up and left bump into walls; right, right reach col 2; right and up bump again
    assert observations == [0, 0, 0, 1, 2, 2, 2]
    assert rewards == [-10.0] * 6 and not any(terms)


@pytest.mark.parametrize("path", [[RIGHT] * 4 + [DOWN] * 4, [DOWN] * 4 + [RIGHT] * 4,
                                  [RIGHT, DOWN] * 4])
def test_gridworld_shortest_path_returns_minus_69(path):
    env = gym.make(GRIDWORLD_ID)
    _, rewards, terms, truncs = run(env, path)
    assert rewards == [-10.0] * 7 + [1.0]
    assert sum(rewards) == -69 == optimal_return(5)
    assert terms == [False] * 7 + [True] and not any(truncs)


def test_gridworld_other_sizes():
    env = gym.make(GRIDWORLD_ID, n=2)
    _, rewards, terms, _ = run(env, [RIGHT, DOWN])
    assert rewards == [-10.0, 1.0] and terms == [False, True] and optimal_return(2) == -9
    env = gym.make(GRIDWORLD_ID, n=7, obs_mode="index")
    observations, rewards, terms, _ = run(env, [DOWN] * 6 + [RIGHT] * 6)
    assert observations[-1] == 48 and sum(rewards) == optimal_return(7) == -109 and terms[-1]


@pytest.mark.parametrize(("limit", "kwargs"), [(100, {}), (7, {"max_episode_steps": 7})])
def test_gridworld_truncates_at_the_step_limit(limit, kwargs):
    env = gym.make(GRIDWORLD_ID, **kwargs)
    _, rewards, terms, truncs = run(env, [UP] * limit)
    assert truncs == [False] * (limit - 1) + [True]
    assert not any(terms) and sum(rewards) == -10 * limit


def test_gridworld_coords_observation():
    env = gym.make(GRIDWORLD_ID)  # obs_mode coords is the env's default
    space = env.observation_space
    assert isinstance(space, gym.spaces.Box) and space.shape == (2,) and space.dtype == np.float32
    assert (space.low == 0).all() and (space.high == 1).all()
    observations, *_ = run(env, [RIGHT, DOWN, DOWN, RIGHT, RIGHT, RIGHT, DOWN, DOWN])
    expected = [(0, 0), (0, 1), (1, 1), (2, 1), (2, 2), (2, 3), (2, 4), (3, 4), (4, 4)]
    np.testing.assert_allclose(np.array(observations), np.array(expected) / 4)
    assert all(space.contains(o) for o in observations)


def test_gridworld_onehot_observation():
    env = gym.make(GRIDWORLD_ID, obs_mode="onehot")
    space = env.observation_space
    assert isinstance(space, gym.spaces.Box) and space.shape == (25,) and space.dtype == np.float32
    observations, *_ = run(env, [DOWN, RIGHT, RIGHT])
    for obs, cell in zip(observations, [0, 5, 6, 7], strict=True):
        assert obs.sum() == 1 and obs[cell] == 1 and space.contains(obs)


def test_gridworld_index_observation():
    env = gym.make(GRIDWORLD_ID, obs_mode="index", n=4)
    space = env.observation_space
    assert isinstance(space, gym.spaces.Discrete) and space.n == 16 and space.start == 0
    observations, *_ = run(env, [DOWN, DOWN, RIGHT, DOWN, RIGHT, RIGHT])
    assert observations == [0, 4, 8, 9, 13, 14, 15]
    assert all(space.contains(o) for o in observations)


def test_gridworld_action_indices_are_up_right_down_left():
    env = GridWorldEnv(n=5, obs_mode="index")
    env.reset(seed=0)
    env.pos = (2, 2)
    moved = []
    for a in range(4):
        env.pos = (2, 2)
        obs, *_ = env.step(a)
        moved.append(divmod(obs, 5))
    assert moved == [(1, 2), (2, 3), (3, 2), (2, 1)]


def test_gridworld_seeding_is_deterministic():
    a, b = gym.make(GRIDWORLD_ID), gym.make(GRIDWORLD_ID)
    assert np.array_equal(a.reset(seed=5)[0], b.reset(seed=5)[0])
    assert a.unwrapped.np_random.random() == b.unwrapped.np_random.random()
    actions = np.random.default_rng(0).integers(0, 4, size=60)
    for x, y in zip(run(a, actions), run(b, actions), strict=True):
        assert all(np.array_equal(u, v) for u, v in zip(x, y, strict=True))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"n": 1}, "n=1 must be an integer ≥ 2"),
    ({"n": "5"}, "n='5' must be an integer ≥ 2"),
    ({"n": 2.5}, "n=2.5"),
    ({"obs_mode": "pixels"}, "obs_mode='pixels' must be one of coords, onehot, index"),
])
def test_gridworld_rejects_bad_kwargs(kwargs, message):
    with pytest.raises(ValueError, match="GridWorld") as err:
        GridWorldEnv(**kwargs)
    assert message in str(err.value)
    # through pgrun's factory it is a ConfigError naming the env and the kwargs
    cfg = OmegaConf.structured(EnvConfig(id=GRIDWORLD_ID, kwargs=kwargs))
    with pytest.raises(ConfigError) as err:
        make_vec_env(cfg, 2)
    assert GRIDWORLD_ID in str(err.value) and message in str(err.value)


def test_gridworld_renders():
    env = gym.make(GRIDWORLD_ID, n=3, render_mode="ansi")
    env.reset(seed=0)
    env.step(RIGHT)
    assert env.render() == ". A .\n. . .\n. . G\n"
    env = gym.make(GRIDWORLD_ID, n=3, render_mode="rgb_array")
    env.reset(seed=0)
    frame = env.render()
    assert frame.shape == (96, 96, 3) and frame.dtype == np.uint8


# ------------------------------------------------------------------ Bandit

def test_bandit_payout_frequencies_match_probabilities():
    env = gym.make(BANDIT_ID)
    env.reset(seed=123)
    probs = np.array([0.2, 0.8, 0.5])
    pulls = 4000
    for arm, p in enumerate(probs):
        rewards = []
        for _ in range(pulls):
            _, r, term, trunc, _ = env.step(arm)
            assert term and not trunc
            rewards.append(r)
            env.reset()
        assert set(rewards) <= {0.0, 1.0}
        # within 4 standard errors of p: a swapped or shifted probability fails
        assert abs(np.mean(rewards) - p) < 4 * np.sqrt(p * (1 - p) / pulls), (arm, np.mean(rewards))


def test_bandit_custom_probabilities_and_certain_arms():
    env = gym.make(BANDIT_ID, probs=[0.0, 1.0])
    env.reset(seed=0)
    assert env.action_space.n == 2
    assert [env.step(0)[1] for _ in range(20)] == [0.0] * 20
    assert [env.step(1)[1] for _ in range(20)] == [1.0] * 20


@pytest.mark.parametrize(("obs_mode", "space", "obs"), [
    ("onehot", gym.spaces.Box(0.0, 1.0, (1,), np.float32), np.ones(1, np.float32)),
    ("index", gym.spaces.Discrete(1), 0),
])
def test_bandit_constant_observation(obs_mode, space, obs):
    env = gym.make(BANDIT_ID, obs_mode=obs_mode)
    assert env.observation_space == space and env.action_space == gym.spaces.Discrete(3)
    first, _ = env.reset(seed=0)
    later = env.step(1)[0]
    assert np.array_equal(first, obs) and np.array_equal(later, obs)


def test_bandit_seeding_is_deterministic():
    def rewards(seed):
        env = gym.make(BANDIT_ID)
        env.reset(seed=seed)
        return [env.step(2)[1] for _ in range(50)]

    assert rewards(7) == rewards(7)
    assert rewards(7) != rewards(8)


@pytest.mark.parametrize("probs", [[], [0.5, 1.5], [-0.1], "abc", [[0.5]]])
def test_bandit_rejects_bad_probabilities(probs):
    with pytest.raises(ValueError, match="Bandit: probs="):
        gym.make(BANDIT_ID, probs=probs)


# ------------------------------------------------------------------ gymnasium's checks

@pytest.mark.parametrize(("env_id", "kwargs"), [
    (GRIDWORLD_ID, {}), (GRIDWORLD_ID, {"obs_mode": "onehot", "n": 3}),
    (GRIDWORLD_ID, {"obs_mode": "index"}), (GRIDWORLD_ID, {"render_mode": "rgb_array"}),
    (BANDIT_ID, {}), (BANDIT_ID, {"obs_mode": "index"}),
])
def test_env_checker_passes_without_warnings(env_id, kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(gym.make(env_id, **kwargs).unwrapped)


@pytest.mark.parametrize("env_id", [GRIDWORLD_ID, BANDIT_ID])
def test_sync_vectorization_and_autoreset(env_id):
    envs = gym.make_vec(env_id, num_envs=3, vectorization_mode="sync", obs_mode="onehot")
    obs, _ = envs.reset(seed=0)
    assert obs.shape[0] == 3 and obs.dtype == np.float32
    if env_id == GRIDWORLD_ID:
        for _ in range(7):
            envs.step(np.full(3, RIGHT if _ < 4 else DOWN))
        _, reward, term, _, _ = envs.step(np.full(3, DOWN))
        assert (reward == 1).all() and term.all()
        obs, reward, term, _, _ = envs.step(np.full(3, DOWN))  # next-step autoreset
        assert (obs[:, 0] == 1).all() and (reward == 0).all() and not term.any()
    else:
        _, reward, term, trunc, _ = envs.step(np.array([0, 1, 2]))
        assert term.all() and not trunc.any() and set(reward) <= {0.0, 1.0}
    envs.close()


# ------------------------------------------------------------------ configs and runs

def test_env_configs_compose():
    cfg = compose_config("env=GridWorld-v0")
    assert cfg.env.id == GRIDWORLD_ID and cfg.env.reward_threshold == -69
    assert cfg.env.kwargs == {"n": 5, "obs_mode": "onehot"} and cfg.env.max_episode_steps == 100
    cfg = compose_config("env=Bandit-v0", "env.kwargs.obs_mode=index")
    assert cfg.env.id == BANDIT_ID and list(cfg.env.kwargs.probs) == [0.2, 0.8, 0.5]
    assert cfg.env.kwargs.obs_mode == "index"
    envs = make_vec_env(compose_config("env=GridWorld-v0", "env.kwargs.n=3").env, 2)
    assert envs.single_observation_space.shape == (9,) and envs.num_envs == 2
    envs.close()


@pytest.mark.parametrize(("env", "extra", "target"), [
    ("GridWorld-v0", [], -69.0),  # onehot observations, MLP policy
    ("GridWorld-v0", ["env.kwargs.obs_mode=index", "algo.lr=0.05"], -69.0),  # tabular policy
    ("Bandit-v0", [], 0.7),
])
def test_ppo_solves_the_tutorial_envs(cli, tmp_path, env, extra, target):
    out = cli("train", f"env={env}", "total_steps=15000", "eval.interval=5000", *extra,
              "progress=none", f"hydra.run.dir={tmp_path}")
    assert out.returncode == 0, out.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["env"] == f"pgrun/{env}"
    assert summary["final_eval_return"] >= target and summary["steps_to_threshold"] is not None
    evals = pd.read_csv(tmp_path / "eval.csv")
    if env == "GridWorld-v0":
        assert evals["return_mean"].iloc[-1] == -69 and evals["length_mean"].iloc[-1] == 8
