"""The MuJoCo presets (conf/env/*-v5.yaml with conf/hparams/ppo_mujoco.yaml,
trpo_mujoco.yaml and vpg_mujoco.yaml), a short run on Hopper-v5 when the mujoco extra is
installed, and the error without it."""

from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
import pytest

from pgrun.config import ConfigError, validate
from pgrun.train import train
from tests.conftest import REPO, compose_config

MUJOCO_ENVS = ("Hopper-v5", "HalfCheetah-v5", "Walker2d-v5", "Ant-v5", "Humanoid-v5")


@pytest.mark.parametrize("env", MUJOCO_ENVS)
def test_presets_compose_with_cleanrl_settings(env):
    cfg = compose_config(f"env={env}")
    validate(cfg)
    assert cfg.env.id == env and cfg.env.random_score is not None
    assert cfg.env.reference_score > cfg.env.random_score
    assert (cfg.env.num_envs, cfg.algo.num_steps, cfg.algo.num_minibatches,
            cfg.algo.num_epochs) == (1, 2048, 32, 10)
    assert (cfg.algo.lr, cfg.algo.anneal_lr, cfg.algo.clip_vloss) == (3e-4, True, True)
    assert cfg.normalize.obs and cfg.normalize.reward and cfg.policy.action_bounds == "clip"
    assert (cfg.normalize.clip_obs, cfg.normalize.clip_reward) == (10.0, 10.0)
    assert cfg.total_steps == 1_000_000
    assert compose_config(f"env={env}", "algo.lr=1e-3").algo.lr == 1e-3  # overrides win


@pytest.mark.parametrize("env", MUJOCO_ENVS)
def test_trpo_presets_compose_with_rl_zoo_settings(env):
    cfg = compose_config("algo=trpo", f"env={env}")
    validate(cfg)
    assert (cfg.env.num_envs, cfg.algo.num_steps, cfg.algo.cg_iters, cfg.algo.cg_damping) == \
        (2, 1024, 25, 0.1)
    assert cfg.algo.max_kl == (0.04 if env == "HalfCheetah-v5" else 0.01)
    # the critic: 20 epochs of minibatches of 128 = 2048 / 16
    assert (cfg.algo.vf_lr, cfg.algo.vf_iters, cfg.algo.vf_minibatches) == (1e-3, 20, 16)
    assert (cfg.algo.gamma, cfg.algo.gae_lambda) == (0.99, 0.95)
    assert cfg.normalize.obs and cfg.normalize.reward and cfg.policy.action_bounds == "clip"
    assert cfg.total_steps == (2_000_000 if env == "Humanoid-v5" else 1_000_000)


@pytest.mark.parametrize("env", MUJOCO_ENVS)
def test_vpg_presets_compose_with_spinning_up_settings(env):
    cfg = compose_config("algo=vpg", f"env={env}")
    validate(cfg)
    assert (cfg.env.num_envs, cfg.algo.num_steps, cfg.algo.gamma, cfg.algo.gae_lambda) == \
        (1, 4000, 0.99, 0.97)
    assert (cfg.algo.lr, cfg.algo.vf_lr, cfg.algo.vf_iters, cfg.algo.vf_minibatches) == \
        (3e-4, 1e-3, 80, 1)
    assert list(cfg.policy.hidden_sizes) == [64, 32] and cfg.policy.log_std_init == -0.5
    assert not cfg.policy.ortho_init and not cfg.normalize.obs and not cfg.normalize.reward
    assert cfg.total_steps == 1_000_000


def test_missing_mujoco_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mujoco", None)  # `import mujoco` now raises ImportError
    with pytest.raises(ConfigError, match=r"needs the mujoco package.*pip install -e '\.\[mujoco\]'"):
        train(compose_config("env=Hopper-v5", "progress=none"), tmp_path)
    assert not (tmp_path / "metrics.csv").exists()


def test_missing_mujoco_is_one_paragraph_with_exit_status_2(tmp_path):
    """The real CLI, with a mujoco on the path that fails to import as a missing one does."""
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "mujoco.py").write_text("raise ModuleNotFoundError(\"No module named 'mujoco'\")\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(fake), str(REPO)])}
    out = subprocess.run([sys.executable, "-m", "pgrun", "train", "env=generic", "env.id=Walker2d-v5",
                          f"hydra.run.dir={tmp_path / 'run'}"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    assert "pip install -e '.[mujoco]'" in out.stderr and "Traceback" not in out.stderr


def test_hopper_preset_runs_a_few_hundred_steps(tmp_path):
    pytest.importorskip("mujoco", reason="the mujoco extra is not installed (pip install -e '.[mujoco]')")
    cfg = compose_config("env=Hopper-v5", "progress=none", "total_steps=512", "algo.num_steps=256",
                         "algo.num_minibatches=4", "algo.num_epochs=2", "eval.interval=256",
                         "eval.episodes=2", "eval.num_envs=2")
    summary = train(cfg, tmp_path)
    assert summary["status"] == "complete"
    metrics = pd.read_csv(tmp_path / "metrics.csv")
    # env steps count real transitions: the autoreset steps after Hopper's falls are not
    assert metrics["step"].is_monotonic_increasing and metrics["step"].iloc[-1] >= 512
    assert metrics["episodes"].iloc[-1] > 0
    assert metrics[["policy_loss", "value_loss", "approx_kl"]].notna().all().all()
    evals = pd.read_csv(tmp_path / "eval.csv")
    assert len(evals) >= 2 and (evals["length_mean"] >= 1).all()
    assert (tmp_path / "checkpoint.pt").exists()
