"""Any gymnasium environment through pgrun's factory: registered ids, ``module:Env-v0``
ids, entry points, the default time limit, supported spaces, and the errors a user sees
when something does not fit (tests/custom_env.py holds the environments)."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from pgrun.config import ConfigError, EnvConfig
from pgrun.envs import (
    check_env_id,
    check_spaces,
    episode_limit,
    make_vec_env,
    resolve_spec,
    vectorization_mode,
)
from tests.conftest import compose_config

TINY = ["progress=none", "eval.episodes=2", "checkpoint.every=0"]


def env_cfg(**kwargs):
    kwargs.setdefault("id", kwargs.get("entry_point", "unused"))
    return OmegaConf.structured(EnvConfig(**kwargs))


def episode_length(envs, action=0, cap=5000) -> int:
    """Steps until env 0's first episode ends (asserting it is a truncation)."""
    envs.reset(seed=0)
    for t in range(1, cap + 1):
        _, _, term, trunc, _ = envs.step(np.full(envs.num_envs, action))
        if term[0] or trunc[0]:
            assert trunc[0] and not term[0]
            return t
    raise AssertionError("no episode end")


# ------------------------------------------------------------------ in-process factory

def test_entry_point_class_with_kwargs():
    envs = make_vec_env(env_cfg(entry_point="tests.custom_env:Corridor", kwargs={"size": 3}), 2)
    assert vectorization_mode(env_cfg(entry_point="tests.custom_env:Corridor")) == "sync"
    envs.reset(seed=0)
    for _ in range(2):
        _, reward, term, _, _ = envs.step(np.ones(2, dtype=np.int64))
        assert not term.any() and (reward == 0).all()
    _, reward, term, _, _ = envs.step(np.ones(2, dtype=np.int64))
    assert term.all() and (reward == 1).all()
    envs.close()


def test_entry_point_function():
    envs = make_vec_env(env_cfg(entry_point="tests.custom_env:make_corridor",
                                kwargs={"length": 1}), 1)
    envs.reset(seed=0)
    assert envs.step(np.ones(1, dtype=np.int64))[2].all()
    envs.close()


def test_env_without_time_limit_gets_none():
    """No limit is imposed on an env that has none: its episodes end when it says so."""
    cfg = env_cfg(entry_point="tests.custom_env:Endless")
    assert episode_limit(cfg, resolve_spec(cfg)) is None
    for endless in (cfg, env_cfg(id="tests.custom_env:pgrun-tests/Endless-v0")):
        envs = make_vec_env(endless, 1)
        envs.reset(seed=0)
        for _ in range(3000):
            _, _, term, trunc, _ = envs.step(np.zeros(1, dtype=np.int64))
            assert not (term.any() or trunc.any())
        envs.close()
    assert gym.spec("pgrun-tests/Endless-v0").max_episode_steps is None


def test_configured_time_limit_wins_and_registered_limit_is_kept():
    envs = make_vec_env(env_cfg(entry_point="tests.custom_env:Endless", max_episode_steps=7), 2)
    assert episode_length(envs) == 7
    envs.close()
    assert episode_limit(env_cfg(id="MountainCar-v0"), gym.spec("MountainCar-v0")) == 200
    envs = make_vec_env(env_cfg(id="MountainCar-v0", max_episode_steps=12), 1)
    assert episode_length(envs) == 12
    envs.close()


def test_module_colon_id_imports_the_module_first(tmp_path):
    import subprocess
    import sys

    from tests.conftest import REPO

    code = ("import sys; from pgrun.envs import check_env_id; "
            "assert 'tests.custom_env' not in sys.modules; "
            "print(check_env_id('tests.custom_env:pgrun-tests/Endless-v0').id)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "pgrun-tests/Endless-v0"
    assert check_env_id("tests.fake_envs:FlakyCartPole-v0").id == "FlakyCartPole-v0"


@pytest.mark.parametrize(("cfg", "message"), [
    (dict(entry_point="no_such_pkg.envs:MyEnv"),
     "cannot import module 'no_such_pkg.envs': there is no module named 'no_such_pkg'"),
    (dict(entry_point="tests.custom_env:Coridor"),
     "module 'tests.custom_env' (tests/custom_env.py) has no attribute 'Coridor'. Did you mean: Corridor"),
    (dict(entry_point="tests.custom_env"), "must be module.path:Name"),
    (dict(entry_point="tests.custom_env:NOT_AN_ENV"), "object of type int, not a gym.Env"),
    (dict(entry_point="tests.custom_env:Broken"),
     "Could not create env.entry_point='tests.custom_env:Broken' with env.kwargs={} (sync "
     "vectorization): RuntimeError: the simulator license has expired (at tests/custom_env.py"),
    (dict(entry_point="tests.custom_env:Corridor", kwargs={"sise": 3}),
     "TypeError: Corridor.__init__() got an unexpected keyword argument 'sise'"),
    (dict(entry_point="tests.custom_env:Corridor", kwargs={"sise": 3}), "Check env.kwargs (sise)"),
    (dict(entry_point="tests.custom_env:DictObs"),
     "has observation space Dict('note': Text(1, 8, charset="),
    (dict(entry_point="tests.custom_env:DictObs"), "None of its entries has a space pgrun encodes"),
    (dict(entry_point="tests.custom_env:TupleActions"),
     "has action space Tuple(Discrete(2), Discrete(2)), which pgrun does not support"),
    (dict(id="no_such_pkg:Foo-v0"), "env.id='no_such_pkg:Foo-v0': cannot import module 'no_such_pkg'"),
    (dict(id="tests.custom_env:Nothing-v0"), "Importing 'tests.custom_env' did not register"),
    (dict(id="CartPole-v9"), "env.id='CartPole-v9' is not a registered gymnasium environment"),
    (dict(id="MountainCar-v0", vectorization="vector_entry_point"),
     "env.id='MountainCar-v0' has no native vector implementation"),
])
def test_factory_errors_name_the_problem(cfg, message):
    with pytest.raises(ConfigError) as err:
        make_vec_env(env_cfg(**cfg), 2)
    assert message in str(err.value)


@pytest.mark.parametrize(("obs", "act", "ok"), [
    (gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(2), True),
    (gym.spaces.Box(-1, 1, (4,)), gym.spaces.Box(-2, 2, (3,)), True),
    (gym.spaces.Discrete(25), gym.spaces.Discrete(4), True),
    (gym.spaces.Box(0, 255, (8, 8, 3), np.uint8), gym.spaces.Discrete(2), True),  # cnn
    (gym.spaces.Box(0, 255, (3, 8, 8), np.uint8), gym.spaces.Discrete(2), True),  # C×H×W
    (gym.spaces.Box(0, 1, (8, 8, 3), np.float32), gym.spaces.Discrete(2), True),  # flattened
    (gym.spaces.Box(0, 255, (8, 8, 8), np.uint8), gym.spaces.Discrete(2), True),  # flattened
    (gym.spaces.Box(-1, 1, ()), gym.spaces.Discrete(2), "observation space"),
    (gym.spaces.Tuple((gym.spaces.Discrete(2),)), gym.spaces.Discrete(2), True),
    (gym.spaces.Dict({"m": gym.spaces.Text(5)}), gym.spaces.Discrete(2), "None of its entries"),
    (gym.spaces.Box(-1, 1, (4,)), gym.spaces.MultiDiscrete([2, 2]), True),
    (gym.spaces.Box(-1, 1, (4,)), gym.spaces.MultiBinary(3), True),
    (gym.spaces.Box(-1, 1, (4,)), gym.spaces.MultiDiscrete([[2, 2]]), "one dimension of factors"),
    (gym.spaces.Box(-1, 1, (4,)), gym.spaces.MultiDiscrete([2, 2], start=[1, 0]), "starts at"),
    (gym.spaces.Discrete(5, start=1), gym.spaces.Discrete(2), True),  # policies offset it
    (gym.spaces.Box(-1, 1, (4,)), gym.spaces.Box(-1, 1, (2, 2)), "action space Box"),
    (gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(3, start=-1), "starts at -1"),
])
def test_check_spaces(obs, act, ok):
    if ok is True:
        check_spaces(obs, act)
        return
    with pytest.raises(ConfigError) as err:
        check_spaces(obs, act, "env.id='X'")
    assert ok in str(err.value) and "pgrun supports observation spaces" in str(err.value)


def test_generic_config_defaults_the_id_to_the_entry_point():
    cfg = compose_config("env=generic", "env.entry_point=tests.custom_env:Corridor")
    assert cfg.env.id == "tests.custom_env:Corridor"
    cfg = compose_config("env=generic", "env.id=MountainCar-v0")
    assert cfg.env.id == "MountainCar-v0" and cfg.env.entry_point is None


# ------------------------------------------------------------------ the command line

def test_cli_trains_a_registered_env_with_generic_defaults(cli, tmp_path):
    out = cli("train", "env=generic", "env.id=MountainCar-v0", "total_steps=600",
              "eval.interval=600", f"hydra.run.dir={tmp_path}", *TINY)
    assert out.returncode == 0, out.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["env"] == "MountainCar-v0"
    assert summary["steps"] >= 600
    evals = pd.read_csv(tmp_path / "eval.csv")
    assert (evals["length_mean"] == 200).all()  # its registered limit; a random car never gets up


def test_cli_trains_and_evaluates_an_entry_point_env(cli, tmp_path):
    run = tmp_path / "run"
    out = cli("train", "env=generic", "env.entry_point=tests.custom_env:Corridor",
              "env.kwargs={size: 3}", "env.max_episode_steps=100",  # a greedy policy may
              "algo=reinforce", "env.num_envs=2",  # walk left forever: Corridor has no limit
              "algo.episodes_per_update=2", "total_steps=300", "eval.interval=100",
              f"hydra.run.dir={run}", *TINY)
    assert out.returncode == 0, out.stderr
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["env"] == "tests.custom_env:Corridor"
    metrics = pd.read_csv(run / "metrics.csv")
    assert (metrics["return_mean"] <= 1).all()
    assert (metrics["length_mean"] >= 3).all()  # size 3: three steps right at least
    again = cli("eval", str(run), "episodes=3")
    assert again.returncode == 2 and "--trust" in again.stderr  # the folder names code
    again = cli("eval", str(run), "episodes=3", "--trust")  # rebuilt from the saved config
    assert again.returncode == 0, again.stderr
    assert "tests.custom_env:Corridor" in again.stdout and "over 3 episodes" in again.stdout


def test_cli_env_without_time_limit_runs_without_one(cli, tmp_path):
    out = cli("train", "env=generic", "env.id=tests.custom_env:pgrun-tests/Endless-v0",
              "env.num_envs=1", "algo.num_steps=500", "total_steps=2000", "eval.interval=0",
              f"hydra.run.dir={tmp_path}", *TINY)
    assert out.returncode == 0, out.stderr
    metrics = pd.read_csv(tmp_path / "metrics.csv")
    assert (metrics["episodes"] == 0).all() and metrics["length_mean"].isna().all()
    assert OmegaConf.load(tmp_path / ".hydra" / "config.yaml").env.max_episode_steps is None


@pytest.mark.parametrize(("override", "message"), [
    ("env.entry_point=no_such_pkg.envs:MyEnv", "cannot import module 'no_such_pkg.envs'"),
    ("env.entry_point=tests.custom_env:Nope", "has no attribute 'Nope'"),
    ("env.entry_point=tests.custom_env:Broken", "RuntimeError: the simulator license has expired"),
    ("env.entry_point=tests.custom_env:DictObs", "has observation space Dict("),
    ("env.entry_point=tests.custom_env:TupleActions", "has action space Tuple("),
    ("env.entry_point=tests.custom_env:WrongShape", "reset() returned an observation of shape (1,)"),
    ("env.entry_point=tests.custom_env:OldApiReset", "not gymnasium's (observation, info) pair"),
    ("env.id=no_such_pkg:Foo-v0", "cannot import module 'no_such_pkg'"),
    ("env.max_episode_steps=null", "env.id=None: name the environment"),  # neither id nor entry point
])
def test_cli_errors_are_one_message_exit_2(cli, tmp_path, override, message):
    out = cli("train", "env=generic", override, "total_steps=600", f"hydra.run.dir={tmp_path}",
              *TINY)
    assert out.returncode == 2, out.stderr
    assert message in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "metrics.csv").exists()


def test_generic_run_folders_are_named_after_the_env():
    from pgrun.config import run_name

    assert run_name("CartPole-v1", "CartPole-v1") == "CartPole-v1"
    assert run_name("generic", "MountainCar-v0") == "MountainCar-v0"
    assert run_name("generic", "my_pkg.envs:MyEnv") == "my_pkg.envs_MyEnv"
    assert run_name("generic", "pgrun/GridWorld-v0") == "pgrun_GridWorld-v0"


def test_discrete_observations_not_starting_at_zero_train(tmp_path):
    """The policies offset a Discrete(n, start) observation; nothing refuses it."""
    from pgrun.train import train

    cfg = compose_config("env=generic", "env.entry_point=tests.custom_env:ShiftedStates",
                         "env.max_episode_steps=50",  # no limit of its own: a greedy
                         "total_steps=400",  # evaluation could stay put forever "eval.interval=200", "eval.episodes=2",
                         "progress=none")
    summary = train(cfg, tmp_path)
    assert summary["status"] == "complete" and summary["steps"] >= 400
