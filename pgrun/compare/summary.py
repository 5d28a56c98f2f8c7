"""The comparison's numbers: one row per group and environment, one per pair of groups.

Per run: the final return (mean of its last K points), the first step at the env's
reward threshold, and the normalized area under its curve. Per group: these over seeds
(mean ± std, IQM with a bootstrap interval, median, k/n reached), wall time and SPS.
Per pair of groups on one environment: the probability of improvement.
"""

from __future__ import annotations

import math
import zlib
from collections import Counter
from itertools import combinations

import numpy as np
import pandas as pd

from pgrun.compare import stats
from pgrun.compare.group import Group
from pgrun.compare.load import COMPLETE, CompareError, Curve, Run

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


def summarize(groups: list[Group], source: str, last: int,
              seed: int) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """The per-group table, the pairwise table and warnings (in report order)."""
    rows, warnings = [], []
    finals: dict[tuple[str, str], np.ndarray] = {}
    for env in dict.fromkeys(g.env for g in groups):
        env_groups = [g for g in groups if g.env == env]
        auc_span = stats.common_span([curve_of(r, source) for g in env_groups for r in g.runs])
        for group in env_groups:
            row = _group_row(group, source, last, auc_span, seed)
            finals[env, group.label] = row.pop("_finals")
            rows.append(row)
            warnings += _group_warnings(group, source)
    table = pd.DataFrame(rows)
    return table, _pairs(table, finals, seed), warnings


def _group_row(group: Group, source: str, last: int, auc_span: tuple[float, float],
               seed: int) -> dict:
    curves = [curve_of(r, source) for r in group.runs]
    finals = np.array([stats.final_return(c, last) for c in curves])
    threshold = group.runs[0].threshold
    reached = np.array([stats.steps_to_threshold(c, threshold) for c in curves])
    reached = reached[~np.isnan(reached)]
    mean, std = stats.mean_std(finals)
    low, high = stats.bootstrap_ci(stats.iqm, (finals,),
                                   stable_seed(seed, "iqm", group.env, group.label))
    last_steps = [float(c.steps[-1]) for c in curves]
    return {
        "env": group.env, "group": group.label, "seeds": len(curves),
        "complete": sum(r.status == COMPLETE for r in group.runs),
        "incomplete": _incomplete(group.runs),
        "steps_min": min(last_steps), "steps_max": max(last_steps),
        "final_mean": mean, "final_std": std, "final_iqm": float(stats.iqm(finals)),
        "final_iqm_low": low, "final_iqm_high": high, "final_median": float(np.median(finals)),
        "threshold": math.nan if threshold is None else threshold,
        "steps_to_threshold": float(np.median(reached)) if len(reached) else math.nan,
        "reached": len(reached),
        "auc": float(np.mean([stats.normalized_auc(c, *auc_span) for c in curves])),
        "auc_start": auc_span[0], "auc_end": auc_span[1],
        "wall_time_s": _median([r.wall_time_s for r in group.runs]),
        "sps": _median([r.sps for r in group.runs]),
        "_finals": finals,
    }


def _median(values: list[float]) -> float:
    known = [v for v in values if not math.isnan(v)]
    return float(np.median(known)) if known else math.nan


def _incomplete(runs: list[Run]) -> str:
    """``"2 unfinished, 1 failed"``: the runs whose status is not complete, by status."""
    counts = Counter(r.status for r in runs if r.status != COMPLETE)
    return ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))


def _group_warnings(group: Group, source: str) -> list[str]:
    name = f"{group.label} on {group.env}"
    warnings = []
    n = len(group.runs)
    if n < MIN_SEEDS:
        warnings.append(f"{name}: only {n} seed{'s' if n > 1 else ''} (< {MIN_SEEDS}); its "
                        "interval and probabilities of improvement are unreliable")
    incomplete = _incomplete(group.runs)
    ends = [float(curve_of(r, source).steps[-1]) for r in group.runs]
    if incomplete or min(ends) < (1 - END_TOLERANCE) * max(ends):
        why = f"not all runs are complete ({incomplete}; unfinished: no summary.json yet, " \
            "still running or killed); " if incomplete else ""
        warnings.append(f"{name}: {why}runs end between step {min(ends):,.0f} and "
                        f"{max(ends):,.0f}; its curve stops at the shortest run, final "
                        "returns are each run's own last points")
    return warnings


def _pairs(table: pd.DataFrame, finals: dict, seed: int) -> pd.DataFrame:
    """P(X > Y) of the final return for every pair of groups on the same environment,
    X the one with the higher IQM."""
    rows = []
    for env, rows_env in table.groupby("env", sort=False):
        ranked = rows_env.sort_values("final_iqm", ascending=False, kind="stable")["group"]
        for x, y in combinations(ranked, 2):
            fx, fy = finals[env, x], finals[env, y]
            low, high = stats.bootstrap_ci(stats.probability_of_improvement, (fx, fy),
                                           stable_seed(seed, "poi", env, x, y))
            rows.append({"env": env, "x": x, "y": y, "n_x": len(fx), "n_y": len(fy),
                         "p_improvement": float(stats.probability_of_improvement(fx, fy)),
                         "low": low, "high": high})
    return pd.DataFrame(rows, columns=["env", "x", "y", "n_x", "n_y", "p_improvement",
                                       "low", "high"])
