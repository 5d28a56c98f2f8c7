"""The comparison across environments in words: the report section that answers "which
configuration is better across the suite, and how sure are we", and its CSV files. The
numbers come from ``suite``; this module only formats them."""

from __future__ import annotations

import math
from pathlib import Path

from pgrun.compare import bootstrap
from pgrun.compare.report import md_table
from pgrun.compare.suite import METRICS, Suite


def verdict(suite: Suite) -> list[str]:
    """The answer in words: the configuration with the highest IQM, and for each other one
    whether the interval of P̄(best > other) lies above ½ (the difference is resolved at
    this number of runs) or not."""
    best = suite.aggregates.iloc[0]
    lines = [f"Highest normalized IQM: **{best.config}** ({_ci(best, 'iqm')})."]
    if len(suite.aggregates) == 1:
        lines.append(f"Only {best.config} has runs on every one of these environments: there "
                     "is nothing to compare it with across the suite.")
    for pair in suite.pairs[(suite.pairs.x == best.config) | (suite.pairs.y == best.config)
                            ].itertuples():
        other = pair.y if pair.x == best.config else pair.x
        p = pair.p_improvement if pair.x == best.config else 1 - pair.p_improvement
        low, high = (pair.low, pair.high) if pair.x == best.config else \
            (1 - pair.high, 1 - pair.low)
        where = f"P̄({best.config} > {other}) = {p:.2f}"
        if math.isnan(low):
            lines.append(f"{where}, no interval (fewer than {bootstrap.MIN_CI_SEEDS} runs on "
                         "some environment): not resolved.")
        elif low > 0.5:
            lines.append(f"{where} [{low:.2f}, {high:.2f}]: the interval lies above 0.5, so "
                         f"{best.config} is better than {other} across the suite.")
        else:
            lines.append(f"{where} [{low:.2f}, {high:.2f}]: the interval includes 0.5, so "
                         f"these runs do not tell {best.config} and {other} apart.")
    return lines


def _ci(row, name: str) -> str:
    value, low, high = row[name], row[f"{name}_low"], row[f"{name}_high"]
    return f"{value:.2f}" if math.isnan(low) else f"{value:.2f} [{low:.2f}, {high:.2f}]"


def markdown(suite: Suite, figures: list[str]) -> list[str]:
    """The report section: normalization, runs per environment, aggregates, P̄, answer."""
    level = f"{bootstrap.CONFIDENCE:.0%}"
    refs = [[e, f"{r.random:g}", f"{r.reference:g}", r.source,
             *[str(suite.runs.loc[c, e]) for c in suite.runs.index]]
            for e, r in suite.references.items()]
    agg = [[row.config, str(row.runs), *[_ci(row._asdict(), m) for m in METRICS]]
           for row in suite.aggregates.itertuples(index=False)]
    pairs = [[p.x, p.y, f"{p.p_improvement:.2f}" + (
        "" if math.isnan(p.low) else f" [{p.low:.2f}, {p.high:.2f}]")]
        for p in suite.pairs.itertuples()]
    return [
        "## Across environments", "",
        "Which configuration is better across the suite, and how sure are we? Each run's "
        "final return x (at its environment's budget, as above) becomes a normalized score "
        "z = (x − random) / (reference − random): 0 is a random policy, 1 the reference.", "",
        md_table(["environment", "random", "reference", "source",
                  *[f"runs: {c}" for c in suite.runs.index]], refs), "",
        f"Aggregates of z over the runs of all {len(suite.envs)} environments pooled, each "
        "environment weighing the same (and each run within it equally); "
        f"{level} CIs by stratified bootstrap ({bootstrap.N_RESAMPLES:,} resamples, each "
        "environment's runs resampled apart); optimality gap = mean of max(1 − z, 0), "
        "lower is better:", "",
        md_table(["configuration", "runs", f"IQM [{level} CI]", "mean", "median",
                  "optimality gap"], agg), "",
        f"Probability of improvement averaged over the {len(suite.envs)} environments, "
        "P̄(X > Y) = (1/M) Σ_e P(X_e > Y_e):", "",
        md_table(["X", "Y", f"P̄(X > Y) [{level} CI]"], pairs), "",
        *[f"- {line}" for line in verdict(suite)], "",
        *[f"![{name.split('.')[0].replace('_', ' ')}]({name})" for name in figures], "",
        "Performance profile: the fraction of runs whose z exceeds τ (band: "
        f"{level} CI). Sample efficiency: the IQM of z along the runs' curves, at fractions "
        "of each environment's compared span.", "",
    ]


def write_tables(out: Path, suite: Suite) -> list[Path]:
    """``suite.csv`` (aggregates) and ``suite_improvement.csv`` (P̄ per pair)."""
    paths = [out / "suite.csv", out / "suite_improvement.csv"]
    suite.aggregates.to_csv(paths[0], index=False, float_format="%.10g")
    suite.pairs.to_csv(paths[1], index=False, float_format="%.10g")
    return paths
