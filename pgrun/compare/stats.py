"""Point statistics over seeds, after Agarwal et al. (2021), "Deep RL at the edge of the
statistical precipice" (interquartile mean, probability of improvement), and the figures
taken from one learning curve. Intervals are in ``bootstrap``.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from pgrun.compare import bootstrap
from pgrun.compare.load import Curve


def mean_std(x: np.ndarray) -> tuple[float, float]:
    """Mean and sample standard deviation s = sqrt(Σ(x−x̄)²/(n−1)) (NaN for n < 2)."""
    x = np.asarray(x, dtype=float)
    if len(x) == 0:
        return math.nan, math.nan
    return float(x.mean()), float(x.std(ddof=1)) if len(x) > 1 else math.nan


def iqm(x: np.ndarray, axis: int = -1) -> np.ndarray | float:
    """Interquartile mean: the mean of the middle 50% of values, trimming
    ⌊0.25·n⌋ from each end (``scipy.stats.trim_mean(x, 0.25)``)."""
    return stats.trim_mean(x, 0.25, axis=axis)


def probability_of_improvement(x: np.ndarray, y: np.ndarray, axis: int = -1):
    """P(X > Y) = (1/(n·m)) Σ_i Σ_j (1[x_i > y_j] + ½·1[x_i = y_j]): the chance that a
    random run of X beats a random run of Y. Computed as U/(n·m), U = R_x − n(n+1)/2 the
    Mann-Whitney statistic from the ranks R_x of x in x ∪ y (ties get average ranks)."""
    x, y = np.moveaxis(np.asarray(x), axis, -1), np.moveaxis(np.asarray(y), axis, -1)
    n, m = x.shape[-1], y.shape[-1]
    ranks = stats.rankdata(np.concatenate([x, y], axis=-1), axis=-1)
    rank_sum = ranks[..., :n].sum(axis=-1)
    return (rank_sum - n * (n + 1) / 2) / (n * m)


def up_to(curve: Curve, step: float) -> Curve:
    """The points of ``curve`` at steps ≤ ``step``."""
    keep = curve.steps <= step
    return Curve(curve.steps[keep], curve.returns[keep])


FINAL_LAST = 3
"""Evaluations averaged into a run's final return by default (``pgrun compare --last``)."""


def final_return(curve: Curve, last: int) -> float:
    """The mean of a run's last ``last`` returns on its curve (fewer if it has fewer;
    NaN if none)."""
    return float(curve.returns[-last:].mean()) if len(curve.returns) else math.nan


def steps_to_threshold(curve: Curve, threshold: float | None) -> float:
    """The step of the first point whose return is ≥ ``threshold`` (one evaluation at or
    above it, not a sustained level); NaN if none (or no threshold)."""
    if threshold is None:
        return math.nan
    hits = np.flatnonzero(curve.returns >= threshold)
    return float(curve.steps[hits[0]]) if len(hits) else math.nan


def censored_median(steps: np.ndarray, budget: float) -> tuple[float, str]:
    """Median steps to threshold over all seeds, a seed that never reached it (NaN)
    counted at ``budget`` (right-censored there), and what the number is: ``"exact"``;
    ``"lower bound"`` when a censored value enters the median (exactly half reached);
    ``"above budget"`` when fewer than half reached, so the median lies beyond the
    budget (the value is then ``budget``); NaN, ``""`` for no seeds."""
    steps = np.asarray(steps, dtype=float)
    n, reached = len(steps), int(np.isfinite(steps).sum())
    if n == 0:
        return math.nan, ""
    if 2 * reached < n:
        return float(budget), "above budget"
    median = float(np.median(np.where(np.isfinite(steps), steps, budget)))
    return median, "exact" if reached > n // 2 else "lower bound"


def common_span(curves: list[Curve]) -> tuple[float, float]:
    """The steps every curve covers: [latest first step, earliest last step]."""
    start = max(float(c.steps[0]) for c in curves)
    end = min(float(c.steps[-1]) for c in curves)
    return start, max(start, end)


def normalized_auc(curve: Curve, start: float, end: float) -> float:
    """Mean return over [start, end]: (1/(end−start)) ∫ r(t) dt, with r linear between
    logged points (the trapezoid rule, exact for that r)."""
    if end <= start:
        return float(np.interp(start, curve.steps, curve.returns))
    inside = (curve.steps > start) & (curve.steps < end)
    xs = np.concatenate([[start], curve.steps[inside], [end]])
    ys = np.interp(xs, curve.steps, curve.returns)
    return float(((ys[1:] + ys[:-1]) / 2 * np.diff(xs)).sum() / (end - start))


def interpolate(curves: list[Curve], grid: np.ndarray) -> np.ndarray:
    """Returns of each curve at each grid step, linearly interpolated: (runs, steps)."""
    return np.stack([np.interp(grid, c.steps, c.returns) for c in curves])


def mean_band(values: np.ndarray, band: str, seed: int) -> tuple[np.ndarray, ...]:
    """Mean over runs (axis 0) and a band around it: ``"ci"``, the percentile bootstrap
    interval of the mean (at up to ``BAND_POINTS`` columns), or ``"std"``, mean ± sample
    std. With one run (or, for "ci", fewer than ``bootstrap.MIN_CI_SEEDS``) the band is
    the line itself."""
    mean = values.mean(axis=0)
    if len(values) < 2 or (band == "ci" and bootstrap.too_few(values)):
        return mean, mean, mean
    if band == "std":
        std = values.std(axis=0, ddof=1)
        return mean, mean - std, mean + std
    every = max(1, math.ceil(values.shape[1] / BAND_POINTS))  # then linear in between
    columns = np.unique(np.r_[np.arange(0, values.shape[1], every), values.shape[1] - 1])
    low, high = bootstrap.mean_band(values[:, columns], seed)
    at = np.arange(values.shape[1])
    return mean, np.interp(at, columns, low), np.interp(at, columns, high)


BAND_POINTS = 100
"""Columns at which ``mean_band`` bootstraps its interval (the percentiles of 10,000
resamples dominate a comparison's time); the band is linear in between."""
