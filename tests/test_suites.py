"""Environments users bring: wrappers named in the config, third-party suites by id,
time limits a native vector env cannot take, and the errors for each (fakes shaped like
the suites are in tests/suite_envs.py)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from gymnasium.envs.registration import EnvSpec
from omegaconf import OmegaConf

from pgrun.cli import unknown_env_presets
from pgrun.config import ConfigError, EnvConfig
from pgrun.envs import check_env_id, make_vec_env, vectorization_mode
from pgrun.trust import code_references

ALE_LIKE = "tests.suite_envs:pgrun-tests/AleLike-v0"
TIME_AWARE = [{"_target_": "gymnasium.wrappers.TimeAwareObservation"}]


def env_cfg(**kwargs):
    kwargs.setdefault("id", kwargs.get("entry_point", "unused"))
    return OmegaConf.structured(EnvConfig(**kwargs))


# ------------------------------------------------------------------ wrappers

def test_config_wrappers_wrap_every_env_in_order():
    wrappers = [{"_target_": "gymnasium.wrappers.TimeAwareObservation"},  # 4 → 5 numbers
                {"_target_": "gymnasium.wrappers:FrameStackObservation", "stack_size": 3}]
    cfg = env_cfg(id="CartPole-v1", wrappers=wrappers)
    assert vectorization_mode(cfg) == "sync"  # CartPole's native vector env takes no wrappers
    envs = make_vec_env(cfg, 2)
    assert envs.single_observation_space.shape == (3, 5)
    obs, _ = envs.reset(seed=0)
    assert obs.shape == (2, 3, 5)
    envs.close()


@pytest.mark.parametrize(("wrappers", "message"), [
    (["gymnasium.wrappers.FlattenObservation"], "each wrapper is a mapping with _target_"),
    ([{"_target_": "gymnasium.wrappers.FlattenObservatio"}],
     "has no attribute 'FlattenObservatio'. Did you mean: FlattenObservation"),
    ([{"_target_": "gymnasium.wrappers.FrameStackObservation", "stack_sise": 3}],
     "env.wrappers[0] (_target_='gymnasium.wrappers.FrameStackObservation') with "
     "{'stack_sise': 3} could not wrap the env"),
])
def test_wrapper_errors_name_the_item(wrappers, message):
    with pytest.raises(ConfigError) as err:
        make_vec_env(env_cfg(id="CartPole-v1", wrappers=wrappers), 1)
    assert message in str(err.value)


def test_wrappers_must_be_a_list():
    from types import SimpleNamespace

    from pgrun.envs.wrappers import wrapper_specs

    with pytest.raises(ConfigError, match="must be a list of wrappers"):
        wrapper_specs(SimpleNamespace(wrappers={"_target_": "x"}))


def test_wrappers_and_native_vector_env_refused_together():
    with pytest.raises(ConfigError, match="cannot take env.wrappers; use env.vectorization=auto"):
        make_vec_env(env_cfg(id="CartPole-v1", wrappers=TIME_AWARE,
                             vectorization="vector_entry_point"), 1)


def test_saved_wrappers_are_code_for_the_trust_rule():
    config = {"env": {"id": "CartPole-v1", "wrappers": TIME_AWARE}}
    assert code_references(config) == [
        "env.wrappers.0._target_='gymnasium.wrappers.TimeAwareObservation'"]


def test_cli_wrappers_in_training_and_eval_saved_with_the_run(cli, tmp_path):
    out = cli("train", "env.wrappers=[{_target_: gymnasium.wrappers.TimeAwareObservation}]",
              "total_steps=512", "eval.interval=512", "eval.episodes=2", "progress=none",
              f"hydra.run.dir={tmp_path}")
    assert out.returncode == 0, out.stderr
    saved = OmegaConf.load(tmp_path / ".hydra" / "config.yaml")
    assert OmegaConf.to_container(saved.env.wrappers) == TIME_AWARE
    import torch

    weights = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["agent"]
    assert weights["pi_body.0.0.weight"].shape[1] == 5  # CartPole's 4 numbers and the time
    refused = cli("eval", str(tmp_path), "episodes=2")
    assert refused.returncode == 2 and "env.wrappers.0._target_" in refused.stderr
    assert "--trust" in refused.stderr and "Traceback" not in refused.stderr
    trusted = cli("eval", str(tmp_path), "episodes=2", "--trust")
    assert trusted.returncode == 0, trusted.stderr


# ------------------------------------------------------------------ suites and time limits

def test_native_vector_env_that_takes_no_time_limit():
    """ALE's vector env takes no max_episode_steps: none is passed to it unless the user
    sets one, and then auto picks sync vectorization (an explicit choice is refused)."""
    assert vectorization_mode(env_cfg(id=ALE_LIKE)) == "vector_entry_point"
    envs = make_vec_env(env_cfg(id=ALE_LIKE), 2)
    assert type(envs).__name__ == "AleLikeVector"
    envs.close()
    limited = env_cfg(id=ALE_LIKE, max_episode_steps=5)
    assert vectorization_mode(limited) == "sync"
    envs = make_vec_env(limited, 1)
    envs.reset(seed=0)
    ends = []  # CartPole pushed one way falls after ~9 steps: the limit comes first
    for _ in range(5):
        _, _, term, trunc, _ = envs.step(np.zeros(1, dtype=np.int64))
        ends.append((bool(term[0]), bool(trunc[0])))
    assert ends == [(False, False)] * 4 + [(False, True)]
    envs.close()
    with pytest.raises(ConfigError, match="takes no time limit .env.max_episode_steps=5."):
        make_vec_env(env_cfg(id=ALE_LIKE, max_episode_steps=5,
                             vectorization="vector_entry_point"), 1)


def test_kwargs_are_blamed_only_when_they_are_the_cause():
    with pytest.raises(ConfigError) as err:
        make_vec_env(env_cfg(entry_point="tests.custom_env:Broken"), 1)
    assert "Check env.kwargs" not in str(err.value)


def test_unknown_suite_id_names_the_install_or_the_package_form(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "minigrid" else real(name, *a))
    with pytest.raises(ConfigError) as err:
        check_env_id("MiniGrid-NotInstalled-5x5-v0")
    assert "minigrid is not installed: pip install -e '.[minigrid]'" in str(err.value)
    assert "env.id=minigrid:MiniGrid-NotInstalled-5x5-v0" in str(err.value)
    with pytest.raises(ConfigError, match="name that package first: env.id=package:Zork-v3"):
        check_env_id("Zork-v3")


def test_unknown_env_preset_suggests_generic():
    message = unknown_env_presets(["algo=ppo", "env=Swimmer-v5"])
    assert "env=Swimmer-v5: there is no preset conf/env/Swimmer-v5.yaml" in message
    assert "pgrun train env=generic env.id=Swimmer-v5" in message
    assert unknown_env_presets(["env=CartPole-v1,Acrobot-v1", "env.id=x"]) is None
    assert "env=Nope" in unknown_env_presets(["env=CartPole-v1,Nope"])


def test_cli_unknown_preset_is_one_paragraph(cli):
    out = cli("train", "env=Swimmer-v5")
    assert out.returncode == 2 and "env=generic env.id=Swimmer-v5" in out.stderr
    assert "Traceback" not in out.stderr and "Could not find" not in out.stderr


def test_generic_env_takes_the_registered_reward_threshold(cli, tmp_path):
    out = cli("train", "env=generic", "env.id=MountainCar-v0", "total_steps=400",
              "eval.interval=0", "progress=none", f"hydra.run.dir={tmp_path}")
    assert out.returncode == 0, out.stderr
    assert OmegaConf.load(tmp_path / ".hydra" / "config.yaml").env.reward_threshold == -110.0
    assert json.loads((tmp_path / "summary.json").read_text())["reward_threshold"] == -110.0


# ------------------------------------------------------------------ observations

def test_dict_observation_with_text_gets_a_combined_body(caplog):
    import gymnasium as gym

    from pgrun.obs import ObsLayout
    from pgrun.policies import MultiInputBody, build_policy
    from tests.conftest import compose_config
    from tests.suite_envs import MiniGridLike

    env = MiniGridLike()
    layout = ObsLayout(env.observation_space)
    assert [(f.key, f.kind, f.size) for f in layout.fields] == [
        ("direction", "discrete", 1), ("image", "flat", 27)]  # 3×3: too small for the CNN
    assert layout.dropped and "'mission'" in layout.dropped[0]
    with caplog.at_level("INFO", logger="pgrun"):
        policy = build_policy(compose_config().policy, env.observation_space, env.action_space,
                              with_value=True)
    assert "'mission'" in caplog.text and "FilterObservation" in caplog.text
    assert isinstance(policy.pi_body[0], MultiInputBody)
    assert policy.pi_body[0].out_features == 4 + 27  # one-hot direction, flat image
    obs = layout.encode({"image": np.zeros((2, 3, 3, 3), np.uint8), "direction": np.array([1, 3]),
                         "mission": ("a", "b")})
    assert obs.shape == (2, 28) and obs.dtype == np.float32 and list(obs[:, 0]) == [1, 3]
    dist, value = policy(__import__("torch").from_numpy(obs))
    assert dist.mode().shape == (2,) and value.shape == (2,)
    # an image entry big enough gets the CNN, as SB3's MultiInputPolicy
    space = gym.spaces.Dict({"pixels": gym.spaces.Box(0, 255, (40, 40, 3), np.uint8),
                             "speed": gym.spaces.Box(-1, 1, (2,))})
    body = build_policy(compose_config().policy, space, gym.spaces.Discrete(2), True).pi_body[0]
    assert [kind for *_, kind in body.fields] == ["image", "flat"]
    assert body.out_features == 256 + 2


def test_ppo_learns_a_dict_observation_env(tmp_path):
    from pgrun.train import train
    from tests.conftest import compose_config

    cfg = compose_config("env=generic", "env.entry_point=tests.suite_envs:MiniGridLike",
                         "total_steps=4096", "eval.interval=4096", "eval.episodes=8",
                         "progress=none", "checkpoint.every=0")
    summary = train(cfg, tmp_path)
    evals = np.loadtxt(tmp_path / "eval.csv", delimiter=",", skiprows=1, ndmin=2)
    assert summary["status"] == "complete" and evals[-1, 1] == 1.0  # every goal reached


def test_grid_of_floats_is_flattened_not_refused():
    """highway-env's kinematics observation: Box(5, 5) float32, for the MLP."""
    import gymnasium as gym
    import torch

    from pgrun.policies import Flat, build_policy, resolve_kind
    from tests.conftest import compose_config

    space = gym.spaces.Box(-np.inf, np.inf, (5, 5), np.float32)
    assert resolve_kind("auto", space) == "mlp"
    policy = build_policy(compose_config().policy, space, gym.spaces.Discrete(5), True)
    assert isinstance(policy.pi_body[0], Flat) and policy.pi_body[1][0].in_features == 25
    assert policy(torch.zeros(3, 5, 5))[0].mode().shape == (3,)


# ------------------------------------------------------------------ actions

@pytest.mark.parametrize(("env", "chance"), [("MultiDiscreteActions", (1 / 3 + 1 / 2 + 1 / 4) / 3),
                                             ("MultiBinaryActions", 0.5)])
def test_ppo_learns_factored_actions(tmp_path, env, chance):
    from pgrun.train import train
    from tests.conftest import compose_config

    cfg = compose_config("env=generic", f"env.entry_point=tests.suite_envs:{env}",
                         "total_steps=8192", "eval.interval=8192", "eval.episodes=8",
                         "algo.lr=3e-3", "progress=none", "checkpoint.every=0")
    summary = train(cfg, tmp_path)
    assert summary["status"] == "complete" and summary["update_path"] == "autograd"
    evals = np.loadtxt(tmp_path / "eval.csv", delimiter=",", skiprows=1, ndmin=2)
    assert evals[-1, 1] > 5 * (chance + 0.8 * (1 - chance))  # 5 steps, near every factor right


# ------------------------------------------------------------------ the real suites (slow)

@pytest.mark.slow
def test_real_minigrid_preset_trains_and_evaluates(cli, tmp_path):
    pytest.importorskip("minigrid")
    out = cli("train", "env=MiniGrid-Empty-5x5-v0", "total_steps=8192", "eval.interval=4096",
              "eval.episodes=4", "progress=none", f"hydra.run.dir={tmp_path}")
    assert out.returncode == 0, out.stderr
    evals = np.loadtxt(tmp_path / "eval.csv", delimiter=",", skiprows=1, ndmin=2)
    assert evals[-1, 1] > 0.9  # the goal in a few steps
    assert cli("eval", str(tmp_path), "episodes=2").returncode == 2  # it names a wrapper
    assert cli("eval", str(tmp_path), "episodes=2", "--trust").returncode == 0


@pytest.mark.slow
def test_real_minigrid_dict_observations_without_a_wrapper():
    pytest.importorskip("minigrid")
    envs = make_vec_env(env_cfg(id="MiniGrid-DoorKey-5x5-v0"), 2)  # found without minigrid:
    from pgrun.obs import ObsLayout

    layout = ObsLayout(envs.single_observation_space)
    assert [f.key for f in layout.fields] == ["direction", "image"]
    assert layout.encode(envs.reset(seed=0)[0]).shape == (2, 1 + 147)
    envs.close()


@pytest.mark.slow
def test_real_ale_vector_env_gets_no_time_limit():
    pytest.importorskip("ale_py")
    cfg = env_cfg(id="ALE/Pong-v5")
    assert vectorization_mode(cfg) == "vector_entry_point"  # no limit passed to it
    assert vectorization_mode(env_cfg(id="ALE/Pong-v5", max_episode_steps=100)) == "sync"


@pytest.mark.slow
def test_real_atari_preset_makes_stacked_frames_for_the_cnn():
    pytest.importorskip("ale_py")
    pytest.importorskip("cv2")
    from pgrun.policies import resolve_kind
    from tests.conftest import compose_config

    cfg = compose_config("env=Pong-v5")
    envs = make_vec_env(cfg.env, 2)
    assert envs.single_observation_space.shape == (4, 84, 84)
    assert resolve_kind("auto", envs.single_observation_space) == "cnn"
    assert envs.reset(seed=0)[0].shape == (2, 4, 84, 84)
    envs.close()


def test_vector_ale_swaps_the_wrappers_for_ales_own_preprocessing():
    from tests.conftest import compose_config

    plain, ale = compose_config("env=Pong-v5"), compose_config("env=Pong-v5", "vector=ale")
    assert plain.env.vectorization == "sync" and len(plain.env.wrappers) == 2
    assert ale.env.vectorization == "ale" and list(ale.env.wrappers) == []
    assert ale.env.kwargs.frameskip == 4  # ALE skips frames itself; the preset's 1 is gone
    assert (ale.env.kwargs.reward_clipping, ale.env.kwargs.use_fire_reset) == (False, False)
    for key in ("id", "num_envs", "life_loss_terminal", "reward_threshold"):
        assert ale.env[key] == plain.env[key]
    assert ale.normalize == plain.normalize and ale.algo == plain.algo


def test_vector_ale_on_an_env_that_is_not_ales_is_refused_naming_it():
    from tests.conftest import compose_config

    for env in ("env=CartPole-v1", "env=Pendulum-v1"):  # a native vector env of its own; none
        cfg = compose_config(env, "vector=ale")
        with pytest.raises(ConfigError, match=r"vector=ale\): env.id='(CartPole|Pendulum)-v1' "
                                              r"is not one of ALE's Atari ids"):
            make_vec_env(cfg.env, 2)


PONG_SPEC = EnvSpec("ALE/Pong-v5", vector_entry_point="ale_py.vector_env:AtariVectorEnv",
                   kwargs={"game": "pong", "repeat_action_probability": 0.25,
                           "full_action_space": False, "frameskip": 4,
                           "max_num_frames_per_episode": 108000})
"""ale-py's registration of ALE/Pong-v5 (ale-py 0.12), so these tests need no ale-py."""


@pytest.mark.parametrize("sticky", [None, 0.0])
def test_vector_ale_played_through_the_wrappers_is_the_preset(sticky):
    """What pgrun eval's videos play for a vector=ale run (ALE's vector env renders no
    frames): the Atari preset itself, sticky actions as the run had them."""
    from pgrun.envs.ale_vector import wrapped_form
    from tests.conftest import compose_config

    extra = [] if sticky is None else [f"env.kwargs.repeat_action_probability={sticky}"]
    plain = compose_config("env=Pong-v5", *[f"+{o}" for o in extra])
    wrapped = wrapped_form(compose_config("env=Pong-v5", "vector=ale", *extra).env, PONG_SPEC)
    assert OmegaConf.to_container(wrapped.wrappers) == OmegaConf.to_container(plain.env.wrappers)
    assert wrapped.vectorization == plain.env.vectorization == "sync"
    effective = [{**PONG_SPEC.kwargs, **cfg.kwargs} for cfg in (wrapped, plain.env)]
    assert effective[0] == effective[1]
    assert effective[0]["repeat_action_probability"] == (0.25 if sticky is None else sticky)
    for key in ("id", "num_envs", "max_episode_steps", "life_loss_terminal"):
        assert wrapped[key] == plain.env[key]


@pytest.mark.parametrize(("override", "named"), [
    ("env.kwargs.reward_clipping=true", "reward_clipping=True"),
    ("env.kwargs.use_fire_reset=true", "use_fire_reset=True"),
    ("+env.kwargs.episodic_life=true", "episodic_life=True"),
    ("+env.kwargs.img_width=96", "img_height=84 with img_width=96"),
    ("+env.kwargs.obs_typo=1", "obs_typo=1"),
])
def test_vector_ale_settings_the_wrappers_cannot_play_are_named(override, named):
    from pgrun.envs.ale_vector import wrapped_form
    from tests.conftest import compose_config

    with pytest.raises(ConfigError, match=re.escape(named)):
        wrapped_form(compose_config("env=Pong-v5", "vector=ale", override).env, PONG_SPEC)


def test_a_generic_ale_id_on_its_vector_env_clips_rewards_so_has_no_wrapped_form():
    from pgrun.envs.ale_vector import wrapped_form

    cfg = OmegaConf.structured(EnvConfig(id="ALE/Pong-v5"))
    with pytest.raises(ConfigError, match="reward_clipping=True, use_fire_reset=True"):
        wrapped_form(cfg, PONG_SPEC)  # AtariVectorEnv's defaults


@pytest.mark.slow
def test_real_ale_vector_env_plays_as_the_preset_wrappers():
    """The same actions give the same rewards and ends through both, and frames that differ
    only where the two resizes round differently (no no-ops, no sticky actions: no chance)."""
    pytest.importorskip("ale_py")
    pytest.importorskip("cv2")
    from tests.conftest import compose_config

    no_sticky = "env.kwargs.repeat_action_probability=0.0"
    wrapped = compose_config("env=Pong-v5", f"+{no_sticky}", "env.wrappers.0.noop_max=0")
    native = compose_config("env=Pong-v5", "vector=ale", no_sticky, "env.kwargs.noop_max=0")
    a, b = make_vec_env(wrapped.env, 2), make_vec_env(native.env, 2)
    assert a.single_observation_space == b.single_observation_space
    oa, ob = a.reset(seed=0)[0], b.reset(seed=0)[0]
    rng = np.random.default_rng(0)
    differing, rewards = [], 0.0
    for _ in range(300):
        act = rng.integers(a.single_action_space.n, size=2)
        oa, ra, ta, _, _ = a.step(act)
        ob, rb, tb, _, _ = b.step(act)
        np.testing.assert_array_equal(ra, rb)
        np.testing.assert_array_equal(ta, tb)
        differing.append(np.mean(oa != ob))
        rewards += np.abs(ra).sum()
    a.close()
    b.close()
    assert rewards > 0  # points were scored, so the comparison saw the game move
    assert np.mean(differing) < 0.01
