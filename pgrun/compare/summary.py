"""The comparison's numbers: one row per group and environment, one per pair of groups.

Fair by default: only complete runs are scored (``include_unfinished`` adds the rest),
failed runs are never scores but count as failures to reach the threshold, and every
figure on an environment is taken at one budget of steps (see ``summarize``).

Per run: the final return (mean of its last K points up to the budget), the first step
at the env's reward threshold, and the normalized area under its curve. Per group: these
over seeds (mean ± std, IQM with a bootstrap interval, median, a censored median of the
steps to threshold with k/n reached), wall time and SPS. Per pair of groups on one
environment: the probability of improvement.
"""

from __future__ import annotations

import math
import zlib
from collections import Counter
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd

from pgrun.compare import bootstrap, stats
from pgrun.compare.group import Group
from pgrun.compare.load import COMPLETE, FAILED, CompareError, Curve, Run
from pgrun.compare.report import steps_text

MIN_SEEDS = 5
"""Fewer seeds than this give intervals too rough to trust; the report says so."""
END_TOLERANCE = 0.05
"""Runs whose last steps differ by less than this fraction (a batch overshooting
``total_steps``) count as equally long."""


def curve_of(run: Run, source: str) -> Curve | None:
    return run.eval if source == "eval" else run.train


def choose_source(runs: list[Run], requested: str) -> tuple[str, list[Run], list[str]]:
    """The curve every statistic uses, the runs that have it, and warnings. ``auto`` is
    ``eval`` when every run has evaluations, ``train`` otherwise."""
    warnings = []
    source = requested
    if requested == "auto":
        lacking = [r for r in runs if r.eval is None]
        source = "train" if lacking else "eval"
        if lacking:
            warnings.append(f"{len(lacking)} of {len(runs)} runs have no evaluation rows "
                            f"(e.g. {lacking[0].path}); using training returns for all")
    usable = [r for r in runs if curve_of(r, source) is not None]
    warnings += [f"skipped {r.path}: no {source} rows" for r in runs
                 if curve_of(r, source) is None]
    if not usable:
        raise CompareError(f"no run has {source} rows to compare")
    return source, usable, warnings


def stable_seed(seed: int, *parts: str) -> int:
    """A bootstrap seed for one statistic of one group: the same whatever else is compared."""
    return zlib.crc32("|".join(parts).encode()) ^ seed


@dataclass
class Roles:
    """What each run of a group is in the comparison."""

    scored: list[Run]  # complete (and, if asked, unfinished) runs: their returns are scored
    failed: list[Run]  # status failed: never a score, a failure to reach the threshold
    left_out: Counter  # reason → runs not compared at all


def roles(group: Group, source: str, include_unfinished: bool,
          at_step: float | None) -> Roles:
    scored, failed, left_out = [], [], Counter()
    for run in group.runs:
        if run.status == FAILED:
            failed.append(run)
        elif run.status != COMPLETE and not include_unfinished:
            left_out[f"{run.status} (--include-unfinished compares them)"] += 1
        elif at_step is not None and \
                curve_of(run, source).steps[-1] < (1 - END_TOLERANCE) * at_step:
            left_out[f"ending before --at-step {at_step:,.0f}"] += 1
        else:
            scored.append(run)
    return Roles(scored, failed, left_out)


@dataclass
class Comparison:
    """``summarize``'s result."""

    table: pd.DataFrame  # one row per group and environment
    pairs: pd.DataFrame  # P(X > Y) per pair of groups on an environment
    finals: dict[tuple[str, str], np.ndarray]  # (env, label) → scored final returns
    scored: dict[tuple[str, str], list[Run]]  # (env, label) → the runs scored
    budgets: dict[str, float]  # env → the step B its figures are taken at
    warnings: list[str]  # in report order
    runs: pd.DataFrame  # one row per scored run: its own figures at B


def summarize(groups: list[Group], source: str, last: int, seed: int,
              include_unfinished: bool = False, at_step: float | None = None) -> Comparison:
    """The comparison of ``groups`` on the curves of ``source`` (eval or train).

    Per environment every figure is taken at one budget B, by default the largest step
    every scored run on it reached, or ``at_step``: final returns from points at steps
    ≤ B, steps to threshold within B, AUC over [a, B] (a: the latest first point; B the
    earliest last point if ``at_step`` allowed runs up to 5% short of it)."""
    rows, run_rows, warnings, budgets, scored_runs = [], [], [], {}, {}
    finals: dict[tuple[str, str], np.ndarray] = {}
    for env in dict.fromkeys(g.env for g in groups):
        env_groups = [g for g in groups if g.env == env]
        parts = {g.label: roles(g, source, include_unfinished, at_step) for g in env_groups}
        for g in env_groups:
            warnings += _left_out_warnings(g, parts[g.label])
        scored = [r for p in parts.values() for r in p.scored]
        if not scored:
            warnings.append(f"{env}: no run to compare (see above); left out of the report")
            continue
        curves = [curve_of(r, source) for r in scored]
        budget = at_step if at_step is not None else min(float(c.steps[-1]) for c in curves)
        budgets[env] = budget
        end = min(budget, min(float(c.steps[-1]) for c in curves))  # --at-step's 5% slack
        start = min(max(float(c.steps[0]) for c in curves), end)
        warnings += _budget_warnings(env, env_groups, parts, source, budget, at_step)
        for group in env_groups:
            if not parts[group.label].scored and not parts[group.label].failed:
                continue
            row = _group_row(group, parts[group.label], source, last, budget, (start, end),
                             seed)
            finals[env, group.label] = row.pop("_finals")
            run_rows += row.pop("_runs")
            scored_runs[env, group.label] = parts[group.label].scored
            rows.append(row)
            warnings += _group_warnings(group, parts[group.label])
    if not rows:
        raise CompareError("no runs left to compare (see the warnings above); "
                           "--include-unfinished compares runs that are not complete")
    table = pd.DataFrame(rows)
    warnings += dropped_rows_warnings([r for g in groups for r in g.runs])
    return Comparison(table, _pairs(table, finals, seed), finals, scored_runs, budgets,
                      warnings, pd.DataFrame(run_rows))


def _group_row(group: Group, part: Roles, source: str, last: int, budget: float,
               auc_span: tuple[float, float], seed: int) -> dict:
    full = [curve_of(r, source) for r in part.scored]
    slack = (1 + END_TOLERANCE) * budget  # a last batch overshooting the same budget
    finals = np.array([stats.final_return(stats.up_to(c, slack), last) for c in full])
    threshold = group.runs[0].threshold
    reached = [stats.steps_to_threshold(stats.up_to(c, budget), threshold) for c in full]
    steps = reached + [math.nan] * len(part.failed)  # a failed run did not reach it
    median, kind = stats.censored_median(np.array(steps), budget)
    aucs = [stats.normalized_auc(c, *auc_span) for c in full]
    runs = [{"env": group.env, "group": group.label, "seed": r.seed, "run": str(r.path),
             "status": r.status, "steps": float(c.steps[-1]), "budget": budget,
             "final": final, "steps_to_threshold": step, "auc": auc}
            for r, c, final, step, auc in zip(part.scored, full, finals, reached, aucs,
                                              strict=True)]
    mean, std = stats.mean_std(finals)
    low, high = bootstrap.iqm_ci(finals, stable_seed(seed, "iqm", group.env, group.label))
    last_steps = [float(c.steps[-1]) for c in full] or [math.nan]
    return {
        "env": group.env, "group": group.label, "seeds": len(full),
        "complete": sum(r.status == COMPLETE for r in part.scored),
        "incomplete": _incomplete(part.scored), "failed": len(part.failed),
        "left_out": sum(part.left_out.values()),
        "steps_min": min(last_steps), "steps_max": max(last_steps), "budget": budget,
        "final_mean": mean, "final_std": std,
        "final_iqm": float(stats.iqm(finals)) if len(finals) else math.nan,
        "final_iqm_low": low, "final_iqm_high": high,
        "final_median": float(np.median(finals)) if len(finals) else math.nan,
        "threshold": math.nan if threshold is None else threshold,
        "steps_to_threshold": median if threshold is not None else math.nan,
        "steps_to_threshold_kind": kind if threshold is not None else "",
        "reached": int(np.isfinite(steps).sum()), "attempts": len(steps),
        "auc": float(np.mean(aucs)) if full else math.nan,
        "auc_start": auc_span[0], "auc_end": auc_span[1],
        "wall_time_s": _median([r.wall_time_s for r in part.scored]),
        "sps": _median([r.sps for r in part.scored]),
        "_finals": finals, "_runs": runs,
    }


def _median(values: list[float]) -> float:
    known = [v for v in values if not math.isnan(v)]
    return float(np.median(known)) if known else math.nan


def _incomplete(runs: list[Run]) -> str:
    """``"2 unfinished, 1 interrupted"``: the runs whose status is not complete, by status."""
    counts = Counter(r.status for r in runs if r.status != COMPLETE)
    return ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))


def _left_out_warnings(group: Group, part: Roles) -> list[str]:
    name = f"{group.label} on {group.env}"
    warnings = [f"{name}: {n} run{'s' if n > 1 else ''} left out, {why}"
                for why, n in sorted(part.left_out.items())]
    if part.failed:
        listed = "; ".join(f"{r.path}" + (f" ({r.error})" if r.error else "")
                           for r in part.failed)
        warnings.append(f"{name}: {len(part.failed)} failed run"
                        f"{'s' if len(part.failed) > 1 else ''}, counted as not reaching the "
                        f"threshold and never as a score: {listed}")
    return warnings


def _budget_warnings(env: str, groups: list[Group], parts: dict[str, Roles], source: str,
                     budget: float, at_step: float | None) -> list[str]:
    """A warning when the groups on ``env`` were trained for different numbers of steps
    (their longest scored runs differ by more than ``END_TOLERANCE``)."""
    trained = {g.label: max(float(curve_of(r, source).steps[-1]) for r in parts[g.label].scored)
               for g in groups if parts[g.label].scored}
    if max(trained.values()) <= (1 + END_TOLERANCE) * min(trained.values()):
        return []
    listed = ", ".join(f"{label} {steps_text(s)}" for label, s in
                       sorted(trained.items(), key=lambda item: item[1]))
    how = f"at --at-step {steps_text(budget)}" if at_step is not None else \
        f"at {steps_text(budget)}, the largest step every compared run reached (--at-step N " \
        "to choose another)"
    return [f"{env}: groups trained for different numbers of steps ({listed}); their final "
            f"returns, steps to threshold and AUC are compared {how}"]


def _group_warnings(group: Group, part: Roles) -> list[str]:
    name = f"{group.label} on {group.env}"
    n = len(part.scored)
    if n >= MIN_SEEDS or n == 0:  # none: the failed runs' warning says why
        return []
    ci = f"no interval below {bootstrap.MIN_CI_SEEDS}" if n < bootstrap.MIN_CI_SEEDS else \
        "its interval is rough"
    return [f"{name}: only {n} seed{'' if n == 1 else 's'} (< {MIN_SEEDS}); {ci}, and its "
            "probabilities of improvement are unreliable"]


def dropped_rows_warnings(runs: list[Run]) -> list[str]:
    """One warning per file and cause of CSV lines left out, counting lines and runs."""
    by_cause: dict[str, list[tuple[Run, int]]] = {}
    for run in runs:
        for cause, n in run.dropped_rows.items():
            by_cause.setdefault(cause, []).append((run, n))
    warnings = []
    for cause, hits in by_cause.items():
        total = sum(n for _, n in hits)
        first, n_first = hits[0]
        example = f"{first.path}" if len(hits) == 1 else \
            f"e.g. {first.path}: {n_first}"
        warnings.append(f"{total} line{'s' if total > 1 else ''} of {cause} left out in "
                        f"{len(hits)} run{'s' if len(hits) > 1 else ''} ({example})")
    return warnings


def _pairs(table: pd.DataFrame, finals: dict, seed: int) -> pd.DataFrame:
    """P(X > Y) of the final return for every pair of groups on the same environment that
    both have scored runs, X the one with the higher IQM."""
    rows = []
    for env, rows_env in table[table.seeds > 0].groupby("env", sort=False):
        ranked = rows_env.sort_values("final_iqm", ascending=False, kind="stable")["group"]
        for x, y in combinations(ranked, 2):
            fx, fy = finals[env, x], finals[env, y]
            low, high = bootstrap.poi_ci(fx, fy, stable_seed(seed, "poi", env, x, y))
            rows.append({"env": env, "x": x, "y": y, "n_x": len(fx), "n_y": len(fy),
                         "p_improvement": float(stats.probability_of_improvement(fx, fy)),
                         "low": low, "high": high})
    return pd.DataFrame(rows, columns=["env", "x", "y", "n_x", "n_y", "p_improvement",
                                       "low", "high"])
