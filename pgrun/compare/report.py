"""The comparison as text: a rich table in the terminal, ``report.md``, ``summary.csv``,
``improvement.csv`` and ``runs.csv``. Numbers come from ``summary.py``; this module only
formats."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pgrun.compare.bootstrap import CONFIDENCE, MIN_CI_SEEDS, N_RESAMPLES

LEVEL = f"{CONFIDENCE:.0%}"


def _num(x: float, digits: int = 1) -> str:
    return "—" if x is None or math.isnan(x) else f"{x:,.{digits}f}"


def steps_text(x: float, _pos=None) -> str:
    """Env steps in short: 200k, 1.5M, 512 (three significant digits; also a tick formatter)."""
    if abs(x) >= 1e6:
        return f"{x / 1e6:.3g}M"
    return f"{x / 1e3:.3g}k" if abs(x) >= 1e3 else f"{x:.0f}"


def _headers(env_rows: pd.DataFrame) -> list[str]:
    first = env_rows.iloc[0]
    threshold = "threshold" if math.isnan(first.threshold) else f"{first.threshold:g}"
    at = steps_text(first.budget)
    return ["group", "seeds", "trained steps", f"final at {at}: mean ± std",
            f"IQM [{LEVEL} CI]", "median", f"steps to {threshold} (reached)",
            f"AUC {steps_text(first.auc_start)}–{steps_text(first.auc_end)}", "wall time",
            "SPS"]


def budget_line(env_rows: pd.DataFrame, at_step: float | None) -> str:
    """Which step an environment's figures are taken at, and why."""
    first = env_rows.iloc[0]
    why = "given by --at-step" if at_step is not None else \
        "the largest step every compared run on this environment reached"
    return (f"Compared at step {first.budget:,.0f} ({why}); AUC over steps "
            f"{first.auc_start:,.0f}–{first.auc_end:,.0f}.")


def _seeds_cell(row) -> str:
    cell = str(row.seeds)
    if isinstance(row.incomplete, str) and row.incomplete:
        cell += f" ({row.incomplete})"
    return cell + (f" + {row.failed} failed" if row.failed else "")


def _threshold_cell(row) -> str:
    if math.isnan(row.threshold):
        return "—"
    reached = f"({row.reached}/{row.attempts})"
    if row.steps_to_threshold_kind == "above budget":
        return f"> {steps_text(row.budget)} {reached}"
    bound = "≥ " if row.steps_to_threshold_kind == "lower bound" else ""
    return f"{bound}{_num(row.steps_to_threshold, 0)} {reached}"


def _row_cells(row) -> list[str]:
    low, high = steps_text(row.steps_min), steps_text(row.steps_max)
    steps = "—" if math.isnan(row.steps_min) else high if low == high else f"{low}–{high}"
    ci = "—" if math.isnan(row.final_iqm_low) else \
        f"{_num(row.final_iqm_low)}, {_num(row.final_iqm_high)}"
    spread = "—" if math.isnan(row.final_mean) else \
        f"{_num(row.final_mean)} ± {_num(row.final_std)}"
    return [row.group, _seeds_cell(row), steps, spread, f"{_num(row.final_iqm)} [{ci}]",
            _num(row.final_median), _threshold_cell(row), _num(row.auc),
            "—" if math.isnan(row.wall_time_s) else f"{row.wall_time_s:,.1f} s", _num(row.sps, 0)]


def _pair_cells(pair) -> list[str]:
    return [pair.x, pair.y,
            f"{pair.p_improvement:.2f} [{_num(pair.low, 2)}, {_num(pair.high, 2)}]"]


PAIR_HEADERS = ["X", "Y", f"P(X > Y) [{LEVEL} CI]"]


def definitions(source: str, last: int, band: str, seed: int) -> list[str]:
    """What each figure means, stated once for the terminal and the report."""
    what = "evaluations (`return_mean` in eval.csv)" if source == "eval" else \
        "logged training returns (`return_mean` in metrics.csv)"
    return [
        f"**Final return**: the mean of each seed's last {last} {what} at steps ≤ B, the "
        "step the environment is compared at (+5%: runs of one budget end a batch apart).",
        "**Runs compared**: complete runs (summary.json with status complete), plus "
        "unfinished and interrupted ones only with `--include-unfinished` (then counted in "
        "the seeds column). Failed runs (status failed: a NaN stop or a crash) are never "
        "scored; they count as not reaching the threshold (`+ k failed`).",
        "**Compared at step B**: on each environment every figure is taken at one budget B, "
        "the largest step every compared run on it reached (or `--at-step`): points after "
        "B are not used, so longer training earns nothing.",
        "**mean ± std, median**: over seeds; std is the sample std (n − 1).",
        f"**IQM**: interquartile mean (Agarwal et al. 2021), the mean of the middle 50% of "
        f"seeds, trimming ⌊n/4⌋ from each end (`scipy.stats.trim_mean(x, 0.25)`): below 4 "
        f"seeds nothing is trimmed and the IQM equals the mean. {LEVEL} CI by percentile "
        f"bootstrap with {N_RESAMPLES:,} resamples of the seeds of each group on each "
        f"environment (stratified), seed {seed}; no CI (—) below {MIN_CI_SEEDS} seeds, where "
        "it would only span the data.",
        "**Steps to threshold**: for each seed, the step of its first evaluation (first point) "
        "at or above `env.reward_threshold` within B (one point, not a sustained level); "
        "then the median over all seeds, a seed that did not reach it (or failed) counted "
        "as B (right-censored): `> B` when fewer than half reached it, `≥` when exactly "
        "half did (the median then includes B). (reached/seeds).",
        "**AUC a–B**: mean return over the steps a–B that every compared run on the "
        "environment covers, (1/(B−a)) ∫ r(t) dt with each seed's r linear between its "
        "logged points; mean over seeds.",
        "**P(X > Y)**: probability of improvement, the chance that a random seed of X has a "
        "higher final return than a random seed of Y, mean over all seed pairs of "
        f"1[x > y] + ½·1[x = y]; {LEVEL} CI by bootstrap of each group's seeds.",
        "**Wall time, SPS**: median over seeds, from summary.json (metrics.csv's last row "
        "for runs without one).",
        "**Curves**: each seed interpolated linearly on a common step grid up to the group's "
        "shortest run; line = mean over seeds, band = "
        f"{f'{LEVEL} bootstrap CI of the mean' if band == 'ci' else '± 1 std over seeds'}.",
        "**runs.csv**: each scored run's own figures at B (its final return, the step of "
        "its first point at or above the threshold, blank if none, its AUC), the run "
        "folder and its trained steps.",
    ]


def skipped_warnings(skipped: list[tuple], limit: int | None = None) -> list[str]:
    """Warnings naming the skipped folders: one per folder when at most 3 share a reason,
    else one per reason (naming the first ``limit`` folders, or all if None)."""
    by_reason: dict[str, list[str]] = defaultdict(list)
    for path, reason in skipped:
        by_reason[reason].append(str(path))
    lines = []
    for reason, paths in by_reason.items():
        if len(paths) <= 3:
            lines += [f"skipped {p}: {reason}" for p in paths]
            continue
        named = paths if limit is None else paths[:limit]
        more = f" and {len(paths) - len(named)} more (named in report.md)" \
            if len(named) < len(paths) else ""
        lines.append(f"skipped {len(paths)} folders, {reason}: {', '.join(named)}{more}")
    return lines


def print_report(console: Console, table: pd.DataFrame, pairs: pd.DataFrame,
                 notes: list[str], warnings: list[str], at_step: float | None = None) -> None:
    width = min(48, max(len(g) for g in table.group))
    for env, rows in table.groupby("env", sort=False):
        out = Table(title=f"[bold]{escape(str(env))}[/]", title_justify="left",
                    header_style="bold", caption=escape(budget_line(rows, at_step)),
                    caption_justify="left")
        for i, name in enumerate(_headers(rows)):
            out.add_column(escape(name), justify="left" if i == 0 else "right",
                           min_width=width if i == 0 else None)
        for row in rows.itertuples():
            out.add_row(*map(escape, _row_cells(row)))
        console.print(out)
        env_pairs = pairs[pairs.env == env]
        if len(env_pairs):
            out = Table(title="probability of improvement (final return)",
                        title_justify="left", header_style="bold")
            for i, name in enumerate(PAIR_HEADERS):
                out.add_column(escape(name), justify="right" if i == 2 else "left")
            for pair in env_pairs.itertuples():
                out.add_row(*map(escape, _pair_cells(pair)))
            console.print(out)
        console.print()
    for note in notes[:1]:  # the final return's; the rest are in report.md
        console.print(escape(note.replace("**", "").replace("`", "")), style="dim",
                      highlight=False)
    for warning in warnings:
        print_warning(console, warning)


def print_warning(console, warning: str) -> None:
    """One warning line; soft-wrapped, so a long path stays one piece to copy whatever the
    console's width."""
    console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True)


def md_table(headers: list[str], rows: list[list[str]]) -> str:
    def line(cells):  # text from run folders stays inside its cell
        return "| " + " | ".join(" ".join(c.split()).replace("|", "\\|") for c in cells) + " |"

    aligns = ["---"] + ["--:"] * (len(headers) - 1)
    return "\n".join([line(headers), "| " + " | ".join(aligns) + " |", *map(line, rows)])


def markdown(command: str, table: pd.DataFrame, pairs: pd.DataFrame, notes: list[str],
             warnings: list[str], curves: str, at_step: float | None = None,
             suite: list[str] = ()) -> str:
    """``report.md``: the tables per environment, the curves, definitions, warnings."""
    failed = int(table.failed.sum())
    also = f" (and {failed} failed)" if failed else ""
    parts = [f"# Comparison of {int(table.seeds.sum())} runs{also} in {len(table)} groups", "",
             f"`{command}`", ""]
    for env, rows in table.groupby("env", sort=False):
        parts += [f"## {env}", "", budget_line(rows, at_step), "",
                  md_table(_headers(rows), [_row_cells(r) for r in rows.itertuples()]), ""]
        env_pairs = pairs[pairs.env == env]
        if len(env_pairs):
            parts += ["Probability of improvement (final return):", "",
                      md_table(PAIR_HEADERS, [_pair_cells(p) for p in env_pairs.itertuples()]),
                      ""]
    parts += [*suite, "## Learning curves", "", f"![learning curves]({curves})", "",
              "## Definitions", "", *[f"- {n}" for n in notes], ""]
    if warnings:
        parts += ["## Warnings", "", *[f"- {' '.join(w.split())}" for w in warnings], ""]
    return "\n".join(parts)


def write_tables(out: Path, table: pd.DataFrame, pairs: pd.DataFrame,
                 runs: pd.DataFrame) -> list[Path]:
    """``summary.csv`` (one row per group and environment), ``improvement.csv`` and
    ``runs.csv`` (one row per scored run)."""
    paths = [out / "summary.csv", out / "improvement.csv", out / "runs.csv"]
    for frame, path in zip((table, pairs, runs), paths, strict=True):
        frame.to_csv(path, index=False, float_format="%.10g")
    return paths
