"""Seed-batched runs (``hydra/launcher=batched``): each seed computes the algorithm it
would compute alone, in its own run folder; seeds fail, stop and resume on their own."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch

from pgrun import batched
from pgrun.algos.base import adam, step
from pgrun.batched import train_seeds
from pgrun.config import ConfigError
from pgrun.flat import flat_parameters
from pgrun.metrics import TIMING_COLUMNS
from pgrun.policies import ActorCritic
from pgrun.stack import SeedStack
from pgrun.train import train
from tests.conftest import REPO, compose_config, run_cli

SMALL = ["total_steps=2048", "eval.interval=1024", "eval.episodes=2", "progress=none"]


def _metrics(run_dir):
    return pd.read_csv(run_dir / "metrics.csv").drop(columns=list(TIMING_COLUMNS))


def _batched(tmp_path, seeds, *overrides, name="b"):
    cfgs = [compose_config(f"seed={s}", *overrides) for s in seeds]
    dirs = [tmp_path / f"{name}{s}" for s in seeds]
    return train_seeds(cfgs, dirs), dirs


@pytest.mark.parametrize("extra", [[], ["algo.target_kl=0.002", "algo.num_minibatches=4"],
                                   ["env=Pendulum-v1", "algo.num_steps=64",
                                    "env.num_envs=4", "algo.num_minibatches=4"],
                                   ["accelerate=false", "policy.shared=true"],
                                   ["env=GridWorld-v0", "algo.num_minibatches=2"],
                                   ["algo=vpg", "algo.vf_iters=10", "algo.max_grad_norm=0.5"],
                                   ["algo=reinforce", "algo.max_grad_norm=0.5"],
                                   ["algo=grpo", "env.num_envs=4", "algo.group_size=2"],
                                   ["algo=ppo_kl", "algo.kl_target=0.001"],
                                   ["algo=trpo", "algo.vf_iters=10"],
                                   ["algo=trpo", "env=Pendulum-v1", "algo.vf_iters=10"],
                                   ["algo=trpo", "env=Pendulum-v1", "algo.vf_iters=2",
                                    "algo.vf_minibatches=4"],
                                   ["env=generic", "env.entry_point=tests.image_env:LeftRight",
                                    "env.num_envs=8", "algo.num_steps=16", "algo.lr=1e-3",
                                    "algo.num_minibatches=2", "algo.num_epochs=4",
                                    "total_steps=512", "eval.interval=256"],
                                   ["env=generic", "env.entry_point=tests.suite_envs:MiniGridLike",
                                    "env.num_envs=4", "algo.num_steps=32", "algo.num_minibatches=2"],
                                   ["env=generic",
                                    "env.entry_point=tests.suite_envs:MultiDiscreteActions",
                                    "env.num_envs=4", "algo.num_steps=32", "algo.num_minibatches=2"],
                                   ["env=generic",
                                    "env.entry_point=tests.suite_envs:MultiBinaryActions",
                                    "env.num_envs=4", "algo.num_steps=32", "algo.num_minibatches=2"]],
                         ids=["cartpole", "cartpole-target-kl", "pendulum-normalized",
                              "autograd-shared-body", "tabular", "vpg", "reinforce", "grpo",
                              "ppo-kl", "trpo", "trpo-pendulum", "trpo-critic-minibatches", "cnn",
                              "dict-obs",
                              "multidiscrete", "multibinary"])
def test_batched_seeds_compute_what_each_seed_computes_alone(tmp_path, extra):
    """The K seeds' metrics.csv rows match the runs alone: same episodes, the same losses
    (to float rounding of a batched matrix product), the same early stops per seed."""
    seeds = [0, 1, 2]
    results, dirs = _batched(tmp_path, seeds, *SMALL, *extra)
    assert [r["status"] for r in results] == ["complete"] * 3
    for s, d in zip(seeds, dirs, strict=True):
        alone = train(compose_config(f"seed={s}", *SMALL, *extra), tmp_path / f"alone{s}")
        a, b = _metrics(tmp_path / f"alone{s}"), _metrics(d)
        # float rounding differs between a batched and a single matrix product; it grows
        # until an action or an early stop (a threshold on a float) flips, after which the
        # runs part ways: with target_kl after the first update, on plain autograd after a
        # few (the accelerator's NumPy products round alike, and the runs agree throughout,
        # except where seeds' batches differ in length: GRPO's whole episodes are padded)
        rows = 1 if "algo.target_kl=0.002" in extra else \
            3 if {"accelerate=false", "algo=grpo", "env=generic"} & set(extra) else len(a)
        assert list(a.columns) == list(b.columns) and (len(a) == len(b) or rows < len(a))
        # and each seed's own schedule: lr and ε annealed by its own progress, its own β
        counts = ["step", "episodes", "grad_steps", "lr", "clip_eps", "kl_beta"]
        counts = [c for c in counts if c in a]
        pd.testing.assert_frame_equal(a[counts].iloc[:rows], b[counts].iloc[:rows])
        figures = ["policy_loss", "value_loss", "entropy", "grad_norm", "approx_kl"]
        np.testing.assert_allclose(b[figures].iloc[:min(rows, 2)], a[figures].iloc[:min(rows, 2)],
                                   rtol=2e-3, atol=1e-5)
        if rows == len(a):  # the same policies: the same evaluation episodes (continuous
            # actions round like the losses, and a swing-up's return follows them a little)
            evals = [pd.read_csv(p / "eval.csv").drop(columns="time_s")
                     for p in (tmp_path / f"alone{s}", d)]
            pd.testing.assert_frame_equal(*evals, rtol=1e-2)
        summary = json.loads((d / "summary.json").read_text())
        path = "autograd" if {"accelerate=false", "algo=trpo", "env=generic"} & set(extra) \
            else "numpy-layers"
        assert summary["seed"] == s
        assert summary["update_path"] == f"seed-batched (3 seeds, {path})"
        assert alone["steps"] == summary["steps"] or rows < len(a)
    if "algo.target_kl=0.002" in extra:  # the early stop did bind, differently per seed
        first = [int(_metrics(d)["grad_steps"].iloc[0]) for d in dirs]
        assert max(first) < 80 and len(set(first)) > 1  # 20 epochs × 4 minibatches


def test_each_seed_is_clipped_by_its_own_gradient_norm():
    """One seed's huge gradient is clipped to max_grad_norm; the other's small one is left
    alone, exactly as each would be alone."""
    torch.manual_seed(0)
    import gymnasium as gym

    spaces = gym.spaces.Box(-1, 1, (3,)), gym.spaces.Discrete(2)
    pols = [ActorCritic(*spaces) for _ in range(2)]
    stack = SeedStack(pols)
    opt = adam(stack, "all", lr=1e-3)
    obs = torch.randn(2, 16, 3)
    scale = torch.tensor([1000.0, 0.001])
    _, v = stack(obs)
    norms = step(opt, (v.pow(2).mean(-1) * scale), max_grad_norm=0.5)
    grads = flat_parameters(stack).grad
    assert norms[0] > 0.5 > norms[1]
    assert float(grads[0].norm()) == pytest.approx(0.5, rel=1e-4)
    assert float(grads[1].norm()) == pytest.approx(norms[1], rel=1e-5)


def test_a_seed_that_hits_nan_fails_alone(tmp_path, monkeypatch):
    """Seed 1's parameters turn NaN after its 3rd update: it stops (failed, keeping its
    last good checkpoint), while seeds 0 and 2 train on exactly as without it."""
    clean, clean_dirs = _batched(tmp_path, [0, 1, 2], *SMALL, "checkpoint.every=2",
                                 name="clean")
    from pgrun.algos.ppo import PPO

    original = PPO.update
    calls = {"n": 0}

    def poisoning(self, batch, progress):
        out = original(self, batch, progress)
        calls["n"] += 1
        if isinstance(batch, list) and calls["n"] == 3:
            flat_parameters(self.policy).data[1, :5] = math.nan
        return out

    monkeypatch.setattr(PPO, "update", poisoning)
    results, dirs = _batched(tmp_path, [0, 1, 2], *SMALL, "checkpoint.every=2")
    assert results[0]["status"] == results[2]["status"] == "complete"
    assert isinstance(results[1], batched.NonFiniteError)
    failed = json.loads((dirs[1] / "summary.json").read_text())
    assert failed["status"] == "failed" and "parameter" in failed["error"]
    assert (dirs[1] / "error.txt").is_file() and len(_metrics(dirs[1])) == 2
    for k in (0, 2):
        pd.testing.assert_frame_equal(_metrics(dirs[k]), _metrics(clean_dirs[k]))


def test_a_stopped_batch_resumes_each_seed_from_its_checkpoint(tmp_path):
    """Stopped after 3 updates and run again, every seed's metrics.csv equals that of the
    batch that never stopped (each seed's env state, generators and Adam state are in its
    own checkpoint, in the format of a run trained alone: alone, it continues too)."""
    whole, whole_dirs = _batched(tmp_path, [0, 1], *SMALL, name="whole")
    first, dirs = _batched(tmp_path, [0, 1], *SMALL, "checkpoint.stop_after_updates=3")
    assert [r["status"] for r in first] == ["interrupted"] * 2
    same, dirs = _batched(tmp_path, [0, 1], *SMALL, "checkpoint.stop_after_updates=3")
    assert [r["checkpoint"]["update"] for r in same] == [3, 3]  # the same command: no update
    assert [len(_metrics(d)) for d in dirs] == [3, 3]
    shutil.copytree(dirs[1], tmp_path / "alone1")
    again, dirs = _batched(tmp_path, [0, 1], *SMALL)
    assert [r["status"] for r in again] == ["complete"] * 2
    for d, w in zip(dirs, whole_dirs, strict=True):
        assert json.loads((d / "summary.json").read_text())["resumes"][0]["update"] == 3
        pd.testing.assert_frame_equal(_metrics(d), _metrics(w))
    alone = train(compose_config("seed=1", *SMALL), tmp_path / "alone1")
    assert alone["status"] == "complete" and alone["resumes"][0]["update"] == 3
    assert alone["resumes"][0]["env_state"] == "restored"
    assert len(_metrics(tmp_path / "alone1")) == len(_metrics(dirs[1]))


def test_unsupported_configurations_are_refused_without_writing(tmp_path, monkeypatch):
    from pgrun.algos.trpo import TRPO

    monkeypatch.setattr(TRPO, "seed_batched", False)  # as an algorithm of one's own
    with pytest.raises(ConfigError, match="algo=.*ppo.*; algo=trpo is not supported"):
        batched.check_batchable(compose_config("algo=trpo"))
    results, dirs = _batched(tmp_path, [0, 1], "policy.module=tests.user_nets:TinyNet",
                             *SMALL)
    assert all(isinstance(r, ConfigError) for r in results)
    assert "hydra/launcher=local" in str(results[0])
    assert not any(d.exists() for d in dirs)


def test_batched_sweep_from_the_command_line(tmp_path):
    """pgrun train -m hydra/launcher=batched: every seed in its own folder; run again,
    the complete runs are skipped; an unsupported algorithm is refused per job, cleanly."""
    sweep = tmp_path / "sweep"
    args = ["train", "-m", "hydra/launcher=batched", "hydra.launcher.n_jobs=1", "seed=0,1,2",
            *SMALL, f"hydra.sweep.dir={sweep}"]
    out = run_cli(*args)
    assert out.returncode == 0, out.stderr
    runs = sorted(p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert [p.name for p in runs] == [f"{i}_ppo_CartPole-v1_s{i}" for i in range(3)]
    for i, run in enumerate(runs):
        summary = json.loads((run / "summary.json").read_text())
        assert summary["status"] == "complete" and summary["seed"] == i
        assert summary["update_path"] == "seed-batched (3 seeds, numpy-layers)"  # n_jobs=1
        assert (run / ".hydra" / "config.yaml").is_file() and (run / "checkpoint.pt").is_file()
        lines = (run / "pgrun.log").read_text()  # its own lines only, of the 3 in the process
        assert f"seed={i}: done" in lines
        assert not [j for j in range(3) if j != i and f"seed={j}" in lines], lines
    again = run_cli(*args)
    assert again.returncode == 0 and "3 skipped (already complete)" in again.stdout

    refused = tmp_path / "refused"
    out = run_cli("train", "-m", "hydra/launcher=batched", "policy.module=tests.user_nets:TinyNet",
                  "seed=0,1", *SMALL, f"hydra.sweep.dir={refused}")
    assert out.returncode == 1
    assert "seed batching" in out.stderr and "hydra/launcher=local" in out.stderr
    assert not [p for p in refused.iterdir() if p.is_dir() and not p.name.startswith(".")]


def test_kill_9_of_a_batched_sweep_then_the_same_command_resumes_every_seed(tmp_path):
    sweep = tmp_path / "sweep"
    args = ["-m", "pgrun", "train", "-m", "hydra/launcher=batched", "hydra.launcher.n_jobs=1",
            "seed=0,1", "total_steps=20000", "eval.interval=5000", "eval.episodes=2",
            "progress=none", "checkpoint.every=3", f"hydra.sweep.dir={sweep}"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen([sys.executable, *args], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    runs = [sweep / f"{i}_ppo_CartPole-v1_s{i}" for i in range(2)]
    deadline = time.monotonic() + 240
    while not all((r / "checkpoint.pt").is_file() for r in runs):
        assert proc.poll() is None and time.monotonic() < deadline, "no checkpoints"
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert not any((r / "summary.json").exists() for r in runs)
    out = subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    for run in runs:
        summary = json.loads((run / "summary.json").read_text())
        assert summary["status"] == "complete" and summary["resumes"][0]["update"] >= 3
        m = pd.read_csv(run / "metrics.csv")
        assert list(m["update"]) == list(range(1, len(m) + 1)) and m["step"].iloc[-1] >= 20000


@pytest.mark.slow  # ~1–3 min per algorithm: 10 seeds batched and 10 alone
@pytest.mark.parametrize("algo,steps,learned", [("ppo", 30000, 300), ("ppo_kl", 30000, 150),
                                                ("trpo", 30000, 250), ("vpg", 50000, 300),
                                                ("reinforce", 50000, 300),
                                                ("grpo", 50000, 300)])
def test_batched_seeds_learn_as_seeds_alone(tmp_path, algo, steps, learned):
    """10 seeds of each algorithm on CartPole-v1 (its tuned preset, a small budget): the
    final eval returns of the batched seeds and of the same seeds alone are one
    distribution (two-sided Mann–Whitney p > 0.05) and the batched seeds learn (median
    above ``learned``; a uniformly random policy scores about 22)."""
    from scipy.stats import mannwhitneyu

    common = [f"algo={algo}", f"total_steps={steps}", f"eval.interval={steps // 3}",
              "progress=none"]
    results, _ = _batched(tmp_path, range(10), *common)
    batched_returns = [r["final_eval_return"] for r in results]
    alone = [train(compose_config(f"seed={s}", *common), tmp_path / f"alone{s}")
             ["final_eval_return"] for s in range(10)]
    print(algo, "batched", sorted(batched_returns), "alone", sorted(alone))
    assert np.median(batched_returns) > learned, batched_returns
    assert mannwhitneyu(batched_returns, alone).pvalue > 0.05, (batched_returns, alone)
