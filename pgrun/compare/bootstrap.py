"""Stratified percentile-bootstrap intervals (Agarwal et al. 2021, after Efron 1979).

Each stratum (the seeds of one group on one environment) is resampled with replacement
on its own, ``N_RESAMPLES`` times. A resample of n values is held as the counts of each
value (how often n uniform draws picked it): every statistic below is computed from the counts
directly (a matrix product, or a window of the sorted values), which is what makes
10,000 resamples cheap. The interval is the 2.5th-97.5th percentile of the resampled
statistic. The same functions with every count 1 give the point estimate, so estimate
and interval share one formula. Randomness comes only from ``seed``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

CONFIDENCE = 0.95
N_RESAMPLES = 10_000
"""Enough that a printed interval end moves by well under its last digit from one
bootstrap seed to the next."""
MIN_CI_SEEDS = 3
"""Below this many seeds in a stratum the bootstrap only spans the data: no interval."""


def counts(sizes: Sequence[int], seed: int, resamples: int = N_RESAMPLES) -> np.ndarray:
    """(resamples, Σ sizes) counts: for each stratum of n values, how often each value is
    drawn in n draws with replacement, side by side in stratum order."""
    rng = np.random.default_rng(seed)
    blocks = []
    for n in sizes:
        draws = rng.integers(0, n, (resamples, n)) + n * np.arange(resamples)[:, None]
        blocks.append(np.bincount(draws.ravel(), minlength=resamples * n).reshape(-1, n))
    return np.hstack(blocks).astype(np.int32)


def interval(resampled: np.ndarray) -> tuple:
    """The percentile interval over axis 0 (floats for a scalar statistic)."""
    tail = 100 * (1 - CONFIDENCE) / 2
    low, high = np.percentile(resampled, [tail, 100 - tail], axis=0)
    return (float(low), float(high)) if np.ndim(low) == 0 else (low, high)


def stratum_weights(sizes: Sequence[int]) -> np.ndarray:
    """The weight of one copy of each value so that every stratum weighs the same
    (L / n for a stratum of n, L the least common multiple of the sizes: whole numbers,
    so positions in ``window_mean`` stay exact; equal sizes give weight 1)."""
    lcm = math.lcm(*sizes)
    if lcm * len(sizes) > 2**50:  # far beyond any real suite: near-exact floats instead
        lcm = 2**50 / len(sizes)
    return np.concatenate([np.full(n, lcm / n) for n in sizes])


def window_mean(x: np.ndarray, c: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Mean of the sorted multiset (each x_i repeated c_i times; c may be a weight) at
    positions [lo, hi):
    x_i's copies sit at [C_i − c_i, C_i), C the running count over x in ascending order,
    so clip(C_i, lo, hi) − clip(C_i − c_i, lo, hi) of them are inside. x: (n,),
    c: (R, n) → (R,)."""
    order = np.argsort(x, kind="stable")
    c = np.asarray(c)[:, order]
    after = np.cumsum(c, axis=1, dtype=c.dtype)
    before = after - c
    np.clip(after, lo, hi, out=after)
    np.clip(before, lo, hi, out=before)
    after -= before
    return after @ x[order] / (hi - lo)


def trimmed_mean(x: np.ndarray, c: np.ndarray, cut: float = 0.25) -> np.ndarray:
    """Trimmed mean of each resample, cutting ⌊cut·N⌋ values from each end (as
    ``scipy.stats.trim_mean``; N the total count or weight); cut 0.25 is the
    interquartile mean (IQM)."""
    n = int(round(c[0].sum()))
    lo = int(cut * n)
    return window_mean(x, c, lo, n - lo)


def median(x: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Median of each resample: the middle value, or the mean of the middle two."""
    n = int(round(c[0].sum()))
    return window_mean(x, c, (n - 1) // 2, n // 2 + 1)


def mean(x: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Mean of each resample; x may be (n, k) for k statistics at once → (R, k)."""
    return c @ x / c[0].sum()


def poi(x: np.ndarray, y: np.ndarray, cx: np.ndarray, cy: np.ndarray) -> np.ndarray:
    """P(X > Y) of each resample, (1/(n·m)) Σ_i Σ_j c_i d_j (1[x_i > y_j] + ½·1[x_i = y_j])."""
    k = (x[:, None] > y[None, :]) + 0.5 * (x[:, None] == y[None, :])
    return ((cx @ k) * cy).sum(axis=1) / (len(x) * len(y))


def too_few(*samples: np.ndarray) -> bool:
    return any(len(s) < MIN_CI_SEEDS for s in samples)


def iqm_ci(x: np.ndarray, seed: int) -> tuple[float, float]:
    """Interval of the interquartile mean of one group's seeds; NaN below MIN_CI_SEEDS."""
    x = np.asarray(x, dtype=float)
    if too_few(x):
        return math.nan, math.nan
    return interval(trimmed_mean(x, counts([len(x)], seed)))


def poi_ci(x: np.ndarray, y: np.ndarray, seed: int) -> tuple[float, float]:
    """Interval of P(X > Y), X's and Y's seeds resampled apart; NaN below MIN_CI_SEEDS."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if too_few(x, y):
        return math.nan, math.nan
    c = counts([len(x), len(y)], seed)
    return interval(poi(x, y, c[:, :len(x)], c[:, len(x):]))


def mean_band(values: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Interval of the mean over runs (axis 0) at each column (a learning curve's steps),
    the same resampled sets of runs at every step."""
    return interval(mean(values, counts([len(values)], seed)))
