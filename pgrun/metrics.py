"""Run-folder CSV files (written and flushed row by row) and the progress display."""

from __future__ import annotations

import csv
import logging
import math
import sys
import time
from contextlib import contextmanager
from pathlib import Path

STAT_COLUMNS = ("policy_loss", "value_loss", "entropy", "approx_kl", "clip_frac",
                "explained_variance", "grad_norm", "lr", "grad_steps")
"""The figures any algorithm's update may report (blank where it has no such figure);
``grad_steps`` counts the optimizer steps an update took."""
METRIC_COLUMNS = ["update", "step", "episodes", "time_s", "sps", "return_mean", "return_std",
                  "length_mean", *STAT_COLUMNS]
"""The columns every metrics.csv has: the loop's, then ``STAT_COLUMNS`` (an algorithm may
add its own after them: ``Algorithm.columns``)."""
EVAL_COLUMNS = ["step", "return_mean", "return_std", "length_mean", "episodes", "time_s"]
TIMING_COLUMNS = ("time_s", "sps")
"""Columns that depend on the machine; everything else is a function of config and seed."""

log = logging.getLogger("pgrun")


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else format(value, ".8g")
    return str(value)


class CsvLog:
    """A CSV file with a fixed header; each row is flushed so a crash loses nothing
    already logged. Missing keys are written blank; a key without a column is an error."""

    def __init__(self, path: Path, columns: list[str]):
        self.columns = columns
        self._file = open(path, "w", newline="")  # noqa: SIM115 (closed in close())
        self._writer = csv.writer(self._file)
        self._writer.writerow(columns)
        self._file.flush()

    def write(self, row: dict) -> None:
        unknown = row.keys() - set(self.columns)
        if unknown:  # a figure that would be silently dropped: a bug in its algorithm
            raise KeyError(f"no column for {sorted(unknown)} in {self._file.name}")
        self._writer.writerow([_cell(row.get(c)) for c in self.columns])
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class Progress:
    """A rich progress bar on a terminal, plain log lines (every 10%) otherwise."""

    def __init__(self, mode: str, total: int, title: str):
        if mode == "auto":
            mode = "rich" if sys.stdout.isatty() else "plain"
        self.mode, self.total, self.title = mode, total, title
        self.eval_return: float | None = None
        self.next_line = 0.0
        self._bar = None
        if mode == "rich":
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as RichProgress
            self._bar = RichProgress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[stats]}"), TimeElapsedColumn(), TextColumn("eta"),
                TimeRemainingColumn(), transient=False)
            self._task = self._bar.add_task(title, total=total, stats="")
            self._bar.start()

    def update(self, step: int, sps: float, recent_return: float | None) -> None:
        stats = f"{sps:,.0f} sps"
        if recent_return is not None and not math.isnan(recent_return):
            stats += f" | return {recent_return:.1f}"
        if self.eval_return is not None:
            stats += f" | eval {self.eval_return:.1f}"
        if self._bar is not None:
            self._bar.update(self._task, completed=min(step, self.total), stats=stats)
        elif self.mode == "plain" and step >= self.next_line:
            log.info("%s %d/%d steps (%.0f%%) %s", self.title, step, self.total,
                     100 * step / self.total, stats)
            self.next_line = step + self.total / 10

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


class Stopwatch:
    """Accumulates wall time per named phase (rollout, update, eval, ...)."""

    def __init__(self):
        self.start = time.perf_counter()
        self.totals: dict[str, float] = {}

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    @contextmanager
    def time(self, name: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.totals[name] = self.totals.get(name, 0.0) + time.perf_counter() - t0
