"""Learning curves: return vs env steps, one panel per environment, one line per group.

Each scored seed's curve is interpolated linearly onto a common grid of steps that every
run of the group covers (so a group's line stops at its shortest run, marked with an ×
when longer runs went on); the line is the mean over seeds and the band either a 95%
bootstrap interval of that mean or ± one std, hatched for fewer than ``MIN_SEEDS`` seeds.
The reward threshold (dashed) and the budget the figures are taken at (dotted) are named
in the legend, which sits below the axes so that no label covers a curve.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import numpy as np

from pgrun.compare import stats
from pgrun.compare.group import Group
from pgrun.compare.report import steps_text
from pgrun.compare.summary import END_TOLERANCE, MIN_SEEDS, Comparison, curve_of, stable_seed

GRID_POINTS = 300
PANELS_PER_ROW = 3
Y_LABELS = {"eval": "evaluation return", "train": "training return"}
BAND_NAMES = {"ci": "mean over seeds, 95% bootstrap CI", "std": "mean over seeds ± 1 std"}
LEGEND_CHARS = 13
"""Characters of an 8-point legend line per inch of panel width (with room for the key)."""



def colors_for(labels: list[str]) -> dict[str, tuple]:
    """One tab10 colour per group label, in order (the same in every figure)."""
    from matplotlib import colormaps

    palette = colormaps["tab10"].colors
    return {label: palette[i % len(palette)] for i, label in enumerate(labels)}


def panels(n: int, width: float = 5.6, height: float = 4.3):
    """A constrained-layout figure with ``n`` panels, ``PANELS_PER_ROW`` a row (Agg: no
    display, no pyplot state); returns (fig, axes) with unused axes hidden."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ncols = min(PANELS_PER_ROW, n)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False).flat
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def save(fig, path: Path, svg: bool) -> list[Path]:
    """``path`` (PNG, 150 dpi) and its ``.svg`` twin if asked; the files written."""
    written = [path]
    fig.savefig(path, dpi=150)
    if svg:
        written.append(path.with_suffix(".svg"))
        fig.savefig(written[-1])
    return written


def legend_below(ax, **kwargs) -> None:
    """The legend under the axes, where it covers no curve, its entries wrapped to the
    panel's width (a long group label would otherwise run off the figure's edges)."""
    handles, labels = ax.get_legend_handles_labels()
    width = max(20, int(ax.figure.get_figwidth() / ax.get_gridspec().ncols * LEGEND_CHARS))
    ax.legend(handles, [textwrap.fill(label, width) for label in labels], loc="upper center",
              bbox_to_anchor=(0.5, -0.18), fontsize=8, title_fontsize=8, frameon=False,
              ncols=1, **kwargs)


def plot_curves(groups: list[Group], result: Comparison, source: str, band: str, seed: int,
                path: Path, svg: bool = False) -> list[Path]:
    """Draw the scored runs' curves into ``path`` (PNG) and its ``.svg`` twin if asked;
    the files written."""
    from matplotlib import rc_context
    from matplotlib.ticker import FuncFormatter

    groups = [g for g in groups if result.scored.get((g.env, g.label))]
    envs = list(dict.fromkeys(g.env for g in groups))
    colors = colors_for(list(dict.fromkeys(g.label for g in groups)))
    with rc_context({"font.size": 9}):
        fig, axes = panels(len(envs))
        for ax, env in zip(axes, envs, strict=True):
            for group in (g for g in groups if g.env == env):
                _draw_group(ax, group, result.scored[env, group.label], source, band, seed,
                            colors[group.label])
            threshold = next(g.runs[0].threshold for g in groups if g.env == env)
            if threshold is not None:
                ax.axhline(threshold, color="0.45", linestyle="--", linewidth=1, zorder=1,
                           label=f"reward threshold {threshold:g}")
            ax.axvline(result.budgets[env], color="0.45", linestyle=":", linewidth=1, zorder=1,
                       label=f"compared at {steps_text(result.budgets[env])}")
            ax.set_title(env, fontsize=11)
            ax.set_xlabel("environment steps")
            ax.set_ylabel(Y_LABELS[source])
            ax.xaxis.set_major_formatter(FuncFormatter(steps_text))
            ax.grid(alpha=0.25, linewidth=0.6)
            ax.spines[["top", "right"]].set_visible(False)
            legend_below(ax, title=BAND_NAMES[band])
        return save(fig, path, svg)


def _draw_group(ax, group: Group, runs: list, source: str, band: str, seed: int,
                color) -> None:
    curves = [curve_of(r, source) for r in runs]
    start, end = stats.common_span(curves)
    grid = np.linspace(start, end, GRID_POINTS)
    mean, low, high = stats.mean_band(stats.interpolate(curves, grid), band,
                                      stable_seed(seed, "band", group.env, group.label))
    longest = max(float(c.steps[-1]) for c in curves)
    cut = end < (1 - END_TOLERANCE) * longest
    label = f"{group.label} (n={len(curves)}"
    label += f"; × cut at {steps_text(end)}, its shortest run; longest {steps_text(longest)})" \
        if cut else ")"
    few = len(curves) < MIN_SEEDS
    if few:
        label += f", hatched band: < {MIN_SEEDS} seeds"
    ax.plot(grid, mean, color=color, linewidth=1.8, label=label, zorder=3)
    if cut:
        ax.plot([end], [mean[-1]], marker="x", markersize=8, markeredgewidth=2, color=color,
                zorder=4)
    ax.fill_between(grid, low, high, color=color, alpha=0.12 if few else 0.2, linewidth=0,
                    hatch="////" if few else None, edgecolor=color, zorder=2)


def plot_suite(suite, path_profile: Path, path_curves: Path, svg: bool = False) -> list[Path]:
    """The performance profile (fraction of runs with normalized score > τ) and the IQM
    sample-efficiency curves of ``suite.Suite``, each with its bootstrap band (hatched
    where some environment has fewer than ``MIN_SEEDS`` runs of the configuration)."""
    from matplotlib import rc_context

    configs = list(suite.runs.index)
    colors = colors_for(configs)
    few = {c: int(suite.runs.loc[c].min()) < MIN_SEEDS for c in configs}
    envs = ", ".join(suite.envs)
    written = []
    with rc_context({"font.size": 9}):
        for path, data, x_key, xlabel, ylabel, title in (
                (path_profile, suite.profile, "tau", "normalized score τ",
                 "fraction of runs with score > τ", "performance profile"),
                (path_curves, suite.curves, "fraction", "fraction of each environment's "
                 "compared span of steps", "IQM of normalized score", "sample efficiency")):
            fig, (ax,) = panels(1, width=6.0, height=4.6)
            for config in configs:
                line, low, high = data[config]
                label = f"{config} ({int(suite.runs.loc[config].sum())} runs"
                label += f", hatched band: < {MIN_SEEDS} runs on an env)" if few[config] else ")"
                ax.plot(data[x_key], line, color=colors[config], linewidth=1.8, label=label,
                        zorder=3)
                ax.fill_between(data[x_key], low, high, color=colors[config],
                                alpha=0.12 if few[config] else 0.2, linewidth=0,
                                hatch="////" if few[config] else None,
                                edgecolor=colors[config], zorder=2)
            ax.set_title(f"{title}: {envs}", fontsize=10)
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.25, linewidth=0.6)
            ax.spines[["top", "right"]].set_visible(False)
            legend_below(ax, title="line: point estimate; band: 95% stratified bootstrap CI")
            written += save(fig, path, svg)
    return written
