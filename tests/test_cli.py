"""The command line as a user meets it: help, composed configs, clean errors, run folders."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
import torch

from pgrun.algos import ALGORITHMS
from pgrun.cli import CONF_DIR
from pgrun.metrics import EVAL_COLUMNS, METRIC_COLUMNS, TIMING_COLUMNS
from tests.conftest import REPO, compose_config

TINY = ["total_steps=1500", "eval.interval=500", "eval.episodes=2", "progress=none"]


def test_usage_and_unknown_command(cli):
    out = cli()
    assert out.returncode == 0 and "pgrun train" in out.stdout
    bad = cli("trian")
    assert bad.returncode == 2 and "unknown command 'trian'" in bad.stderr


@pytest.mark.parametrize("args", [["--help"], ["compare", "--help"], ["eval", "--help"]])
def test_commands_that_do_not_train_do_not_import_torch(args):
    """torch's import is most of a command's start-up (≈1 s); only train and tune need it."""
    code = ("import sys\nfrom pgrun.cli import main\n"
            f"try:\n    main({args!r})\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_train_help_names_pgrun_and_every_group_option(cli):
    out = cli("train", "--help")
    assert out.returncode == 0
    assert "pgrun train" in out.stdout
    for group in ("algo", "env"):
        for yaml in (CONF_DIR / group).glob("*.yaml"):
            assert yaml.stem in out.stdout, f"--help does not list {group}={yaml.stem}"


def test_cfg_job_prints_composed_config_with_overrides(cli):
    out = cli("train", "algo=vpg", "env=Acrobot-v1", "algo.gamma=0.9", "--cfg", "job")
    assert out.returncode == 0, out.stderr
    assert "name: vpg" in out.stdout and "id: Acrobot-v1" in out.stdout
    assert "gamma: 0.9" in out.stdout


def test_tuned_hparams_are_picked_and_overrides_win():
    cfg = compose_config("algo=ppo", "env=CartPole-v1")
    assert cfg.algo.num_steps == 32 and cfg.algo.gae_lambda == 0.8  # hparams/ppo_CartPole-v1
    cfg = compose_config("algo=ppo", "env=CartPole-v1", "algo.num_steps=16", "total_steps=2e5")
    assert cfg.algo.num_steps == 16 and cfg.total_steps == 200000
    cfg = compose_config("algo=ppo", "env=Acrobot-v1")
    assert cfg.algo.num_steps == 256  # hparams/ppo_Acrobot-v1, not CartPole's


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("algo.clip_epss=0.1", "clip_epss"),  # misspelt key
        ("algo.clip_eps=abc", "clip_eps"),  # wrong type
        ("algo=foo", "Available options in 'algo'"),
        ("env=Foo", "pgrun train env=generic env.id=Foo"),
        ("algo.gamma=1.5", "algo.gamma=1.5: must be in [0, 1]"),
        ("algo.lr=-1", "algo.lr=-1.0: must be > 0"),
        ("algo.clip_eps=0", "algo.clip_eps=0.0: must be > 0"),
        ("algo.num_epochs=0", "algo.num_epochs=0: must be an integer ≥ 1"),
        ("env.num_envs=0", "env.num_envs=0"),
        ("total_steps=abc", "total_steps='abc'"),
        ("policy.activation=swish", "policy.activation='swish': must be one of"),
        ("env.id=NoSuchEnv-v0", "env.id='NoSuchEnv-v0' is not a registered"),
    ],
)
def test_bad_input_fails_cleanly(cli, tmp_path, override, expected):
    out = cli("train", f"hydra.run.dir={tmp_path / 'run'}", *TINY, override)
    assert out.returncode != 0
    assert expected in out.stderr + out.stdout
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "run" / "metrics.csv").exists()  # nothing trained


def test_reinforce_episode_count_must_split_over_envs(cli, tmp_path):
    out = cli("train", "algo=reinforce", "algo.episodes_per_update=6", "env.num_envs=4",
              f"hydra.run.dir={tmp_path}", *TINY)
    assert out.returncode == 2 and "algo.episodes_per_update=6" in out.stderr


def _metrics_without_timing(run_dir):
    return pd.read_csv(run_dir / "metrics.csv").drop(columns=list(TIMING_COLUMNS))


@pytest.mark.parametrize("algo", ["reinforce", "vpg", "ppo"])
def test_run_folder_contract_and_same_seed_same_metrics(cli, tmp_path, algo):
    runs = [tmp_path / "a", tmp_path / "b"]
    for run in runs:
        out = cli("train", f"algo={algo}", "seed=3", f"hydra.run.dir={run}", *TINY)
        assert out.returncode == 0, out.stderr

    a, b = runs
    assert (a / ".hydra" / "config.yaml").exists() and (a / ".hydra" / "overrides.yaml").exists()
    metrics = pd.read_csv(a / "metrics.csv")
    assert list(metrics.columns) == [*METRIC_COLUMNS, *ALGORITHMS[algo].columns]
    assert metrics["step"].is_monotonic_increasing and metrics["step"].iloc[-1] >= 1500
    assert metrics["return_mean"].notna().any()
    evals = pd.read_csv(a / "eval.csv")
    assert list(evals.columns) == EVAL_COLUMNS
    assert evals["step"].iloc[0] == 0 and evals["step"].iloc[-1] == metrics["step"].iloc[-1]
    assert (evals["episodes"] == 2).all()

    summary = json.loads((a / "summary.json").read_text())
    assert summary["algo"] == algo and summary["seed"] == 3
    assert summary["steps"] == metrics["step"].iloc[-1]
    assert summary["final_eval_return"] == pytest.approx(evals["return_mean"].iloc[-1])
    assert set(summary["versions"]) == {"pgrun", "torch", "gymnasium", "python"}

    ckpt = torch.load(a / "checkpoint.pt", weights_only=True)
    assert ckpt["config"]["algo"]["name"] == algo and ckpt["step"] == summary["steps"]
    assert any(k.startswith("head.out.") for k in ckpt["agent"])

    pd.testing.assert_frame_equal(_metrics_without_timing(a), _metrics_without_timing(b))
    pd.testing.assert_frame_equal(pd.read_csv(a / "eval.csv").drop(columns="time_s"),
                                  pd.read_csv(b / "eval.csv").drop(columns="time_s"))


def test_different_seeds_differ(cli, tmp_path):
    for seed in (0, 1):
        out = cli("train", f"seed={seed}", f"hydra.run.dir={tmp_path / str(seed)}", *TINY)
        assert out.returncode == 0, out.stderr
    a, b = (_metrics_without_timing(tmp_path / s) for s in ("0", "1"))
    assert not a.equals(b)
