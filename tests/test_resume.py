"""Checkpoints and resume: a stopped, killed or failed run continues where its checkpoint
left it, with no duplicate or missing CSV rows, and (where the env state is saved)
exactly as if it had never stopped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch

from pgrun.algos.ppo import PPO
from pgrun.metrics import TIMING_COLUMNS
from pgrun.runfolder import RunFolderError, load_checkpoint
from pgrun.signals import preemption_signal
from pgrun.train import NonFiniteError, train
from tests.conftest import REPO, compose_config

SMALL = ["total_steps=3000", "eval.interval=1000", "eval.episodes=2", "progress=none"]


def _metrics(run_dir):
    return pd.read_csv(run_dir / "metrics.csv").drop(columns=list(TIMING_COLUMNS))


def _evals(run_dir):
    return pd.read_csv(run_dir / "eval.csv").drop(columns="time_s")


def _assert_continuous(run_dir):
    m = pd.read_csv(run_dir / "metrics.csv")
    assert list(m["update"]) == list(range(1, len(m) + 1)), "duplicate or missing updates"
    assert m["step"].is_monotonic_increasing and m["step"].is_unique
    e = pd.read_csv(run_dir / "eval.csv")
    assert e["step"].is_monotonic_increasing and e["step"].is_unique
    return m


def _summary(run_dir):
    return json.loads((run_dir / "summary.json").read_text())


@pytest.mark.parametrize("algo", ["reinforce", "vpg", "ppo"])
def test_resumed_run_equals_uninterrupted_run(tmp_path, algo):
    """Stop after 5 updates (a checkpoint), resume: metrics.csv and eval.csv are those of
    the run that never stopped, timing columns aside (NumPy CartPole: env state saved)."""
    common = [f"algo={algo}", *SMALL, "checkpoint.every=2"]
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert train(compose_config(*common), whole)["status"] == "complete"

    first = train(compose_config(*common, "checkpoint.stop_after_updates=5"), parts)
    assert first["status"] == "interrupted" and first["checkpoint"]["update"] == 5
    assert len(pd.read_csv(parts / "metrics.csv")) == 5
    second = train(compose_config(*common), parts)
    assert second["status"] == "complete"
    assert second["resumes"] == [{"update": 5, "step": first["steps"], "env_state": "restored"}]

    _assert_continuous(parts)
    pd.testing.assert_frame_equal(_metrics(whole), _metrics(parts))
    pd.testing.assert_frame_equal(_evals(whole), _evals(parts))
    assert second["final_eval_return"] == _summary(whole)["final_eval_return"]


def test_the_same_stopped_command_again_takes_no_update(tmp_path):
    """A run stopped by checkpoint.stop_after_updates, started again by the same command,
    stays where it stopped: no update, its checkpoint and metrics.csv byte for byte; a
    larger limit continues it."""
    stopping = [*SMALL, "checkpoint.stop_after_updates=3"]
    train(compose_config(*stopping), tmp_path)
    files = {name: (tmp_path / name).read_bytes() for name in ("checkpoint.pt", "metrics.csv")}
    again = train(compose_config(*stopping), tmp_path)
    assert again["status"] == "interrupted" and again["checkpoint"]["update"] == 3
    assert again["stop_reason"] == "checkpoint.stop_after_updates=3"
    assert {name: (tmp_path / name).read_bytes() for name in files} == files
    more = train(compose_config(*SMALL, "checkpoint.stop_after_updates=4"), tmp_path)
    assert more["checkpoint"]["update"] == 4 and len(pd.read_csv(tmp_path / "metrics.csv")) == 4


def test_env_without_saved_state_restarts_episodes_and_says_so(tmp_path):
    common = [*SMALL, "env.vectorization=sync", "checkpoint.every=2"]
    train(compose_config(*common, "checkpoint.stop_after_updates=4"), tmp_path)
    summary = train(compose_config(*common), tmp_path)
    assert summary["status"] == "complete"
    assert summary["resumes"][0]["env_state"] == "episodes restarted"
    _assert_continuous(tmp_path)


def test_complete_run_is_skipped_and_other_config_refused(tmp_path):
    first = train(compose_config(*SMALL), tmp_path)
    mtime = (tmp_path / "metrics.csv").stat().st_mtime_ns
    again = train(compose_config(*SMALL, "checkpoint.every=7", "progress=plain"), tmp_path)
    assert again == first and (tmp_path / "metrics.csv").stat().st_mtime_ns == mtime
    with pytest.raises(RunFolderError, match=r"another configuration.*algo.lr.*resume=false"):
        train(compose_config(*SMALL, "algo.lr=0.01"), tmp_path)
    fresh = train(compose_config(*SMALL, "algo.lr=0.01", "resume=false"), tmp_path)
    assert fresh["status"] == "complete" and fresh["resumes"] == []


def test_runs_made_before_a_key_existed_are_the_same_runs(tmp_path):
    """A key pgrun added after a run was made (absent from the run's config) counts as at
    its default: the complete run is still skipped, the unfinished one still resumes; the
    key set to another value is another run."""
    from omegaconf import OmegaConf

    from pgrun.runfolder import config_hash

    def older(run_dir):  # as an older pgrun wrote it: no normalize.reward_sign
        path = run_dir / "checkpoint.pt"
        ckpt = torch.load(path, weights_only=False)
        del ckpt["config"]["normalize"]["reward_sign"]
        torch.save(ckpt, path)
        summary = _summary(run_dir)
        summary["config_hash"] = config_hash(ckpt["config"]) + "-older-identity"
        (run_dir / "summary.json").write_text(json.dumps(summary))

    config = OmegaConf.to_container(compose_config(*SMALL), resolve=True)
    assert config["normalize"]["reward_sign"] is False
    without = {**config, "normalize": {k: v for k, v in config["normalize"].items()
                                       if k != "reward_sign"}}
    assert config_hash(without) == config_hash(config)
    other = {**config, "normalize": {**config["normalize"], "reward_sign": True}}
    assert config_hash(other) != config_hash(config)

    first = train(compose_config(*SMALL), tmp_path / "complete")
    older(tmp_path / "complete")
    assert train(compose_config(*SMALL), tmp_path / "complete")["steps"] == first["steps"]
    with pytest.raises(RunFolderError, match=r"another configuration.*reward_sign"):
        train(compose_config(*SMALL, "normalize.reward_sign=true"), tmp_path / "complete")
    train(compose_config(*SMALL, "checkpoint.stop_after_updates=2"), tmp_path / "unfinished")
    older(tmp_path / "unfinished")
    done = train(compose_config(*SMALL), tmp_path / "unfinished")
    assert done["status"] == "complete" and len(done["resumes"]) == 1


def test_unfinished_run_of_other_config_refused_and_resume_true_needs_checkpoint(tmp_path):
    train(compose_config(*SMALL, "checkpoint.stop_after_updates=2"), tmp_path / "a")
    with pytest.raises(RunFolderError, match=r"checkpoint of another configuration.*seed: 0 → 1"):
        train(compose_config(*SMALL, "seed=1"), tmp_path / "a")
    with pytest.raises(RunFolderError, match="resume=true, but .* has no checkpoint.pt"):
        train(compose_config(*SMALL, "resume=true"), tmp_path / "b")


def test_corrupted_checkpoint_is_reported_not_loaded(tmp_path):
    train(compose_config(*SMALL, "checkpoint.stop_after_updates=2"), tmp_path)
    ckpt = tmp_path / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    with pytest.raises(RunFolderError, match=r"checkpoint.pt is corrupted .* resume=false"):
        train(compose_config(*SMALL), tmp_path)


def test_corrupted_summary_is_reported_and_rewritten_from_the_checkpoint(tmp_path, caplog):
    with_ckpt, without = tmp_path / "a", tmp_path / "b"
    train(compose_config(*SMALL, "checkpoint.stop_after_updates=2"), with_ckpt)
    (with_ckpt / "summary.json").write_text("{not json")
    assert train(compose_config(*SMALL), with_ckpt)["status"] == "complete"
    assert "summary.json is corrupted" in caplog.text
    assert _summary(with_ckpt)["status"] == "complete"

    train(compose_config(*SMALL, "checkpoint.enabled=false"), without)
    (without / "summary.json").write_text("{not json")
    with pytest.raises(RunFolderError, match=r"summary.json is corrupted.*no checkpoint"):
        train(compose_config(*SMALL), without)


def test_nan_stops_the_run_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    """A NaN in the parameters after update 7: no row and no checkpoint for it; the
    checkpoint of update 6 stays loadable (weights_only) and finite."""
    update = PPO.update
    calls = {"n": 0}

    def poisoned(self, batch, progress):
        stats = update(self, batch, progress)
        calls["n"] += 1
        if calls["n"] == 7:
            with torch.no_grad():
                next(self.policy.parameters()).fill_(float("nan"))
        return stats

    monkeypatch.setattr(PPO, "update", poisoned)
    with pytest.raises(NonFiniteError, match=r"update 7 .*non-finite.*parameter pi_body.*update 6"):
        train(compose_config(*SMALL, "checkpoint.every=3"), tmp_path)

    summary = _summary(tmp_path)
    assert summary["status"] == "failed" and "NonFiniteError" in summary["error"]
    assert (tmp_path / "error.txt").read_text().startswith("NonFiniteError: update 7")
    metrics = pd.read_csv(tmp_path / "metrics.csv")
    assert list(metrics["update"]) == list(range(1, 7))
    ckpt = load_checkpoint(tmp_path / "checkpoint.pt")
    assert ckpt["update"] == 6 and not ckpt["complete"]
    assert all(bool(torch.isfinite(t).all()) for t in ckpt["agent"].values())


def _start(run_dir, *overrides):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.Popen([sys.executable, "-m", "pgrun", "train", f"hydra.run.dir={run_dir}",
                             *overrides], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for_rows(proc, path, rows, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"training ended before {rows} rows: {proc.communicate()}")
        if path.exists() and path.read_text().count("\n") > rows:
            return
        time.sleep(0.02)
    proc.kill()
    pytest.fail(f"no {rows} rows in {path} after {timeout} s")


LONG = ["total_steps=40000", "eval.interval=2000", "eval.episodes=2", "progress=none",
        "checkpoint.every=5"]


def test_kill_9_then_resume_continues_without_gaps_or_duplicates(tmp_path):
    run = tmp_path / "run"
    proc = _start(run, *LONG)
    _wait_for_rows(proc, run / "metrics.csv", 17)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    ckpt = load_checkpoint(run / "checkpoint.pt")
    assert ckpt["update"] >= 15 and not (run / "summary.json").exists()
    rows_before = len(pd.read_csv(run / "metrics.csv"))

    out = subprocess.run([sys.executable, "-m", "pgrun", "train", f"hydra.run.dir={run}", *LONG],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert f"resuming from {run / 'checkpoint.pt'} at update {ckpt['update']}" in out.stdout + out.stderr
    metrics = _assert_continuous(run)
    assert len(metrics) > rows_before and metrics["step"].iloc[-1] >= 40000
    summary = _summary(run)
    assert summary["status"] == "complete" and summary["resumes"][0]["update"] == ckpt["update"]

    whole = tmp_path / "whole"  # the same run, never killed
    train(compose_config(*LONG), whole)
    pd.testing.assert_frame_equal(_metrics(whole), _metrics(run))
    pd.testing.assert_frame_equal(_evals(whole), _evals(run))


def test_sigterm_writes_a_checkpoint_and_exits_143_quickly(tmp_path):
    run = tmp_path / "run"
    proc = _start(run, *LONG, "checkpoint.every=1000")
    _wait_for_rows(proc, run / "metrics.csv", 8)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert time.monotonic() - t0 < 15
    assert "stopped (SIGTERM)" in err and f"hydra.run.dir={run}" in err
    summary = _summary(run)
    assert summary["status"] == "interrupted" and summary["stop_reason"] == "SIGTERM"
    ckpt = load_checkpoint(run / "checkpoint.pt")
    metrics = pd.read_csv(run / "metrics.csv")
    assert ckpt["update"] == summary["checkpoint"]["update"] == metrics["update"].iloc[-1]
    assert ckpt["env_state"] is not None and np.isfinite(metrics["policy_loss"]).all()


def test_preemption_signal_checkpoints_then_hands_over_to_submitits_handler(tmp_path,
                                                                            monkeypatch):
    """Under submitit, USR2 means "preempted or timing out": pgrun writes its checkpoint at
    the update boundary, then calls the handler that was installed before (submitit's,
    which requeues the job and exits; here a stand-in)."""
    sig = preemption_signal()
    calls = []

    def submitit_like(signum, frame):
        calls.append((signum, load_checkpoint(tmp_path / "checkpoint.pt")["update"]))
        raise SystemExit(42)

    update, n = PPO.update, {"calls": 0}

    def signalling(self, batch, progress):
        n["calls"] += 1
        if n["calls"] == 3:
            os.kill(os.getpid(), sig)
        return update(self, batch, progress)

    monkeypatch.setattr(PPO, "update", signalling)
    previous = signal.signal(sig, submitit_like)
    try:
        with pytest.raises(SystemExit) as exit_info:
            train(compose_config(*SMALL, "checkpoint.every=100"), tmp_path)
        assert signal.getsignal(sig) is submitit_like  # pgrun's handler is gone again
    finally:
        signal.signal(sig, previous)
    assert exit_info.value.code == 42 and calls == [(sig, 3)]
    summary = _summary(tmp_path)
    assert summary["status"] == "interrupted" and summary["stop_reason"] == sig.name


def test_rng_and_generator_states_survive_a_weights_only_round_trip(tmp_path):
    import random

    from pgrun.checkpoint import (
        generator_state,
        global_rng_state,
        set_generator_state,
        set_global_rng_state,
    )

    gen = np.random.default_rng(7)
    torch.save({"rng": global_rng_state(), "gen": generator_state(gen)}, tmp_path / "s.pt")
    expected = (random.random(), np.random.random(), torch.rand(1).item(), gen.random())  # noqa: NPY002
    loaded = torch.load(tmp_path / "s.pt", weights_only=True)
    set_global_rng_state(loaded["rng"])
    set_generator_state(gen, loaded["gen"])
    assert (random.random(), np.random.random(), torch.rand(1).item(), gen.random()) == expected  # noqa: NPY002
