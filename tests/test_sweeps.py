"""Sweeps through Hydra's launchers, run for real at small budgets: the local parallel
preset (joblib), submitit's local executor (the SLURM launcher's code path), failed runs
listed at the end, and a rerun that skips complete runs and resumes the others."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from pgrun.cli import CONF_DIR
from tests.conftest import REPO

TINY = ["total_steps=2000", "eval.interval=1000", "eval.episodes=2", "progress=none"]


def _summaries(sweep_dir):
    return {p.parent.name: json.loads(p.read_text()) for p in sweep_dir.glob("*/summary.json")}


def _with_hydra(*overrides):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=True)


def test_launcher_presets_compose():
    local = _with_hydra("hydra/launcher=local")
    assert local.hydra.launcher._target_.endswith("JoblibLauncher")
    assert local.hydra.launcher.n_jobs == -1 and local.torch_threads == 1
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    slurm = _with_hydra("hydra/launcher=slurm", "hydra.launcher.partition=cpu")
    assert slurm.hydra.launcher._target_.endswith("SlurmLauncher")
    for key in ("partition", "timeout_min", "cpus_per_task", "mem_gb", "array_parallelism"):
        assert key in slurm.hydra.launcher
    assert (CONF_DIR / "hydra" / "launcher" / "ray_cpu.yaml").exists()


def test_local_parallel_sweep_runs_two_jobs_in_worker_processes(cli, tmp_path):
    out = cli("train", "-m", "hydra/launcher=local", f"hydra.sweep.dir={tmp_path}", "seed=0,1",
              *TINY)
    assert out.returncode == 0, out.stderr
    assert "Joblib.Parallel(n_jobs=-1" in out.stdout + out.stderr
    assert "2 runs: 2 complete" in out.stdout
    summaries = _summaries(tmp_path)
    assert sorted(s["seed"] for s in summaries.values()) == [0, 1]
    assert all(s["status"] == "complete" for s in summaries.values())


def test_submitit_local_sweep_runs_the_submitit_code_path(cli, tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    out = cli("train", "-m", "hydra/launcher=submitit_local", f"hydra.sweep.dir={tmp_path}",
              "seed=0,1", *TINY)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / ".submitit").is_dir()  # submitit's job folders: its executor ran them
    summaries = _summaries(tmp_path)
    assert len(summaries) == 2 and all(s["status"] == "complete" for s in summaries.values())


def _run_with_fake_envs(*args, timeout=300):
    """``pgrun ARGS`` in a process that registered tests/fake_envs.py (basic launcher)."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    env.pop("HYDRA_FULL_ERROR", None)
    code = "import sys, tests.fake_envs; from pgrun.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_failed_runs_are_listed_and_a_rerun_skips_complete_runs(tmp_path):
    """Job 1 raises mid-run (after a checkpoint): the sweep still runs job 2, lists job 1
    with its error and exits 1. Run again with the failure gone: job 0 is skipped, job 1
    resumes from its checkpoint, and the sweep exits 0."""
    flag = tmp_path / "fail"
    flag.touch()
    sweep = tmp_path / "sweep"
    args = ["train", "-m", f"hydra.sweep.dir={sweep}", "env.id=FlakyCartPole-v0",
            f"+env.kwargs.fail_flag={flag}", "+env.kwargs.fail_after=0,250,0",
            "total_steps=3000", "eval.interval=1000", "eval.episodes=2", "progress=none",
            "checkpoint.every=2"]
    out = _run_with_fake_envs(*args)
    assert out.returncode == 1, out.stdout + out.stderr
    failed = sweep / "1_ppo_CartPole-v1_s0"
    assert "3 runs: 2 complete, 1 failed" in out.stderr
    assert f"FAILED      {failed.name}: RuntimeError: injected failure at step 250" in out.stderr
    assert f"hydra.sweep.dir={sweep}" in out.stderr  # how to redo it
    assert (failed / "error.txt").read_text().startswith("RuntimeError: injected failure")
    summaries = _summaries(sweep)
    assert summaries[failed.name]["status"] == "failed"
    assert summaries["2_ppo_CartPole-v1_s0"]["status"] == "complete"  # the sweep went on
    done = {p: (p / "metrics.csv").stat().st_mtime_ns for p in sweep.glob("[02]_*")}

    flag.unlink()
    again = _run_with_fake_envs(*args)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "3 runs: 1 complete, 2 skipped (already complete)" in again.stdout
    assert all((p / "metrics.csv").stat().st_mtime_ns == t for p, t in done.items())
    summary = _summaries(sweep)[failed.name]
    assert summary["status"] == "complete" and not (failed / "error.txt").exists()
    assert summary["resumes"][0]["env_state"] == "episodes restarted"  # a Python env
    metrics = pd.read_csv(failed / "metrics.csv")
    assert list(metrics["update"]) == list(range(1, len(metrics) + 1))


def test_config_error_in_one_sweep_job_is_listed(cli, tmp_path):
    out = cli("train", "-m", f"hydra.sweep.dir={tmp_path}", "algo.gamma=0.9,1.5", *TINY)
    assert out.returncode == 1
    assert "2 runs: 1 complete, 1 failed" in out.stderr
    assert "algo.gamma=1.5: must be in [0, 1]" in out.stderr
    assert "Traceback" not in out.stderr


def test_slurm_preset_becomes_these_sbatch_options(tmp_path, monkeypatch):
    """No SLURM here: render the sbatch script submitit would submit for the preset (the
    launcher's own parameter mapping), with a stand-in ``srun`` on PATH."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    import submitit
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
    from omegaconf import OmegaConf
    from submitit.slurm.slurm import _make_sbatch_string

    srun = tmp_path / "srun"
    srun.write_text("#!/bin/sh\nexit 0\n")
    srun.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    cfg = _with_hydra("hydra/launcher=slurm", "hydra.launcher.partition=cpu",
                      "hydra.launcher.array_parallelism=4", "hydra.launcher.timeout_min=90")
    params = OmegaConf.to_container(cfg.hydra.launcher, resolve=False)
    params.pop("_target_")
    params["name"] = "pgrun"
    executor = submitit.AutoExecutor(folder=tmp_path / "jobs", cluster="slurm",
                                     slurm_max_num_timeout=params.pop("max_num_timeout"))
    params.pop("submitit_folder")
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(**{k if k in base else f"slurm_{k}": v for k, v in params.items()})
    inner = executor._executor
    sbatch = _make_sbatch_string(command="pgrun", folder=inner.folder, map_count=10,
                                 **inner.parameters)
    for option in ("--partition=cpu", "--time=90", "--cpus-per-task=1", "--mem=4GB",
                   "--array=0-9%4", "--signal=USR2@120"):
        assert f"#SBATCH {option}\n" in sbatch, sbatch
