"""``pgrun tune``: search spaces, the objective over seeds, the study (resume, pruning) and
what a search leaves behind."""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("optuna")
import optuna  # noqa: E402

from pgrun.compare import bootstrap  # noqa: E402
from pgrun.compare.load import Curve, load_runs  # noqa: E402
from pgrun.compare.stats import iqm  # noqa: E402
from pgrun.config import ConfigError  # noqa: E402
from pgrun.tune import space  # noqa: E402
from pgrun.tune.command import done_count, recover  # noqa: E402
from pgrun.tune.trial import seed_score, trial_value  # noqa: E402
from tests.conftest import REPO, compose_config  # noqa: E402

TINY = ["algo=ppo", "env=CartPole-v1", "total_steps=2000", "eval.interval=1000",
        "eval.episodes=2", "n_jobs=1"]
"""PPO's CartPole preset (batch 256), 2,000 steps, evaluated at 0, 1k and 2k steps."""


def write_space(path: Path, params: dict) -> Path:
    path.write_text(yaml.safe_dump({"params": params}))
    return path


LR = {"algo.lr": {"type": "float", "low": 1.0e-4, "high": 3.0e-3, "log": True}}


def trials_rows(study: Path) -> list[dict]:
    with open(study / "trials.csv") as f:
        return list(csv.DictReader(f))


# ------------------------------------------------------------------ fast

def test_space_errors_name_every_bad_key(tmp_path):
    bad = write_space(tmp_path / "bad.yaml", {
        "algo.lr": {"type": "float", "low": 0.0, "high": 1.0e-2, "log": True},
        "algo.gamma": {"type": "float", "low": 0.99, "high": 0.9},
        "algo.clip_eps": {"type": "uniform", "low": 0.1, "high": 0.3},
        "env.num_envs": {"type": "int", "low": 2, "high": 8, "steps": 2},
        "algo.num_steps": {"type": "categorical", "choices": []},
    })
    with pytest.raises(ConfigError) as err:
        space.load([bad])
    text = str(err.value)
    for expected in ("algo.lr: log=true needs low > 0", "algo.gamma: low=0.99 must be < high=0.9",
                     "algo.clip_eps.type='uniform'", "env.num_envs.steps: not a key",
                     "algo.num_steps.choices: must be a non-empty list"):
        assert expected in text
    cfg = compose_config("algo=ppo", "env=CartPole-v1")
    params = space.load([write_space(tmp_path / "keys.yaml", {
        "algo.lrr": {"type": "float", "low": 1e-4, "high": 1e-3},
        "algo.gamma": {"type": "float", "low": 0.9, "high": 1.5},
        "env.num_envs": {"type": "float", "low": 1.5, "high": 4.5},
        "algo.lr": {"type": "float", "low": 1e-4, "high": 1e-3}})])
    with pytest.raises(ConfigError) as err:
        space.check_against(params, cfg)
    text = str(err.value)
    assert "algo.lrr: not a setting of this config" in text
    assert "algo.gamma=1.5: must be in [0, 1]" in text
    assert "env.num_envs=1.5" in text
    assert "algo.lr" not in text.replace("algo.lrr", "")


def test_generic_spaces_hold_the_presets(tmp_path):
    """Every shipped space loads, fits its config, and contains the preset's values (so
    trial 0 can be the config's own)."""
    for path in sorted((REPO / "conf" / "tune").glob("*.yaml")):
        algo = path.stem.split("_")[0]
        cfg = compose_config(f"algo={algo}", "env=CartPole-v1")
        params = space.load([path])
        space.check_against(params, cfg)
        from omegaconf import OmegaConf
        for key, spec in params.items():
            assert space.contains(spec, OmegaConf.select(cfg, key)), (path.name, key)


def test_per_env_file_overlays_the_generic_one(tmp_path):
    (tmp_path / "tune").mkdir()
    write_space(tmp_path / "tune" / "vpg.yaml", {**LR, "algo.gamma": {
        "type": "categorical", "choices": [0.9, 0.99]}})
    write_space(tmp_path / "tune" / "vpg_Acrobot-v1.yaml", {"algo.gamma": None, "algo.lr": {
        "type": "float", "low": 1e-3, "high": 1e-2}})
    files = space.space_files(tmp_path, "vpg", "Acrobot-v1")
    assert space.load(files) == {"algo.lr": {"type": "float", "low": 1e-3, "high": 1e-2}}
    assert space.space_files(tmp_path, "vpg", "CartPole-v1") == [tmp_path / "tune" / "vpg.yaml"]


def test_objective_is_the_iqm_over_seeds_of_compares_figures():
    curves = [Curve(np.array([0, 1000, 2000, 3000]), np.array([10.0, 20, 30, 40 + k]))
              for k in range(5)]
    finals = [seed_score(c, "iqm_final", 3000) for c in curves]
    assert finals == pytest.approx([(20 + 30 + 40 + k) / 3 for k in range(5)])  # last 3 evals
    aucs = [seed_score(c, "auc", 3000) for c in curves]
    assert aucs[0] == pytest.approx((15 + 25 + 35) / 3)  # trapezoids over [0, 3000]
    value, low, high = trial_value(finals, seed=0)
    assert value == pytest.approx(iqm(np.array(finals)))
    assert (low, high) == bootstrap.iqm_ci(np.array(finals), 0)
    assert math.isnan(trial_value(finals[:2])[1])  # no interval below 3 seeds


def test_interrupted_trials_are_failed_and_queued_again():
    study = optuna.create_study(direction="maximize")
    done = study.ask()
    done.suggest_float("algo.lr", 1e-4, 1e-2)
    study.tell(done, 1.0)
    stale = study.ask()
    lr = stale.suggest_float("algo.lr", 1e-4, 1e-2)  # left RUNNING, as a kill -9 leaves it
    assert done_count(study) == 1
    assert recover(study) == [stale.number]
    trials = study.get_trials()
    assert trials[stale.number].state.name == "FAIL"
    assert trials[stale.number].user_attrs["interrupted"] is True
    assert trials[-1].state.name == "WAITING"
    again = study.ask()  # the queued rerun: same params, the stale trial's run folders
    assert again.suggest_float("algo.lr", 1e-4, 1e-2) == lr
    assert again.user_attrs == {"rerun_of": stale.number, "runs_of": stale.number,
                                "baseline": False}
    assert done_count(study) == 1  # interrupted trials do not count


def tune(*args: str) -> int:
    """``pgrun tune ARGS`` in this process: its exit status."""
    from pgrun.cli import main

    return main(["tune", *args])


def test_bad_command_and_space_are_refused_leaving_nothing(tmp_path, capsys):
    bad = write_space(tmp_path / "bad.yaml", {"algo.lrr": {"type": "float", "low": 1, "high": 2},
                                              "algo.lr": {"type": "float", "low": 2, "high": 1}})
    study = tmp_path / "study"
    assert tune(*TINY, f"space={bad}", f"study={study}") == 2
    assert "algo.lr: low=2 must be < high=1" in capsys.readouterr().err
    assert tune(*TINY, "objective=best", "seed=1", "trials=0", f"study={study}") == 2
    err = capsys.readouterr().err
    for expected in ("objective=best", "seed=1: tune picks the seeds", "trials=0"):
        assert expected in err
    lr = write_space(tmp_path / "lr.yaml", LR)
    assert tune(*TINY, "algo.lr=1e-3", f"space={lr}", f"study={study}") == 2
    assert "algo.lr: set on the command line and searched" in capsys.readouterr().err
    assert tune(*TINY, "algo.gamma=2", f"space={lr}", f"study={study}") == 2
    assert "algo.gamma=2.0: must be in [0, 1]" in capsys.readouterr().err
    assert not study.exists()


def test_tiny_tune_writes_db_preset_plots_and_comparable_runs(tmp_path, capsys):
    """2 trials × 2 seeds: the baseline (the preset's own lr) and one TPE trial."""
    study = tmp_path / "study"
    assert tune(*TINY, "trials=2", "seeds=2", f"study={study}",
                f"space={write_space(tmp_path / 'lr.yaml', LR)}") == 0, capsys.readouterr()
    for name in ("study.db", "best.yaml", "trials.csv", "history.png", "importance.png",
                 "intermediate.png"):
        assert (study / name).is_file(), name
    rows = trials_rows(study)
    assert [row["state"] for row in rows] == ["COMPLETE", "COMPLETE"]
    assert float(rows[0]["params_algo.lr"]) == 1e-3 and rows[0]["user_attrs_baseline"] == "True"
    best = max(rows, key=lambda row: float(row["value"]))
    preset = yaml.safe_load((study / "best.yaml").read_text())
    assert preset["algo"]["lr"] == pytest.approx(float(best["params_algo.lr"]))
    assert preset["total_steps"] == 2000 and preset["algo"]["num_epochs"] == 20  # the preset kept
    assert "# @package _global_" in (study / "best.yaml").read_text()
    runs, skipped = load_runs([study / "runs"])
    assert not skipped and len(runs) == 4 and {r.status for r in runs} == {"complete"}
    for row in rows:  # the trial's value is the IQM of its seeds' final returns
        scores = json.loads(row["user_attrs_scores"])
        assert float(row["value"]) == pytest.approx(np.mean(scores), abs=1e-3)
    from pgrun.compare import main as compare

    assert compare([str(study / "runs"), "--out", str(tmp_path / "cmp")]) == 0
    assert (tmp_path / "cmp" / "report.md").is_file()


# ------------------------------------------------------------------ slow

@pytest.mark.slow
def test_rerun_continues_the_study_to_its_trial_count(cli, tmp_path):
    study, lr = tmp_path / "study", write_space(tmp_path / "lr.yaml", LR)
    args = ["tune", *TINY, "seeds=2", f"study={study}", f"space={lr}"]
    assert cli(*args, "trials=2").returncode == 0
    r = cli(*args, "trials=3")
    assert r.returncode == 0, r.stderr
    assert "2 of 3 trials done; 1 to run" in r.stdout
    assert [row["number"] for row in trials_rows(study)] == ["0", "1", "2"]
    r = cli(*args, "trials=3")
    assert r.returncode == 0 and "3 of 3 trials done; 0 to run" in r.stdout
    r = cli(*args, "trials=3", "seeds=3")
    assert r.returncode == 2 and "other settings (seeds differ" in r.stderr


@pytest.mark.slow
def test_killed_search_resumes_and_reruns_the_interrupted_trial(tmp_path):
    study, lr = tmp_path / "study", write_space(tmp_path / "lr.yaml", LR)
    args = [sys.executable, "-m", "pgrun", "tune", "algo=ppo", "env=CartPole-v1",
            "total_steps=20000", "eval.interval=2000", "eval.episodes=2", "n_jobs=1",
            "checkpoint.every=2", "trials=3", "seeds=2", f"study={study}", f"space={lr}"]
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    deadline = time.time() + 240
    second = study / "runs" / "t0001_s0" / "checkpoint.pt"
    while not second.is_file() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert second.is_file(), proc.stdout.read() if proc.poll() is not None else "timeout"
    os.kill(proc.pid, signal.SIGKILL)  # no chance to tidy up: trial 1 stays RUNNING
    proc.wait()
    time.sleep(2)  # the run notices its parent's death (SIGTERM) and checkpoints
    r = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "trials 1 were interrupted" in r.stdout
    rows = trials_rows(study)
    states = [(row["state"], row["user_attrs_interrupted"]) for row in rows]
    assert states[1] == ("FAIL", "True")
    assert sum(s == "COMPLETE" for s, _ in states) == 3 and len(rows) == 4
    rerun = next(row for row in rows if row["user_attrs_rerun_of"] == "1.0")
    assert rerun["params_algo.lr"] == rows[1]["params_algo.lr"]
    summary = json.loads((study / "runs" / "t0001_s0" / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["resumes"]  # continued, not restarted
    assert not (study / "runs" / f"t{int(rerun['number']):04d}_s0").exists()


@pytest.mark.slow
def test_median_pruner_stops_a_trial_that_falls_behind(cli, tmp_path):
    """Trial 0 is the preset (lr 1e-3, learns); the space's other learning rates are
    mostly tiny (log-uniform from 1e-9): those trials stay at the untrained return and
    the median pruner stops them once trial 0 has moved ahead."""
    study = tmp_path / "study"
    tiny_lr = write_space(tmp_path / "lr.yaml", {"algo.lr": {
        "type": "float", "low": 1.0e-9, "high": 1.0e-3, "log": True}})
    r = cli("tune", "algo=ppo", "env=CartPole-v1", "total_steps=6000", "eval.interval=1000",
            "eval.episodes=3", "n_jobs=1", "trials=3", "seeds=2", "startup_trials=1",
            f"study={study}", f"space={tiny_lr}")
    assert r.returncode == 0, r.stdout + r.stderr
    rows = trials_rows(study)
    pruned = [row for row in rows if row["state"] == "PRUNED"]
    assert rows[0]["state"] == "COMPLETE" and pruned, rows
    for row in pruned:
        assert float(row["params_algo.lr"]) < 1e-4  # ≥ 10× below the preset's 1e-3
        stopped = study / "runs" / f"t{int(row['number']):04d}_s0"
        summary = json.loads((stopped / "summary.json").read_text())
        assert summary["status"] == "interrupted"
        assert summary["stop_reason"].startswith("pruned by pgrun tune")
        assert summary["steps"] < 6000
        assert not (study / "runs" / f"t{int(row['number']):04d}_s1").exists()
    assert "pruned (seed 0, step" in r.stdout
