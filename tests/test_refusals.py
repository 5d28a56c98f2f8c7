"""A refused command leaves no trace: a resume with another config or a sweep rerun with
changed values leaves the run folder byte for byte as it was; a configuration error makes
no folder (and is found before torch is imported); a second writer is turned away."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from pgrun.runfolder import write_summary
from pgrun.train import NonFiniteError, train
from tests.conftest import REPO, compose_config

TINY = ["total_steps=1500", "eval.interval=500", "eval.episodes=2", "progress=none"]


def fingerprint(folder):
    """Every file under ``folder`` (hidden ones too) with the sha256 of its bytes."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_refused_resume_leaves_the_folder_byte_for_byte(cli, tmp_path):
    unfinished, complete = tmp_path / "unfinished", tmp_path / "complete"
    out = cli("train", f"hydra.run.dir={unfinished}", *TINY, "checkpoint.stop_after_updates=2")
    assert out.returncode == 0, out.stderr
    out = cli("train", f"hydra.run.dir={complete}", *TINY)
    assert out.returncode == 0, out.stderr
    broken = ["resume=false", "env=generic", "env.entry_point=tests.custom_env:Broken"]
    for run, change, message in (
            (unfinished, ["algo.lr=0.01"], "checkpoint of another configuration (algo.lr"),
            (complete, ["algo.lr=0.01"], "complete run of another configuration (algo.lr"),
            (complete, broken, "the simulator license has expired")):  # start over: refused
        before = fingerprint(run)
        assert ".hydra/config.yaml" in before and "checkpoint.pt" in before
        out = cli("train", f"hydra.run.dir={run}", *TINY, *change)
        assert out.returncode == 2 and message in out.stderr
        assert fingerprint(run) == before


def test_sweep_rerun_with_changed_values_leaves_complete_runs_as_they_were(cli, tmp_path):
    sweep = tmp_path / "sweep"
    out = cli("train", "-m", f"hydra.sweep.dir={sweep}", "seed=0,1", *TINY)
    assert out.returncode == 0, out.stderr
    runs = sorted(p for p in sweep.iterdir() if (p / ".hydra").is_dir())
    assert len(runs) == 2
    before = {run: fingerprint(run) for run in runs}
    out = cli("train", "-m", f"hydra.sweep.dir={sweep}", "seed=0,1", "algo.lr=0.01", *TINY)
    assert out.returncode == 1
    assert {run: fingerprint(run) for run in runs} == before  # no error.txt, no new config
    assert "2 runs: 2 failed" in out.stderr and "complete run of another configuration" in out.stderr
    assert "refused: nothing was written" in out.stderr


@pytest.mark.parametrize(("override", "message"), [
    ("seed=-1", "seed=-1: must be in [0, 4294967295]"),
    ("seed=4294967296", "seed=4294967296: must be in [0, 4294967295]"),
    ("algo.num_minibatches=100000", "algo.num_minibatches=100000: must be ≤ the batch"),
    ("algo.lr=inf", "algo.lr=inf: must be a finite number"),
    ("algo.vf_coef=inf", "algo.vf_coef=inf: must be a finite number"),
    ("algo.clip_eps=inf", "algo.clip_eps=inf: must be a finite number"),
    ("algo.max_grad_norm=inf", "must be a finite number (null turns it off)"),
    ("total_steps=inf", "total_steps=inf: must be a whole number"),
    ("env.reward_threshold=nan", "env.reward_threshold=nan: must be a finite number or null"),
    ("env.kwargs=5", "env.kwargs=5: must be a mapping"),
    ("env.id=NoSuchEnv-v0", "env.id='NoSuchEnv-v0' is not a registered"),  # found after Hydra
    ("env.id=" + "X" * 20000, "20,000 characters; a name of an environment has at most 500"),
    ("algo.clip_epss=0.1", "Key 'clip_epss' not in 'PPOConfig'"),  # Hydra's composition error
])
def test_config_errors_exit_2_and_leave_no_run_folder(cli, tmp_path, override, message):
    run = tmp_path / "run"
    out = cli("train", f"hydra.run.dir={run}", *TINY, override)
    assert out.returncode == 2, out.stderr
    assert message in out.stderr and "Traceback" not in out.stderr
    assert not run.exists()


@pytest.mark.parametrize(("algo", "count", "message"), [
    ("trpo", "100000", "algo.vf_minibatches=100000: must be ≤ the batch"),
    ("vpg", "0", "algo.vf_minibatches=0: must be"),
])
def test_critic_minibatches_are_checked(cli, tmp_path, algo, count, message):
    run = tmp_path / "run"
    out = cli("train", f"hydra.run.dir={run}", *TINY, f"algo={algo}", f"algo.vf_minibatches={count}")
    assert out.returncode == 2, out.stderr
    assert message in out.stderr and "Traceback" not in out.stderr
    assert not run.exists()


def test_unusable_run_folders_are_one_message(cli, tmp_path):
    file = tmp_path / "file"
    file.write_text("keep me")
    cases = {f"hydra.run.dir={file}": "a file of that name",
             f"hydra.run.dir={file}/run": "cannot create the folder",
             "hydra.run.dir=/proc/pgrun-run": "cannot create the folder",
             f"hydra.run.dir={tmp_path}/{'d' * 300}": "bytes long; file systems allow 255"}
    for override, message in cases.items():
        out = cli("train", "env=generic", "env.id=CartPole-v1", override, *TINY)
        assert out.returncode == 2, (override[:50], out.stderr[-500:])
        assert message in out.stderr and "Traceback" not in out.stderr
        assert len(out.stderr) < 1000
    assert file.read_text() == "keep me"


@pytest.mark.parametrize(("override", "message"), [
    ("algo.gamma=2", "algo.gamma=2.0: must be in [0, 1]"),
    ("env.id=NoSuchEnv-v0", "is not a registered gymnasium environment"),
])
def test_common_errors_are_found_before_training_is_set_up(tmp_path, override, message):
    """Range and env-name errors stop the command before the training loop is imported or
    any folder made. (Composing the config imports the algorithms, hence torch: each
    algorithm declares its config dataclass next to its loss.)"""
    code = ("import sys\nfrom pgrun.cli import main\n"
            "try:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n"
            "    print('exit', e.code, 'pgrun.train' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code, "train", override,
                          f"hydra.run.dir={tmp_path / 'run'}"], cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert "exit 2 False" in out.stdout, out.stdout + out.stderr
    assert message in out.stderr and not (tmp_path / "run").exists()


def test_unknown_plus_keys_are_warned_about(cli, tmp_path):
    out = cli("train", f"hydra.run.dir={tmp_path / 'run'}", "+algo.clip_epss=0.1", "seed=-1")
    assert "warning: algo.clip_epss is not a pgrun setting" in out.stderr
    assert out.returncode == 2


# ------------------------------------------------------------------ one writer

LONG = ["total_steps=40000", "eval.interval=2000", "eval.episodes=2", "progress=none",
        "checkpoint.every=5"]


def _start(run_dir):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.Popen([sys.executable, "-m", "pgrun", "train", f"hydra.run.dir={run_dir}",
                             *LONG], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for_rows(proc, path, rows, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        if path.exists() and path.read_text().count("\n") > rows:
            return
        time.sleep(0.02)
    proc.kill()
    pytest.fail(f"no {rows} rows in {path} after {timeout} s")


def test_second_writer_is_refused_and_a_dead_writers_lock_is_recovered(cli, tmp_path):
    run = tmp_path / "run"
    first = _start(run)
    try:
        _wait_for_rows(first, run / "metrics.csv", 12)
        second = cli("train", f"hydra.run.dir={run}", *LONG)
        assert first.poll() is None, "the first writer must still be running"
        assert second.returncode == 2, second.stderr
        assert "is being written by another pgrun process" in second.stderr
        assert f"pid {first.pid} on host" in second.stderr and "Traceback" not in second.stderr
        lock = json.loads((run / ".pgrun.lock").read_text())
        assert lock["pid"] == first.pid
    finally:
        first.send_signal(signal.SIGKILL)  # dies holding the lock; the lock file stays
        first.communicate()
    assert (run / ".pgrun.lock").exists()
    third = cli("train", f"hydra.run.dir={run}", *LONG)
    assert third.returncode == 0, third.stderr
    metrics = pd.read_csv(run / "metrics.csv")
    assert list(metrics["update"]) == list(range(1, len(metrics) + 1))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["updates"] == len(metrics)
    assert not (run / ".pgrun.lock").exists()


# ------------------------------------------------------- failures are recorded

def test_summary_writes_non_finite_figures_as_null(tmp_path):
    write_summary(tmp_path, {"final_eval_return": float("nan"), "best": [1.0, float("inf")]})
    assert json.loads((tmp_path / "summary.json").read_text()) == {
        "final_eval_return": None, "best": [1.0, None]}


def test_nan_reward_from_the_env_is_named_and_recorded(tmp_path):
    cfg = compose_config("env=generic", "env.id=tests.fake_envs:FlakyCartPole-v0",
                         "+env.kwargs.nan_after=100", *TINY, "checkpoint.every=1")
    with pytest.raises(NonFiniteError, match=r"environment returned non-finite rewards.*"
                                             r"not the learning rate's"):
        train(cfg, tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "failed" and "non-finite rewards" in summary["error"]
    assert (tmp_path / "error.txt").read_text().startswith("NonFiniteError")


def _file_size_limit(limit):
    """A disk that fills up at ``limit`` bytes per file, for a child process."""
    import resource

    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past it fail with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_a_full_disk_is_one_message_and_leaves_no_temporary_files(tmp_path):
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONDONTWRITEBYTECODE": "1"}
    out = subprocess.run([sys.executable, "-m", "pgrun", "train", f"hydra.run.dir={run}",
                          *TINY], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=300, preexec_fn=_file_size_limit(50_000))
    assert out.returncode == 1, out.stderr
    assert f"could not write {run / 'checkpoint.pt'}" in out.stderr
    assert "Traceback" not in out.stderr
    assert not list(run.glob(".*.tmp")) and not (run / "checkpoint.pt").exists()
    summary = json.loads((run / "summary.json").read_text())  # small enough to be written
    assert summary["status"] == "failed" and "could not write" in summary["error"]
