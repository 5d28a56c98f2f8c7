"""``pgrun compare`` on run folders written by the project's own writers, with numbers
chosen by hand, on a real (tiny) Hydra multirun, and on broken folders."""

from __future__ import annotations

import hashlib
import json
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from pgrun.cli import main
from pgrun.compare import bootstrap, stats
from pgrun.compare.load import Curve
from pgrun.compare.summary import stable_seed
from pgrun.metrics import EVAL_COLUMNS, METRIC_COLUMNS, CsvLog
from pgrun.runfolder import write_summary

STEPS = [0, 100, 200, 300, 400]
# Final returns (the last 3 evaluations are all f) and the second evaluation a, per seed.
PPO = [(5, 10), (10, 20), (15, 30), (10, 40), (50, 100)]
VPG = [(10, 20), (10, 20), (15, 30), (25, 50), (30, 60)]


def make_run(path: Path, *, algo="ppo", env="CartPole-v1", seed=0, threshold=35.0,
             evals=None, train=None, summary: bool | dict = True, **overrides) -> Path:
    """A run folder as ``pgrun train`` leaves it. ``evals``: [(step, return)];
    ``train``: [(step, return, time_s)] (default: the evaluations after step 0, time =
    step/100); ``summary``: False for none, a dict for extra keys; ``overrides``: nested
    config keys, ``__`` for the dot (``algo__clip_eps=0.1``)."""
    config = {"algo": {"name": algo, "lr": 0.001, "gamma": 0.99},
              "env": {"id": env, "num_envs": 8, "reward_threshold": threshold},
              "policy": {"hidden_sizes": [64, 64]},
              "seed": seed, "total_steps": 400, "progress": "none"}
    for dotted, value in overrides.items():
        *parents, leaf = dotted.split("__")
        node = config
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    (path / ".hydra").mkdir(parents=True)
    (path / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (path / ".hydra" / "overrides.yaml").write_text(f"- algo={algo}\n- seed={seed}\n")
    evals = evals if evals is not None else []
    if train is None:
        train = [(s, r, s / 100) for s, r in evals if s > 0]
    log = CsvLog(path / "metrics.csv", METRIC_COLUMNS)
    for i, (step, ret, time_s) in enumerate(train):
        log.write({"update": i + 1, "step": step, "episodes": i + 1, "time_s": time_s,
                   "sps": step / time_s, "return_mean": ret, "return_std": 0.0})
    log.close()
    log = CsvLog(path / "eval.csv", EVAL_COLUMNS)
    for step, ret in evals:
        log.write({"step": step, "return_mean": ret, "return_std": 0.0, "length_mean": ret,
                   "episodes": 2, "time_s": step / 100})
    log.close()
    if summary:
        extra = summary if isinstance(summary, dict) else {}
        write_summary(path, {"algo": algo, "seed": seed, "wall_time_s": 10.0 + seed,
                             "sps": 100.0 * (seed + 1), **extra})
    return path


def curve(a: float, f: float) -> list[tuple[int, float]]:
    return list(zip(STEPS, [0, a, f, f, f], strict=True))


@pytest.fixture
def sweep(tmp_path) -> Path:
    """PPO and VPG, 5 complete seeds each."""
    root = tmp_path / "sweep"
    for seed, (a, f) in enumerate(PPO):
        make_run(root / f"{seed}_ppo_s{seed}", algo="ppo", seed=seed, evals=curve(a, f))
    for seed, (a, f) in enumerate(VPG):
        make_run(root / f"{5 + seed}_vpg_s{seed}", algo="vpg", seed=seed, evals=curve(a, f),
                 train=[(s, r, 2 * s / 100) for s, r in curve(a, f)[1:]],
                 summary={"wall_time_s": 20.0 + seed, "sps": 10.0 * (seed + 1)})
    return root


def compare(capsys, *args) -> tuple[int, str, str]:
    code = main(["compare", *map(str, args)])
    out = capsys.readouterr()
    return code, out.out, out.err


def summary_of(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "summary.csv").set_index("group")


def tree_hash(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_statistics_match_hand_computed_values(sweep, capsys):
    code, stdout, _ = compare(capsys, sweep)
    assert code == 0
    table = summary_of(sweep / "compare")
    assert list(table.index) == ["algo=ppo", "algo=vpg"]
    ppo, vpg = table.loc["algo=ppo"], table.loc["algo=vpg"]
    assert ppo.seeds == 5 and ppo.complete == 5 and vpg.complete == 5
    assert pd.isna(vpg.incomplete) and vpg.failed == 0 and vpg.budget == 400
    # finals 10, 20, 30, 40, 100: mean 40, s² = (900+400+100+0+3600)/4
    assert ppo.final_mean == 40 and ppo.final_std == pytest.approx(math.sqrt(1250))
    assert ppo.final_iqm == 30 and ppo.final_median == 30  # IQM: trims one from each end
    assert ppo.final_iqm_low <= 30 <= ppo.final_iqm_high
    seed = stable_seed(0, "iqm", "CartPole-v1", "algo=ppo")
    assert (ppo.final_iqm_low, ppo.final_iqm_high) == pytest.approx(
        bootstrap.iqm_ci(np.array([f for _, f in PPO]), seed))
    assert vpg.final_mean == 36 and vpg.final_iqm == pytest.approx(100 / 3)
    # threshold 35: ppo seeds 3 and 4 reach it at steps 200 and 100, vpg's at 200 and 200;
    # 2 of 5 is fewer than half: the median lies beyond the budget (400)
    assert (ppo.reached, ppo.attempts, ppo.steps_to_threshold) == (2, 5, 400)
    assert ppo.steps_to_threshold_kind == vpg.steps_to_threshold_kind == "above budget"
    # AUC over 0–400 of [0, a, f, f, f] is (a + 2.5 f) / 4 per seed
    assert ppo.auc == pytest.approx(29.5) and vpg.auc == pytest.approx(27.0)
    assert (ppo.auc_start, ppo.auc_end) == (0, 400)
    # wall time and SPS: medians of summary.json's figures
    assert ppo.wall_time_s == 12 and ppo.sps == 300
    assert vpg.wall_time_s == 22 and vpg.sps == 30

    pairs = pd.read_csv(sweep / "compare" / "improvement.csv")
    assert len(pairs) == 1
    pair = pairs.iloc[0]  # X = the higher IQM; 11.5 of 25 pairs favour ppo
    assert (pair.x, pair.y) == ("algo=vpg", "algo=ppo")
    assert pair.p_improvement == pytest.approx(0.54)
    assert pair.low <= 0.54 <= pair.high

    assert "CartPole-v1" in stdout and "algo=vpg" in stdout and "Compared at step 400" in stdout
    report = (sweep / "compare" / "report.md").read_text()
    assert "last 3 evaluations" in report and "| algo=ppo | 5 |" in report
    assert "40.0 ± 35.4" in report and "> 400 (2/5)" in report and "0.54" in report
    assert "10,000 resamples" in report and "IQM equals the mean" in report
    assert "first evaluation" in report and "## Warnings" not in report
    assert "![learning curves](curves.png)" in report


def test_runs_csv_gives_each_runs_own_figures(sweep, capsys):
    assert compare(capsys, sweep)[0] == 0
    runs = pd.read_csv(sweep / "compare" / "runs.csv")
    ppo = runs[runs.group == "algo=ppo"].set_index("seed").sort_index()
    assert len(runs) == 10 and list(ppo.index) == [0, 1, 2, 3, 4]
    assert ppo.final.tolist() == [f for _, f in PPO]  # the group's finals, seed by seed
    # threshold 35: seeds 3 and 4 reach it at steps 200 and 100; the others never
    assert ppo.steps_to_threshold.isna().tolist() == [True, True, True, False, False]
    assert ppo.steps_to_threshold[3:].tolist() == [200, 100]
    assert ppo.auc.tolist() == pytest.approx([(a + 2.5 * f) / 4 for a, f in PPO])
    assert (ppo.steps == 400).all() and (ppo.budget == 400).all()
    assert (ppo.status == "complete").all()
    assert ppo.run[0] == str(sweep / "0_ppo_s0")


def test_estimators_against_definitions():
    rng = np.random.default_rng(0)
    for _ in range(50):
        x = rng.integers(0, 4, rng.integers(2, 9)).astype(float)
        y = rng.integers(0, 4, rng.integers(2, 9)).astype(float)
        pairs = [(xi > yj) + 0.5 * (xi == yj) for xi in x for yj in y]
        assert stats.probability_of_improvement(x, y) == pytest.approx(np.mean(pairs))
    assert stats.iqm(np.arange(1.0, 9.0)) == 4.5  # mean of 3, 4, 5, 6
    assert bootstrap.iqm_ci(np.full(6, 7.0), seed=0) == (7.0, 7.0)
    assert all(math.isnan(v) for v in bootstrap.iqm_ci(np.ones(2), seed=0))
    assert not any(math.isnan(v) for v in bootstrap.iqm_ci(np.arange(3.0), seed=0))
    low, high = bootstrap.iqm_ci(np.arange(20.0), seed=0)
    assert 3 < low < 9.5 < high < 16
    ramp = Curve(np.array([0.0, 100, 200]), np.array([0.0, 10, 10]))
    assert stats.steps_to_threshold(ramp, 10) == 100 and math.isnan(stats.steps_to_threshold(ramp, 11))
    assert stats.final_return(ramp, 2) == 10 and stats.final_return(ramp, 9) == 20 / 3
    # ∫_50^200: 50 steps rising 5 → 10, then 100 steps at 10
    assert stats.normalized_auc(ramp, 50, 200) == pytest.approx((50 * 7.5 + 100 * 10) / 150)
    short = Curve(np.array([100.0, 150]), np.array([1.0, 2]))
    assert stats.common_span([ramp, short]) == (100, 150)
    values = np.array([[0.0, 10.0], [2.0, 14.0]])
    mean, low, high = stats.mean_band(values, "std", seed=0)
    assert mean.tolist() == [1, 12] and high.tolist() == pytest.approx([1 + 2**0.5, 12 + 8**0.5])
    mean, low, high = stats.mean_band(values, "ci", seed=0)
    assert (low >= values.min(0)).all() and (high <= values.max(0)).all()


def test_bootstrap_from_counts_equals_explicit_resamples():
    """Each statistic computed from resample counts equals the same statistic of the
    resample written out (x_i repeated c_i times), and the intervals agree with
    scipy.stats.bootstrap's percentile intervals up to resampling noise."""
    rng = np.random.default_rng(1)
    x, y = rng.integers(0, 6, 9).astype(float), rng.normal(2, 2, 6)
    c = bootstrap.counts([9, 6], seed=3, resamples=200)
    cx, cy = c[:, :9], c[:, 9:]
    assert (cx.sum(1) == 9).all() and (cy.sum(1) == 6).all()
    for r in range(200):
        rx, ry = np.repeat(x, cx[r]), np.repeat(y, cy[r])
        assert bootstrap.trimmed_mean(x, cx[r:r + 1])[0] == pytest.approx(stats.iqm(rx))
        assert bootstrap.median(y, cy[r:r + 1])[0] == pytest.approx(np.median(ry))
        assert bootstrap.mean(y, cy[r:r + 1])[0] == pytest.approx(ry.mean())
        assert bootstrap.poi(x, y, cx[r:r + 1], cy[r:r + 1])[0] == pytest.approx(
            stats.probability_of_improvement(rx, ry))
    ones = np.ones((1, 9))
    assert bootstrap.trimmed_mean(x, ones)[0] == pytest.approx(stats.iqm(x))  # the estimate
    from scipy.stats import bootstrap as scipy_bootstrap

    theirs = scipy_bootstrap((x,), stats.iqm, n_resamples=10_000, method="percentile",
                             random_state=np.random.default_rng(0)).confidence_interval
    ours = bootstrap.iqm_ci(x, seed=0)
    assert ours == pytest.approx((theirs.low, theirs.high), abs=0.15)


def test_same_inputs_same_report(sweep, tmp_path, capsys):
    for name in ("a", "b"):
        assert compare(capsys, sweep, "--out", tmp_path / name)[0] == 0
    for file in ("summary.csv", "improvement.csv"):
        assert (tmp_path / "a" / file).read_text() == (tmp_path / "b" / file).read_text()
    a, b = ((tmp_path / n / "report.md").read_text().split("\n", 3)[3] for n in "ab")
    assert a == b  # all but the command line


def test_outputs_written_and_run_folders_untouched(sweep, tmp_path, capsys):
    before = tree_hash(sweep)
    out = tmp_path / "out"
    assert compare(capsys, sweep, "--out", out, "--svg")[0] == 0
    assert tree_hash(sweep) == before
    png = (out / "curves.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    assert (out / "curves.svg").read_text().lstrip().startswith("<?xml")
    assert (out / "report.md").stat().st_size > 0

    one_run = sweep / "0_ppo_s0"  # a run folder as PATH: the output goes beside it
    assert compare(capsys, one_run)[0] == 0
    assert tree_hash(sweep) == before | {k: v for k, v in tree_hash(sweep).items()
                                         if k.startswith("compare/")}
    assert (sweep / "compare" / "curves.png").exists()


def test_groups_label_only_what_differs(tmp_path, capsys):
    root = tmp_path / "clip"
    for seed in range(2):
        for clip in (0.1, 0.2):
            make_run(root / f"ppo_{clip}_{seed}", seed=seed, evals=curve(1, 10 * clip * 10),
                     algo__clip_eps=clip)
        # a preset's other budget: follows from the algorithm, not shown in labels
        make_run(root / f"vpg_{seed}", algo="vpg", seed=seed, evals=curve(1, 5),
                 total_steps=800, progress="rich" if seed else "none",
                 checkpoint__every=10 * (seed + 1), resume="auto" if seed else False)
    assert compare(capsys, root, "--out", tmp_path / "all")[0] == 0
    assert list(summary_of(tmp_path / "all").index) == [
        "algo=ppo algo.clip_eps=0.1", "algo=ppo algo.clip_eps=0.2", "algo=vpg"]

    assert compare(capsys, root, "--out", tmp_path / "by", "--by", "algo")[0] == 0
    by = summary_of(tmp_path / "by")
    assert list(by.index) == ["algo=ppo", "algo=vpg"] and by.seeds.tolist() == [4, 2]

    assert compare(capsys, root, "--out", tmp_path / "f", "--filter", "algo.clip_eps=0.1")[0] == 0
    assert summary_of(tmp_path / "f").seeds.to_dict() == {"algo=ppo": 2}

    code = compare(capsys, root, "--out", tmp_path / "f2", "--filter", "algo=vpg",
                   "--filter", "algo=ppo", "--filter", "algo.lr=1e-3")[0]
    assert code == 0 and summary_of(tmp_path / "f2").seeds.sum() == 6


def test_environments_are_compared_apart(tmp_path, capsys):
    for env in ("CartPole-v1", "Acrobot-v1"):
        for algo in ("ppo", "vpg"):
            for seed in range(2):
                make_run(tmp_path / env / f"{algo}_{seed}", algo=algo, env=env, seed=seed,
                         evals=curve(1, 10 + seed), threshold=None, env__num_envs=4)
    assert compare(capsys, tmp_path, "--out", tmp_path / "out")[0] == 0
    table = pd.read_csv(tmp_path / "out" / "summary.csv")
    assert table[["env", "group"]].values.tolist() == [
        ["Acrobot-v1", "algo=ppo"], ["Acrobot-v1", "algo=vpg"],
        ["CartPole-v1", "algo=ppo"], ["CartPole-v1", "algo=vpg"]]
    assert table.reached.tolist() == [0] * 4 and table.steps_to_threshold.isna().all()
    pairs = pd.read_csv(tmp_path / "out" / "improvement.csv")
    assert pairs.env.tolist() == ["Acrobot-v1", "CartPole-v1"]
    assert "only 2 seeds (< 5)" in (tmp_path / "out" / "report.md").read_text()


def test_options_last_curve_band(sweep, tmp_path, capsys):
    assert compare(capsys, sweep, "--out", tmp_path / "k", "--last", "4")[0] == 0
    # last 4 of [0, a, f, f, f] = (a + 3f)/4; ppo seed 0: (5 + 30)/4
    assert summary_of(tmp_path / "k").final_median.tolist() == [
        np.median([(a + 3 * f) / 4 for a, f in PPO]), np.median([(a + 3 * f) / 4 for a, f in VPG])]
    assert compare(capsys, sweep, "--out", tmp_path / "t", "--curve", "train",
                   "--band", "std")[0] == 0
    train = summary_of(tmp_path / "t")
    assert train.loc["algo=ppo", "auc_start"] == 100  # training rows start at the first update
    assert "metrics.csv" in (tmp_path / "t" / "report.md").read_text()


def test_training_returns_when_some_run_has_no_evaluations(tmp_path, capsys):
    make_run(tmp_path / "a", evals=curve(1, 10))
    make_run(tmp_path / "b", seed=1, evals=[], train=[(100, 4.0, 1.0), (200, 6.0, 2.0)])
    code, stdout, _ = compare(capsys, tmp_path, "--out", tmp_path / "out")
    assert code == 0 and "1 of 2 runs have no evaluation rows" in stdout
    # compared at step 200, where b ends: a's last 3 points ≤ 210 are 1, 10
    assert summary_of(tmp_path / "out").final_mean.tolist() == [(5.5 + 5) / 2]
    code, stdout, _ = compare(capsys, tmp_path, "--out", tmp_path / "out", "--curve", "eval")
    assert code == 0 and summary_of(tmp_path / "out").final_mean.tolist() == [10]
    assert f"skipped {tmp_path / 'b'}: no eval rows" in stdout


def test_broken_and_unfinished_folders_are_skipped_or_handled(sweep, capsys):
    (sweep / "crashed" / ".hydra").mkdir(parents=True)  # stopped before the first update
    (sweep / "crashed" / ".hydra" / "config.yaml").write_text("seed: 0\n")
    make_run(sweep / "header_only", seed=9)
    empty = make_run(sweep / "empty", seed=9)
    (empty / "eval.csv").write_text("")
    (empty / "metrics.csv").write_text("")
    bad_yaml = make_run(sweep / "bad_yaml", seed=8, evals=curve(1, 1))
    (bad_yaml / ".hydra" / "config.yaml").write_text("algo: [unclosed\n")
    # a run being written: half a row at the end, a garbled cell, shorter than the rest
    partial = make_run(sweep / "partial", seed=5, evals=curve(50, 100)[:4], summary=False)
    with open(partial / "eval.csv", "a") as f:
        f.write("400,9")
    with open(partial / "metrics.csv", "a") as f:
        f.write("garbage,x,y\n5,4")
    make_run(sweep / "old" / "compare" / "fake_run", seed=7, evals=curve(1, 1))  # an old output
    make_run(sweep / "stopped", seed=6, evals=curve(1, 1), summary={"status": "interrupted"})
    make_run(sweep / "diverged", seed=7, evals=curve(1, 1), summary={"status": "failed"})

    code, stdout, _ = compare(capsys, sweep)
    assert code == 0
    report = (sweep / "compare" / "report.md").read_text()
    for name in ("crashed", "header_only", "empty", "bad_yaml"):
        assert f"skipped {sweep / name}: " in report and name in stdout
    assert "fake_run" not in stdout + report
    # by default only complete runs are scored; the failed one counts as not reaching 35
    ppo = summary_of(sweep / "compare").loc["algo=ppo"]
    assert (ppo.seeds, ppo.complete, ppo.failed, ppo.left_out) == (5, 5, 1, 2)
    assert ppo.final_mean == 40 and ppo.budget == 400 and ppo.auc_end == 400
    assert (ppo.reached, ppo.attempts) == (2, 6) and "| 5 + 1 failed |" in report
    assert "algo=ppo on CartPole-v1: 1 run left out, interrupted (--include-unfinished" in report
    assert "algo=ppo on CartPole-v1: 1 run left out, unfinished (" in report
    assert f"1 failed run, counted as not reaching the threshold and never as a score: " \
        f"{sweep / 'diverged'}" in report
    # every dropped CSV line is counted with its cause and run
    assert f"1 line of eval.csv: a half-written last line left out in 1 run ({partial})" in report
    assert f"1 line of metrics.csv: a line with the wrong number of fields left out in 1 run " \
        f"({partial})" in report
    assert f"1 line of metrics.csv: a half-written last line left out in 1 run ({partial})" \
        in report

    out = sweep / "with_unfinished"
    code, stdout, _ = compare(capsys, sweep, "--include-unfinished", "--out", out)
    assert code == 0
    ppo = summary_of(out).loc["algo=ppo"]
    assert (ppo.seeds, ppo.complete, ppo.failed, ppo.left_out) == (7, 5, 1, 0)
    assert ppo.incomplete == "1 interrupted, 1 unfinished"
    # partial ends at step 300 (its half-written row is dropped): every figure at 300,
    # finals = last 3 points ≤ 300: (a + 2f)/3 for the complete seeds, (50 + 100 + 100)/3
    # for partial and 1 for stopped
    assert (ppo.steps_min, ppo.steps_max, ppo.budget, ppo.auc_end) == (300, 400, 300, 300)
    expected = [(a + 2 * f) / 3 for a, f in PPO] + [250 / 3, 1]
    assert ppo.final_mean == pytest.approx(np.mean(expected))
    assert "| 7 (1 interrupted, 1 unfinished) + 1 failed |" in (out / "report.md").read_text()


def test_no_runs_is_a_one_line_error(tmp_path, cli):
    (tmp_path / "nothing" / "deeper").mkdir(parents=True)
    out = cli("compare", str(tmp_path / "nothing"))
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.strip().count("\n") == 0 and "no runs found under" in out.stderr
    assert not (tmp_path / "nothing" / "compare").exists()


@pytest.mark.parametrize(("args", "message"), [
    (["--by", "algo.nope"], "--by algo.nope: no run has this config key"),
    (["--filter", "algo.lr"], "expected KEY=VALUE"),
    (["--filter", "algo=sac"], "no run matches --filter algo=sac"),
    (["--last", "0"], "--last 0: must be ≥ 1"),
    (["--at-step", "0"], "--at-step 0: must be > 0"),
    (["--at-step", "5000"], "no runs left to compare (see the warnings above)"),
    (["--scores", "CartPole-v1=1"], "--scores 'CartPole-v1=1': expected ENV=RANDOM,REFERENCE"),
    (["--scores", "CartPole-v1=1,1"], "needs an env and two different finite scores"),
])
def test_bad_options_fail_cleanly(sweep, capsys, args, message):
    code, _, stderr = compare(capsys, sweep, *args)
    assert code == 1 and message in stderr and stderr.count("\n") == 1


def test_missing_path_is_an_error(tmp_path, capsys):
    code, _, stderr = compare(capsys, tmp_path / "typo")
    assert code == 1 and "typo: no such folder" in stderr


def test_output_folder_that_cannot_be_made_is_an_error(sweep, tmp_path, capsys):
    (tmp_path / "a_file").write_text("")
    code, _, stderr = compare(capsys, sweep, "--out", tmp_path / "a_file")
    assert code == 1 and stderr.startswith("pgrun compare: ") and "a_file" in stderr


def test_real_multirun_sweep(cli, tmp_path, capsys):
    sweep = tmp_path / "sweep"
    out = cli("train", "-m", "seed=0,1", "total_steps=1500", "eval.interval=500",
              "eval.episodes=2", "progress=none", f"hydra.sweep.dir={sweep}")
    assert out.returncode == 0, out.stderr
    before = tree_hash(sweep)
    code, stdout, _ = compare(capsys, sweep)
    assert code == 0
    assert {k: v for k, v in tree_hash(sweep).items() if not k.startswith("compare/")} == before

    runs = sorted(p.parent for p in sweep.glob("*/summary.json"))
    assert len(runs) == 2
    finals = [pd.read_csv(r / "eval.csv").return_mean.iloc[-3:].mean() for r in runs]
    walls = [json.loads((r / "summary.json").read_text())["wall_time_s"] for r in runs]
    row = summary_of(sweep / "compare").loc["algo=ppo"]
    assert row.seeds == 2 and row.complete == 2 and pd.isna(row.incomplete)
    assert row.final_mean == pytest.approx(np.mean(finals))
    assert row.final_std == pytest.approx(np.std(finals, ddof=1))
    assert row.wall_time_s == pytest.approx(np.median(walls))
    assert "only 2 seeds (< 5)" in stdout.replace("\n", " ")
    assert (sweep / "compare" / "curves.png").stat().st_size > 0


SUITE = {  # env: (random, reference, ppo finals, vpg finals)
    "A-v0": (0, 100, [50, 60, 70, 80], [10, 20, 30, 40]),
    "B-v0": (-100, 0, [-50, -40, -30, -20], [-100, -90, -80, -70]),
    "C-v0": (10, 20, [20, 22, 24, 26], [15, 21, 25, 15]),
}


def test_aggregate_across_three_environments_by_hand(tmp_path, capsys):
    for env, (_, _, ppo, vpg) in SUITE.items():
        for algo, finals in (("ppo", ppo), ("vpg", vpg)):
            for seed, f in enumerate(finals):
                make_run(tmp_path / env / f"{algo}_{seed}", algo=algo, env=env, seed=seed,
                         threshold=None, evals=[(s, f) for s in STEPS])
    scores = [a for env, (r, h, _, _) in SUITE.items() for a in ("--scores", f"{env}={r},{h}")]
    out = tmp_path / "out"
    code, stdout, _ = compare(capsys, tmp_path, "--out", out, *scores)
    assert code == 0
    agg = pd.read_csv(out / "suite.csv").set_index("config")
    # normalized z: ppo .5 .6 .7 .8 | .5 .6 .7 .8 | 1 1.2 1.4 1.6
    #               vpg .1 .2 .3 .4 | 0 .1 .2 .3  | .5 1.1 1.5 .5
    # IQM of 12 pooled: trim 3 from each end, mean of the middle 6
    ppo, vpg = agg.loc["algo=ppo"], agg.loc["algo=vpg"]
    assert ppo.iqm == pytest.approx((.6 + .7 + .7 + .8 + .8 + 1) / 6)
    assert vpg.iqm == pytest.approx((.2 + .2 + .3 + .3 + .4 + .5) / 6)
    assert (ppo["mean"], vpg["mean"]) == pytest.approx((10.4 / 12, 5.2 / 12))
    assert (ppo["median"], vpg["median"]) == pytest.approx((.75, .3))
    assert ppo.optimality_gap == pytest.approx(2.8 / 12)  # mean of max(1 − z, 0)
    assert vpg.optimality_gap == pytest.approx(7.4 / 12)
    assert ppo.runs == 12 and ppo.iqm_low <= ppo.iqm <= ppo.iqm_high
    assert list(agg.index) == ["algo=ppo", "algo=vpg"]  # by IQM
    # P̄ = mean over envs of P(X_e > Y_e): 1, 1, and 12/16 on C-v0
    pair = pd.read_csv(out / "suite_improvement.csv").iloc[0]
    assert (pair.x, pair.y, pair.envs) == ("algo=ppo", "algo=vpg", 3)
    assert pair.p_improvement == pytest.approx((1 + 1 + 0.75) / 3)
    assert pair.low <= pair.p_improvement <= pair.high <= 1

    report = (out / "report.md").read_text()
    assert "## Across environments" in report and "| A-v0 | 0 | 100 | --scores | 4 | 4 |" in report
    assert "Highest normalized IQM: **algo=ppo**" in report
    assert "across 3 environments: Highest normalized IQM: algo=ppo" in stdout
    for name in ("profile.png", "sample_efficiency.png"):
        assert (out / name).read_bytes().startswith(b"\x89PNG") and f"]({name})" in report


def test_suite_profile_and_curves_by_hand():
    from pgrun.compare import suite
    from pgrun.compare.summary import Comparison

    finals, scored = {}, {}
    for env, (_, _, ppo, vpg) in SUITE.items():
        for algo, values in (("ppo", ppo), ("vpg", vpg)):
            finals[env, f"algo={algo}"] = np.array(values, dtype=float)
            scored[env, f"algo={algo}"] = [
                make_run_object(env, [(0, 0.0), (400, float(v))]) for v in values]
    table = pd.DataFrame([{"env": e, "auc_start": 0.0, "auc_end": 400.0} for e in SUITE])
    result = Comparison(table, pd.DataFrame(), finals, scored, dict.fromkeys(SUITE, 400.0), [],
                        pd.DataFrame())
    given = {e: suite.Reference(r, h, "test") for e, (r, h, _, _) in SUITE.items()}
    out, warnings = suite.aggregate(result, "eval", given, seed=0)
    assert warnings == []
    tau = out.profile["tau"]
    assert tau[0] == 0 and tau[-1] == pytest.approx(1.6)  # [min(0, z), max(1, z)]
    fraction, low, high = out.profile["algo=ppo"]
    k = np.searchsorted(tau, 0.75)  # τ just above .75: .8 .8 1 1.2 1.4 1.6 of 12 exceed it
    assert fraction[k] == pytest.approx(0.5) and low[k] <= 0.5 <= high[k]
    # the curves rise linearly from 0 to each final return: IQM of z at fraction t
    iqm, low, high = out.curves["algo=ppo"]
    z = np.concatenate([(np.array(p) - r) / (h - r) for r, h, p, _ in SUITE.values()])
    t = out.curves["fraction"]
    expected = [stats.iqm(np.concatenate([np.full(4, (0 - r) / (h - r)) for r, h, _, _ in
                                           SUITE.values()]) * (1 - ti) + z * ti) for ti in t]
    assert iqm == pytest.approx(expected) and (low <= iqm + 1e-12).all()


def make_run_object(env: str, points: list[tuple[int, float]]):
    from pgrun.compare.load import Run

    steps, returns = (np.array(v, dtype=float) for v in zip(*points, strict=True))
    return Run(Path(env), {"env.id": env}, Curve(steps, returns), None, 1.0, 1.0,
               "complete", {})


def test_groups_with_different_budgets_are_compared_at_a_common_step(tmp_path, capsys):
    """PPO trained for 400 steps, GRPO for 800 (better only after 400): by default both
    are compared at 400, with a warning naming them; --at-step 800 leaves PPO out."""
    for seed, (a, f) in enumerate(PPO):
        make_run(tmp_path / f"ppo_{seed}", seed=seed, evals=curve(a, f))
        late = [(s, 500.0) for s in range(500, 900, 100)]  # reaches 35 only after 400
        make_run(tmp_path / f"grpo_{seed}", algo="grpo", seed=seed, total_steps=800,
                 evals=curve(a / 2, f / 4) + late)
    out = tmp_path / "out"
    code, stdout, _ = compare(capsys, tmp_path, "--out", out)
    assert code == 0
    table = summary_of(out)
    grpo = table.loc["algo=grpo"]
    assert (grpo.budget, grpo.steps_max) == (400, 800)
    assert grpo.final_mean == pytest.approx(np.mean([f / 4 for _, f in PPO]))
    assert grpo.reached == 0 and grpo.steps_to_threshold_kind == "above budget"
    assert grpo.auc == pytest.approx(np.mean([(a / 2 + 2.5 * f / 4) / 4 for a, f in PPO]))
    warning = ("CartPole-v1: groups trained for different numbers of steps (algo=ppo 400, "
               "algo=grpo 800); their final returns, steps to threshold and AUC are "
               "compared at 400, the largest step every compared run reached")
    report = (out / "report.md").read_text()
    assert warning in report and warning in " ".join(stdout.split())
    assert "| algo=grpo | 5 | 800 | 10.0 ± 8.8 |" in report  # trained 800, final at 400

    code, stdout, _ = compare(capsys, tmp_path, "--out", out, "--at-step", "800")
    assert code == 0
    table = summary_of(out)
    assert list(table.index) == ["algo=grpo"] and table.loc["algo=grpo"].final_mean == 500
    assert table.loc["algo=grpo"].reached == 5  # at step 500
    assert "algo=ppo on CartPole-v1: 5 runs left out, ending before --at-step 800" in \
        (out / "report.md").read_text()


def reach_at(step: int | None) -> list[tuple[int, float]]:
    """Evaluations of 10, rising to 40 (over the threshold 35) at ``step`` (None: never)."""
    return [(s, 40.0 if step is not None and s >= step else 10.0) for s in STEPS]


def test_steps_to_threshold_is_a_censored_median_over_all_seeds(tmp_path, capsys):
    cases = {"ppo": [100, 200, None, None],  # median of 100, 200, 400, 400: ≥ 300
             "vpg": [100, 200, None],  # median of 100, 200, 400: 200
             "reinforce": [100, None, None, None],  # 1 of 4: beyond the budget
             "grpo": [300, 300, 300, 300]}  # all reached: 300, slower but surer than ppo
    for algo, steps in cases.items():
        for seed, step in enumerate(steps):
            make_run(tmp_path / f"{algo}_{seed}", algo=algo, seed=seed, evals=reach_at(step))
    out = tmp_path / "out"
    assert compare(capsys, tmp_path, "--out", out)[0] == 0
    table = summary_of(out)
    assert table.steps_to_threshold.to_dict() == {
        "algo=grpo": 300, "algo=ppo": 300, "algo=reinforce": 400, "algo=vpg": 200}
    assert table.steps_to_threshold_kind.to_dict() == {
        "algo=grpo": "exact", "algo=ppo": "lower bound", "algo=reinforce": "above budget",
        "algo=vpg": "exact"}
    report = (out / "report.md").read_text()
    for cell in ("| ≥ 300 (2/4) |", "| 200 (2/3) |", "| > 400 (1/4) |", "| 300 (4/4) |"):
        assert cell in report


def test_a_short_unfinished_run_neither_cuts_the_auc_range_nor_scores(sweep, tmp_path,
                                                                       capsys):
    a_short = make_run(sweep / "short", algo="vpg", seed=9, evals=curve(500, 500)[:2],
                       summary=False)
    out = tmp_path / "out"
    assert compare(capsys, sweep, "--out", out)[0] == 0
    table = summary_of(out)
    assert (table.auc_start.tolist(), table.auc_end.tolist()) == ([0, 0], [400, 400])
    assert table.auc.tolist() == pytest.approx([29.5, 27.0])  # as without it
    assert table.loc["algo=vpg"].seeds == 5 and table.loc["algo=vpg"].left_out == 1
    assert compare(capsys, sweep, "--out", out, "--include-unfinished")[0] == 0
    assert summary_of(out).auc_end.tolist() == [100, 100]  # asked for: then it does
    assert a_short.exists()


def test_nan_and_malformed_rows_are_counted_by_cause(tmp_path, capsys):
    for seed in range(3):
        run = make_run(tmp_path / f"r{seed}", seed=seed, evals=curve(10, 20))
        if seed < 2:
            with open(run / "eval.csv", "a") as f:
                f.write("500,,0,,2,5\n600,nan,0,1,2,6\n")  # blank and NaN returns
    run = tmp_path / "r2"
    with open(run / "eval.csv", "a") as f:
        f.write("700,1,2,3,4,5,6,7\nx,5,0,1,2,3\n300,99,0,1,2,3\n")
    out = tmp_path / "out"
    assert compare(capsys, tmp_path, "--out", out)[0] == 0
    report = (out / "report.md").read_text()
    assert ("4 lines of eval.csv: a blank, NaN or infinite return left out in 2 runs "
            f"(e.g. {tmp_path / 'r0'}: 2)") in report
    assert f"1 line of eval.csv: a line with the wrong number of fields left out in 1 run ({run})" \
        in report
    assert f"1 line of eval.csv: no numeric step left out in 1 run ({run})" in report
    assert f"1 line of eval.csv: a repeated step (the last row kept) left out in 1 run ({run})" \
        in report
    row = summary_of(out).iloc[0]
    assert row.budget == 400 and row.final_mean == pytest.approx((20 + 20 + (20 + 99 + 20) / 3) / 3)
    assert "runs end between" not in report


def test_two_and_three_seeds(tmp_path, capsys):
    for seed, (a, f) in enumerate(PPO[:3]):
        make_run(tmp_path / f"ppo_{seed}", seed=seed, evals=curve(a, f))
    for seed, (a, f) in enumerate(VPG[:2]):
        make_run(tmp_path / f"vpg_{seed}", algo="vpg", seed=seed, evals=curve(a, f))
    out = tmp_path / "out"
    assert compare(capsys, tmp_path, "--out", out)[0] == 0
    table = summary_of(out)
    ppo, vpg = table.loc["algo=ppo"], table.loc["algo=vpg"]
    assert ppo.final_iqm == ppo.final_mean == 20  # nothing trimmed below 4 seeds
    assert ppo.final_iqm_low < 20 < ppo.final_iqm_high
    assert math.isnan(vpg.final_iqm_low) and math.isnan(vpg.final_iqm_high)
    pair = pd.read_csv(out / "improvement.csv").iloc[0]
    assert math.isnan(pair.low) and math.isnan(pair.high)
    report = (out / "report.md").read_text()
    assert "| 20.0 [—] |" in report and "| 0.50 [—, —] |" not in report.replace("0.50", "x")
    assert "algo=vpg on CartPole-v1: only 2 seeds (< 5); no interval below 3" in report
    assert "algo=ppo on CartPole-v1: only 3 seeds (< 5); its interval is rough" in report
    assert "IQM equals the mean" in report


def test_result_neutral_keys_never_split_groups_and_torch_threads_does(tmp_path, capsys):
    for seed in range(2):
        make_run(tmp_path / f"a{seed}", seed=seed, evals=curve(1, 5), progress="rich",
                 checkpoint__every=seed + 1, resume=bool(seed), env__random_score=seed,
                 torch_threads=1)
        make_run(tmp_path / f"b{seed}", seed=seed, evals=curve(1, 6), torch_threads=2)
    out = tmp_path / "out"
    assert compare(capsys, tmp_path, "--out", out)[0] == 0
    assert summary_of(out).seeds.to_dict() == {"torch_threads=1": 2, "torch_threads=2": 2}


def test_a_key_added_after_a_run_was_made_does_not_split_its_group(tmp_path, capsys):
    """A run made before pgrun had policy.cnn_precision and algo.vf_minibatches lacks both;
    they mean their defaults, so it groups with a run that has them at the defaults, and
    apart from one that set another value."""
    make_run(tmp_path / "old", algo="vpg", seed=0, evals=curve(1, 5))
    make_run(tmp_path / "new", algo="vpg", seed=1, evals=curve(1, 5),
             policy__cnn_precision="float32", algo__vf_minibatches=1)
    out = tmp_path / "out"
    assert compare(capsys, tmp_path, "--out", out)[0] == 0
    assert summary_of(out).seeds.to_dict() == {"algo=vpg": 2}
    make_run(tmp_path / "other", algo="vpg", seed=2, evals=curve(1, 5), algo__vf_minibatches=4)
    assert compare(capsys, tmp_path, "--out", out)[0] == 0
    assert summary_of(out).seeds.to_dict() == {"algo.vf_minibatches=1": 2,
                                               "algo.vf_minibatches=4": 1}


def test_runkeys_is_the_one_list():
    from pgrun import runkeys
    from pgrun.compare import group
    from pgrun.runfolder import config_identity

    assert runkeys.is_neutral("checkpoint.every") and not runkeys.is_neutral("torch_threads")
    assert not runkeys.is_neutral("checkpointing") and group.ignored("seed")
    config = {"seed": 1, "torch_threads": 2, "progress": "rich", "env": {"id": "x",
                                                                          "random_score": 3}}
    assert config_identity(config) == {"seed": 1, "torch_threads": 2, "env": {"id": "x"}}


BOMB = "a: &a [lol, lol]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
    for i in range(20))  # 2·3²⁰ strings once expanded
HOSTILE_CONFIGS = {
    "python_tag": ("algo: !!python/object/apply:os.system ['echo pwned > pwned']\n",
                   "YAML tag !!python/object/apply:os.system is not plain data"),
    "set_tag": ("algo: !!set {a, b}\n", "YAML tag !!set is not plain data"),
    "custom_tag": ("algo: !Thing 3\n", "YAML tag !Thing is not plain data"),
    "recursive_alias": ("algo: &x\n  name: ppo\n  again: *x\n",
                        "a recursive alias (a node that contains itself)"),
    "alias_bomb": (BOMB, "aliases expand to more than 100,000 nodes"),
    "deep": ("a:\n" + "".join(" " * (i + 1) + f"k{i}:\n" for i in range(150)) + "x: 1\n",
             "nested deeper than 100 levels"),
    "not_a_mapping": ("- 1\n- 2\n", "not a mapping"),
    "bad_threshold": ("env:\n  id: CartPole-v1\n  reward_threshold: lots\n",
                      "env.reward_threshold is 'lots', not a number"),
    "unterminated": ("algo:\n  name: ppo\npolicy:\n  activation: ${oops\n",
                     "policy.activation: an unterminated interpolation '${oops'"),
}
HOSTILE_SUMMARIES = {
    "summary_list": ("[1, 2]", "summary.json is a JSON list, not an object"),
    "summary_status": ('{"status": {"x": 1}}', "summary.json has status \"{'x': 1}\""),
    "summary_wall": ('{"status": "complete", "wall_time_s": "fast"}',
                     "summary.json's wall_time_s is a str, not a number"),
    "summary_sps": ('{"sps": true}', "summary.json's sps is a bool, not a number"),
    "summary_json": ('{"status": "comp', "summary.json is not valid JSON"),
    "summary_deep": ("[" * 100_000 + "]" * 100_000, "summary.json is not valid JSON"),
}


def test_hostile_folders_are_skipped_with_the_reason(sweep, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PGRUN_TEST_SECRET", "hunter2")
    for name, (text, _) in HOSTILE_CONFIGS.items():
        run = make_run(sweep / name, evals=curve(1, 1))
        (run / ".hydra" / "config.yaml").write_text(text)
    for name, (text, _) in HOSTILE_SUMMARIES.items():
        run = make_run(sweep / name, evals=curve(1, 1))
        (run / "summary.json").write_text(text)
    for name in ("config.yaml", "metrics.csv", "summary.json"):  # a directory instead
        run = make_run(sweep / f"dir_{name}", evals=curve(1, 1))
        target = run / ".hydra" / name if name == "config.yaml" else run / name
        target.unlink()
        target.mkdir()
    # interpolations are text: a resolver is never evaluated
    make_run(sweep / "secret", seed=9, evals=curve(1, 1),
             algo__note="${oc.env:PGRUN_TEST_SECRET}")

    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    start = time.perf_counter()
    code, stdout, stderr = compare(capsys, sweep, "--out", out)
    assert code == 0 and time.perf_counter() - start < 30
    report = (out / "report.md").read_text()
    reasons = {**HOSTILE_CONFIGS, **HOSTILE_SUMMARIES}
    for name, (_, reason) in reasons.items():
        assert f"skipped {sweep / name}: " in report, name
        line = next(x for x in report.splitlines() if f"skipped {sweep / name}: " in x)
        assert reason in line, (name, line)
    assert f"skipped {sweep / 'dir_config.yaml'}: .hydra/config.yaml is a directory" in report
    assert f"skipped {sweep / 'dir_metrics.csv'}: metrics.csv is a directory" in report
    assert f"skipped {sweep / 'dir_summary.json'}: summary.json is a directory" in report
    assert not (tmp_path / "pwned").exists()
    assert "hunter2" not in stdout + stderr + report + (out / "summary.csv").read_text()
    table = summary_of(out)
    assert table.seeds.sum() == 11  # the 10 good runs and "secret"
    assert "algo.note=${oc.env:PGRUN_TEST_SECRET}" in " ".join(table.index)


def test_symlinked_run_folders_are_followed_once(tmp_path, capsys):
    elsewhere = tmp_path / "elsewhere"
    for seed in range(3):
        make_run(elsewhere / f"r{seed}", seed=seed, evals=curve(1, 10 + seed))
    root = tmp_path / "root"
    make_run(root / "local", seed=5, evals=curve(1, 20))
    (root / "linked").symlink_to(elsewhere)  # a link to a folder of runs: followed
    (root / "again").symlink_to(elsewhere)  # a second link to it: counted once
    (root / "linked_run").symlink_to(elsewhere / "r0")  # a run already found via "linked"
    (elsewhere / "loop").symlink_to(root)  # a loop back up
    out = tmp_path / "out"
    code, stdout, _ = compare(capsys, root, "--out", out)
    assert code == 0
    assert summary_of(out).seeds.tolist() == [4]  # local + r0, r1, r2, each once
    report = (out / "report.md").read_text()
    assert f"skipped {root / 'linked'}: a symbolic link to {root / 'again'}, already " \
        "searched" in report
    assert f"a symbolic link to {root}, already searched" in report  # the loop


def test_reference_scores_from_presets_and_run_configs(tmp_path, capsys):
    for env in ("CartPole-v1", "Acrobot-v1", "Unknown-v0", "Own-v0"):
        extra = {"env__random_score": 0.0, "env__reference_score": 50.0} if env == "Own-v0" \
            else {}
        for algo in ("ppo", "vpg"):
            for seed in range(3):
                make_run(tmp_path / env / f"{algo}{seed}", algo=algo, env=env, seed=seed,
                         threshold=None, evals=curve(1, 25 + seed), **extra)
    out = tmp_path / "out"
    code, stdout, _ = compare(capsys, tmp_path, "--out", out)
    assert code == 0
    report = (out / "report.md").read_text()
    assert "| CartPole-v1 | 23.7 | 500 | conf/env/CartPole-v1.yaml | 3 | 3 |" in report
    assert "| Acrobot-v1 | -497.1 | -73.5 | conf/env/Acrobot-v1.yaml | 3 | 3 |" in report
    assert "| Own-v0 | 0 | 50 | the runs' env.random_score, env.reference_score |" in report
    assert "Unknown-v0: left out of the comparison across environments, no random and " \
        "reference score (none known; --scores Unknown-v0=RANDOM,REFERENCE)" in report
    agg = pd.read_csv(out / "suite.csv")
    assert agg.runs.tolist() == [9, 9]
    # the same final returns on every env: the groups tie, P̄ = ½
    assert pd.read_csv(out / "suite_improvement.csv").p_improvement.tolist() == [0.5]
    assert "do not tell" in report


def test_curve_marks_cut_short_and_few_seed_bands(tmp_path):
    from matplotlib.figure import Figure

    from pgrun.compare import plots
    from pgrun.compare.group import Group

    runs = [make_run_object("CartPole-v1", [(0, 0.0), (100, 5.0), (end, 10.0)])
            for end in (200, 400, 400)]
    group = Group("CartPole-v1", "algo=ppo", {}, runs)
    ax = Figure().subplots()
    plots._draw_group(ax, group, runs, "eval", "ci", 0, "C0")
    (label,) = ax.get_legend_handles_labels()[1]
    assert label == ("algo=ppo (n=3; × cut at 200, its shortest run; longest 400), "
                     "hatched band: < 5 seeds")
    assert ax.lines[0].get_xdata()[-1] == 200 and ax.lines[1].get_marker() == "x"
    assert ax.collections[0].get_hatch() == "////"
    ax = Figure().subplots()
    plots._draw_group(ax, group, runs[1:] * 3, "eval", "ci", 0, "C0")  # 6 runs to 400
    assert ax.get_legend_handles_labels()[1] == ["algo=ppo (n=6)"]
    assert len(ax.lines) == 1 and ax.collections[0].get_hatch() is None


def test_long_group_labels_stay_inside_the_figure(tmp_path):
    """A label wider than the panel is wrapped, not cut off at the figure's edges."""
    from pgrun.compare import plots
    from pgrun.compare.group import Group

    runs = [make_run_object("CartPole-v1", [(0, 0.0), (100, 5.0), (end, 10.0)])
            for end in (200, 400)]
    label = "env.kwargs.repeat_action_probability=0 policy.cnn_precision=bfloat16 " \
            "total_steps=10000000"
    fig, (ax,) = plots.panels(1)
    plots._draw_group(ax, Group("CartPole-v1", label, {}, runs), runs, "eval", "ci", 0, "C0")
    plots.legend_below(ax, title="band")
    plots.save(fig, tmp_path / "curves.png", svg=False)
    box, page = ax.get_legend().get_window_extent(), fig.bbox
    assert page.x0 <= box.x0 and box.x1 <= page.x1
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert texts[0].replace("\n", " ").startswith(label) and "\n" in texts[0]


def test_aggregate_weighs_every_environment_the_same():
    """2 runs on one env, 4 on another: each env weighs ½ (a run of the first weighs as
    two of the second), not pooled as 6 equal runs."""
    from pgrun.compare import suite

    scores = {"x": [np.array([0.0, 0.1]), np.array([0.5, 0.6, 0.7, 0.8])]}
    row = suite._aggregates(scores, seed=0).iloc[0]
    # weights 2, 2 | 1, 1, 1, 1 (total 8): sorted 0 0 .1 .1 .5 .6 .7 .8
    assert row.iqm == pytest.approx((0.1 + 0.1 + 0.5 + 0.6) / 4)  # positions 2–5
    assert row["mean"] == pytest.approx((0.05 + 0.65) / 2)  # the mean of the env means
    assert row["median"] == pytest.approx((0.1 + 0.5) / 2)  # positions 3 and 4
    assert row.optimality_gap == pytest.approx(((1 + 0.9) / 2 + (0.5 + 0.4 + 0.3 + 0.2) / 4) / 2)
    assert row.iqm != pytest.approx(stats.iqm(np.concatenate(scores["x"])))  # pooled: .475
    assert bootstrap.stratum_weights([2, 4, 3]).tolist() == [6, 6, 3, 3, 3, 3, 4, 4, 4]
