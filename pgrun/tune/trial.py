"""One trial of ``pgrun tune``: its k seeds trained one after the other, each ``pgrun train``
in a child process (forked from a forkserver that imported torch once) writing a normal
run folder, watched through its eval.csv.

Pruning: every evaluation of seed i at step s is reported to Optuna at key
``i·stride + g`` (g = s rounded down to the eval grid, ``stride`` a power of ten above the
budget), the value the trial's objective would give on that seed's curve up to s. Keys
line up across trials, so the median pruner compares seed i at step g of this trial with
seed i at step g of the finished ones (the same seeds in every trial). A pruned trial's
running seed is stopped with SIGTERM (pgrun checkpoints and stops cleanly; its
summary.json gets ``stop_reason: pruned ...``) and its later seeds never start.

Score (``objective``): per seed, ``iqm_final`` takes the final return (mean of the last
``FINAL_LAST`` evaluations, as ``pgrun compare`` does) and ``auc`` the normalized area under
the curve (mean return over [0, budget]); the trial's value is the interquartile mean
over seeds, with its stratified-bootstrap 95% interval kept beside it.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np

from pgrun.compare import bootstrap
from pgrun.compare.load import EVAL, Curve, read_csv
from pgrun.compare.stats import FINAL_LAST, iqm, normalized_auc, up_to
from pgrun.compare.stats import final_return as _final_return

OBJECTIVES = ("iqm_final", "auc")
POLL_S = 0.5
STOP_WAIT_S = 60.0
WATCH_S = 1.0


class Interrupted(Exception):
    """The search was stopped (a signal): the trial is to be run again on resume."""


class RunFailed(Exception):
    """A run of the trial failed or was refused: the trial fails with this message."""


def key_stride(total_steps: int) -> int:
    """A power of ten above the budget plus a batch's overshoot: seed i's keys start at i·stride."""
    return 10 ** len(str(int(total_steps) * 2))


def eval_curve(run_dir: Path) -> Curve:
    """The run's eval.csv so far (complete rows with a finite return, in step order)."""
    frame, _ = read_csv(run_dir / EVAL, ["step", "return_mean"])
    frame = frame.dropna().drop_duplicates("step", keep="last").sort_values("step")
    return Curve(frame["step"].to_numpy(), frame["return_mean"].to_numpy())


def seed_score(curve: Curve, objective: str, budget: float) -> float:
    """One seed's figure: its final return, or its mean return over [0, min(budget, end)]."""
    if not len(curve.steps):
        return math.nan
    if objective == "auc":
        return normalized_auc(curve, float(curve.steps[0]), min(budget, float(curve.steps[-1])))
    return _final_return(curve, FINAL_LAST)


def trial_value(scores: list[float], seed: int = 0) -> tuple[float, float, float]:
    """IQM over seeds of the per-seed scores, and its bootstrap 95% interval (NaN below
    ``bootstrap.MIN_CI_SEEDS`` seeds)."""
    x = np.asarray(scores, dtype=float)
    low, high = bootstrap.iqm_ci(x, seed)
    return float(iqm(x)), low, high


_context = None


def context():
    """A forkserver that has imported pgrun's training code once: each run is a fork of it,
    started in milliseconds rather than the seconds torch's import takes."""
    global _context
    if _context is None:
        _context = multiprocessing.get_context("forkserver")
        _context.set_forkserver_preload(["pgrun.cli", "pgrun.sweep", "pgrun.train"])
    return _context


def train_child(args: list[str], log_path: str, tuner: int) -> None:  # pragma: no cover (a child)
    """``pgrun train <args>`` in a child process, its output into ``log_path``. When the
    tuner (pid ``tuner``) dies, kill -9 included, the run gets SIGTERM (it checkpoints and
    stops), so no orphan keeps writing a folder that the resumed search continues."""
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    threading.Thread(target=_stop_when_gone, args=(tuner,), daemon=True).start()
    from pgrun.cli import main

    sys.exit(main(["train", *args]))


def _stop_when_gone(pid: int) -> None:  # pragma: no cover (a child's thread)
    while True:
        time.sleep(WATCH_S)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            os.kill(os.getpid(), signal.SIGTERM)
            return
        except PermissionError:  # the pid was reused by another user's process
            os.kill(os.getpid(), signal.SIGTERM)
            return


class TrialRunner:
    """Runs one trial's seeds; ``report(value, key)`` and ``should_prune()`` are the
    Optuna trial's, ``stopping`` the search-wide stop event."""

    def __init__(self, trial, base: list[str], params: list[str], runs_dir: Path, logs_dir: Path,
                 name: str, seeds: list[int], objective: str, total_steps: int, interval: int,
                 stopping: threading.Event):
        self.trial, self.base, self.params = trial, base, params
        self.runs_dir, self.logs_dir, self.name = runs_dir, logs_dir, name
        self.seeds, self.objective, self.total, self.interval = seeds, objective, total_steps, interval
        self.stopping, self.stride = stopping, key_stride(total_steps)
        self.reported: set[int] = set()

    def run_dir(self, seed: int) -> Path:
        return self.runs_dir / f"{self.name}_s{seed}"

    def args(self, seed: int) -> list[str]:
        return [*self.base, *self.params, f"seed={seed}", "progress=none",
                f"hydra.run.dir={self.run_dir(seed).resolve()}"]

    def run(self) -> list[float]:
        """Every seed's score; raises optuna.TrialPruned, RunFailed or Interrupted."""
        import optuna

        scores = []
        for i, seed in enumerate(self.seeds):
            pruned_at = self._run_seed(i, seed)
            if pruned_at is not None:
                self.trial.set_user_attr("pruned_at", f"seed {seed}, step {pruned_at:,}")
                raise optuna.TrialPruned(f"pruned at seed {seed}, step {pruned_at:,}")
            scores.append(seed_score(eval_curve(self.run_dir(seed)), self.objective, self.total))
        return scores

    def _run_seed(self, index: int, seed: int) -> int | None:
        """Train one seed, reporting each evaluation; the step it was pruned at, or None."""
        run_dir = self.run_dir(seed)
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.logs_dir / f"{run_dir.name}.log"
        proc = context().Process(target=train_child, args=(self.args(seed), str(log_path), os.getpid()),
                                 name=run_dir.name)
        proc.start()
        try:
            pruned_at = None
            while True:
                done = not proc.is_alive()
                pruned_at = self._report(index, run_dir)
                if pruned_at is not None or done or self.stopping.is_set():
                    break
                time.sleep(POLL_S)
        finally:
            if proc.is_alive():
                proc.terminate()  # SIGTERM: pgrun checkpoints at the next update and stops
                proc.join(STOP_WAIT_S)
                if proc.is_alive():
                    proc.kill()
            proc.join()
        code = proc.exitcode
        if pruned_at is not None:
            _mark_pruned(run_dir, pruned_at)
            return pruned_at
        if self.stopping.is_set() or code in (128 + signal.SIGTERM, 128 + signal.SIGINT):
            raise Interrupted(f"{run_dir.name} was stopped")
        if code != 0:
            raise RunFailed(f"{run_dir.name} exited with status {code}: "
                            f"{_last_error(log_path)} (log: {log_path})")
        return None

    def _report(self, index: int, run_dir: Path) -> int | None:
        """Report evaluations not yet reported; the step when the pruner says stop."""
        curve = eval_curve(run_dir)
        for step in curve.steps:
            grid = int(step) // self.interval * self.interval
            key = index * self.stride + grid
            if key in self.reported or grid >= self.stride:
                continue
            self.reported.add(key)
            value = seed_score(up_to(curve, step), self.objective, float(step))
            self.trial.report(value, key)
            if self.trial.should_prune():
                return int(step)
        return None


def _mark_pruned(run_dir: Path, step: int) -> None:
    """Note in the stopped run's summary.json that the tuner pruned it (status stays
    ``interrupted``: ``pgrun compare`` leaves it out unless --include-unfinished)."""
    from pgrun.runfolder import RunFolderError, read_summary, write_summary

    try:
        summary = read_summary(run_dir)
        if summary is not None and summary.get("status") == "interrupted":
            summary["stop_reason"] = f"pruned by pgrun tune (median pruner) at step {step}"
            write_summary(run_dir, summary)
    except RunFolderError:
        pass


def _last_error(log_path: Path) -> str:
    """The run's error in one line: its ``pgrun:`` message or the log's last line."""
    try:
        lines = [ln.strip() for ln in log_path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "(no log)"
    mine = [ln for ln in lines if ln.startswith("pgrun:")]
    return (mine[-1] if mine else lines[-1] if lines else "(empty log)")[:400]

