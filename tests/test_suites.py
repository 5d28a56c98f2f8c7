"""Environments users bring: wrappers named in the config, third-party suites by id,
time limits a native vector env cannot take, and the errors for each (fakes shaped like
the suites are in tests/suite_envs.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
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
    message = unknown_env_presets(["algo=ppo", "env=Hopper-v5"])
    assert "env=Hopper-v5: there is no preset conf/env/Hopper-v5.yaml" in message
    assert "pgrun train env=generic env.id=Hopper-v5" in message
    assert unknown_env_presets(["env=CartPole-v1,Acrobot-v1", "env.id=x"]) is None
    assert "env=Nope" in unknown_env_presets(["env=CartPole-v1,Nope"])


def test_cli_unknown_preset_is_one_paragraph(cli):
    out = cli("train", "env=Hopper-v5")
    assert out.returncode == 2 and "env=generic env.id=Hopper-v5" in out.stderr
    assert "Traceback" not in out.stderr and "Could not find" not in out.stderr


def test_generic_env_takes_the_registered_reward_threshold(cli, tmp_path):
    out = cli("train", "env=generic", "env.id=MountainCar-v0", "total_steps=400",
              "eval.interval=0", "progress=none", f"hydra.run.dir={tmp_path}")
    assert out.returncode == 0, out.stderr
    assert OmegaConf.load(tmp_path / ".hydra" / "config.yaml").env.reward_threshold == -110.0
    assert json.loads((tmp_path / "summary.json").read_text())["reward_threshold"] == -110.0
