"""Learning curves: return vs env steps, one panel per environment, one line per group.

Each seed's curve is interpolated linearly onto a common grid of steps that every run
of the group covers (so a group's line stops at its shortest run); the line is the mean
over seeds and the band either a 95% bootstrap interval of that mean or ± one std.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from pgrun.compare import stats
from pgrun.compare.group import Group
from pgrun.compare.summary import curve_of, stable_seed

GRID_POINTS = 300
PANELS_PER_ROW = 3
Y_LABELS = {"eval": "evaluation return", "train": "training return"}
BAND_NAMES = {"ci": "mean over seeds, 95% bootstrap CI", "std": "mean over seeds ± 1 std"}


def _steps(x: float, _pos=None) -> str:
    if abs(x) >= 1e6:
        return f"{x / 1e6:g}M"
    return f"{x / 1e3:g}k" if abs(x) >= 1e3 else f"{x:g}"


def plot_curves(groups: list[Group], source: str, band: str, seed: int,
                path: Path, svg: bool = False) -> list[Path]:
    """Draw the curves into ``path`` (PNG) and its ``.svg`` twin if asked; the files written."""
    from matplotlib import colormaps, rc_context
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    envs = list(dict.fromkeys(g.env for g in groups))
    labels = list(dict.fromkeys(g.label for g in groups))
    palette = colormaps["tab10"].colors
    colors = {label: palette[i % len(palette)] for i, label in enumerate(labels)}
    ncols = min(PANELS_PER_ROW, len(envs))
    nrows = math.ceil(len(envs) / ncols)
    with rc_context({"font.size": 9}):
        fig = Figure(figsize=(5.6 * ncols, 4.0 * nrows), layout="constrained")
        FigureCanvasAgg(fig)  # the Agg renderer: no display, no pyplot state
        axes = fig.subplots(nrows, ncols, squeeze=False)
        for ax, env in zip(axes.flat, envs, strict=False):
            for group in (g for g in groups if g.env == env):
                _draw_group(ax, group, source, band, seed, colors[group.label])
            threshold = next(g.runs[0].threshold for g in groups if g.env == env)
            if threshold is not None:
                ax.axhline(threshold, color="0.45", linestyle="--", linewidth=1, zorder=1)
                ax.annotate(f"reward threshold {threshold:g}", (1, threshold),
                            xycoords=("axes fraction", "data"), xytext=(-2, -3),
                            textcoords="offset points", ha="right", va="top", fontsize=8,
                            color="0.35", zorder=4,
                            bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.75,
                                  "pad": 1})
            ax.set_title(env, fontsize=11)
            ax.set_xlabel("environment steps")
            ax.set_ylabel(Y_LABELS[source])
            ax.xaxis.set_major_formatter(FuncFormatter(_steps))
            ax.grid(alpha=0.25, linewidth=0.6)
            ax.spines[["top", "right"]].set_visible(False)
            ax.legend(loc="best", fontsize=8, title=BAND_NAMES[band], title_fontsize=8,
                      frameon=True, framealpha=0.85, edgecolor="none")
        for ax in axes.flat[len(envs):]:
            ax.set_visible(False)
        written = [path]
        fig.savefig(path, dpi=150)
        if svg:
            written.append(path.with_suffix(".svg"))
            fig.savefig(written[-1])
    return written


def _draw_group(ax, group: Group, source: str, band: str, seed: int, color) -> None:
    curves = [curve_of(r, source) for r in group.runs]
    start, end = stats.common_span(curves)
    grid = np.linspace(start, end, GRID_POINTS)
    mean, low, high = stats.mean_band(stats.interpolate(curves, grid), band,
                                      stable_seed(seed, "band", group.env, group.label))
    ax.plot(grid, mean, color=color, linewidth=1.8, label=f"{group.label} (n={len(curves)})",
            zorder=3)
    ax.fill_between(grid, low, high, color=color, alpha=0.2, linewidth=0, zorder=2)
