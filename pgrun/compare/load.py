"""Find run folders under the given paths and read what a comparison needs from them.

A run folder is a directory with ``.hydra/config.yaml`` and a ``metrics.csv`` and/or
``eval.csv`` (plain runs and the job folders of a Hydra multirun alike). Files are only
read, never written. A folder that cannot be used is skipped with a reason, so one
crashed or half-written run does not stop a comparison.
"""

from __future__ import annotations

import io
import json
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import yaml

CONFIG = Path(".hydra") / "config.yaml"
METRICS, EVAL, SUMMARY = "metrics.csv", "eval.csv", "summary.json"
COMPLETE, UNFINISHED = "complete", "unfinished"
"""Run statuses besides summary.json's others (``interrupted``, ``failed``): a summary
without a status (older pgrun) is complete; a run without a summary is unfinished."""
OUTPUT_DIR_NAME = "compare"
"""Default name of ``pgrun compare``'s output folder; never searched for runs."""


class CompareError(Exception):
    """A problem with the user's input: reported as one line, no traceback."""


class Curve(NamedTuple):
    """A learning curve: return after ``steps`` env steps, steps increasing."""

    steps: np.ndarray
    returns: np.ndarray


@dataclass
class Run:
    """What ``pgrun compare`` uses from one run folder."""

    path: Path
    config: dict[str, Any]  # the resolved config, flattened to dotted keys
    eval: Curve | None  # eval.csv return_mean by step (greedy evaluation)
    train: Curve | None  # metrics.csv return_mean by step (training episodes)
    wall_time_s: float
    sps: float
    status: str  # summary.json's status; UNFINISHED while there is none (running or killed)

    @property
    def env(self) -> str:
        return str(self.config.get("env.id", "?"))

    @property
    def seed(self) -> Any:
        return self.config.get("seed")

    @property
    def threshold(self) -> float | None:
        value = self.config.get("env.reward_threshold")
        return None if value is None else float(value)


def flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    """``{"algo": {"lr": 1e-3}}`` → ``{"algo.lr": 1e-3}``; lists become tuples (hashable)."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, name + "."))
        elif isinstance(value, dict | list):
            flat[name] = _hashable(value)
        else:
            flat[name] = value
    return flat


def _hashable(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple((k, _hashable(v)) for k, v in value.items())
    return value


def read_config(path: Path) -> dict[str, Any]:
    """The run's config (``.hydra/config.yaml``), interpolations resolved, flattened."""
    text = path.read_text()
    tree = yaml.load(text, Loader=yaml.CSafeLoader)
    if "${" in text:  # rare: only then pay for OmegaConf
        from omegaconf import OmegaConf

        tree = OmegaConf.to_container(OmegaConf.create(tree), resolve=True)
    if not isinstance(tree, dict):
        raise ValueError("not a mapping")
    return flatten(tree)


def read_csv(path: Path, columns: list[str]) -> pd.DataFrame:
    """The named columns of a run CSV as floats (missing file or columns: no rows/NaN).

    The project's writer ends each row with a newline and flushes it, so text after the
    last newline is a row still being written and is dropped; cells that do not parse
    as numbers become NaN.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return pd.DataFrame(columns=columns, dtype=float)
    data = data[: data.rfind(b"\n") + 1]
    header = data.split(b"\n", 1)[0].decode(errors="replace").strip().split(",")
    present = [c for c in columns if c in header]
    if not present or data.count(b"\n") < 2:
        return pd.DataFrame(columns=columns, dtype=float)
    try:
        frame = pd.read_csv(io.BytesIO(data), usecols=present, dtype=float, engine="c")
    except ValueError:  # a cell that is not a number
        frame = pd.read_csv(io.BytesIO(data), usecols=present, dtype=str, engine="c",
                            on_bad_lines="skip")
        frame = frame.apply(pd.to_numeric, errors="coerce")
    return frame.reindex(columns=columns)


def _curve(frame: pd.DataFrame) -> Curve | None:
    """Rows with a step and a return, in step order; None when there are none."""
    frame = frame.dropna(subset=["step", "return_mean"])
    if frame.empty:
        return None
    frame = frame.sort_values("step", kind="stable").drop_duplicates("step", keep="last")
    return Curve(frame["step"].to_numpy(), frame["return_mean"].to_numpy())


def read_run(path: Path) -> Run:
    """Read one run folder; raises ValueError (the reason) when it cannot be used."""
    try:
        config = read_config(path / CONFIG)
    except (OSError, yaml.YAMLError, ValueError) as err:
        raise ValueError(f"unreadable .hydra/config.yaml ({err.__class__.__name__})") from err
    if not (path / METRICS).exists() and not (path / EVAL).exists():
        raise ValueError("no metrics.csv or eval.csv (the run stopped before its first update?)")
    metrics = read_csv(path / METRICS, ["step", "time_s", "return_mean"])
    evals = read_csv(path / EVAL, ["step", "return_mean"])
    train_curve, eval_curve = _curve(metrics), _curve(evals)
    if train_curve is None and eval_curve is None:
        raise ValueError("metrics.csv and eval.csv have no complete rows yet")
    summary = _read_summary(path / SUMMARY)
    wall, sps = summary.get("wall_time_s"), summary.get("sps")
    if wall is None or sps is None:  # in progress: the last logged row
        timed = metrics.dropna(subset=["step", "time_s"])
        wall = float(timed["time_s"].iloc[-1]) if len(timed) else math.nan
        sps = float(timed["step"].iloc[-1]) / wall if len(timed) and wall > 0 else math.nan
    status = str(summary.get("status", COMPLETE)) if summary else UNFINISHED
    return Run(path, config, eval_curve, train_curve, float(wall), float(sps), status)


def _read_summary(path: Path) -> dict:
    """summary.json, or {} (read here, not with pgrun.runfolder, which imports torch)."""
    try:
        summary = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return summary if isinstance(summary, dict) else {}


def find_run_dirs(paths: list[Path], exclude: list[Path]) -> list[Path]:
    """Run folders under ``paths`` (recursively; not inside a run, a hidden folder, a
    ``compare/`` output folder or ``exclude``), sorted, each once."""
    excluded = {p.resolve() for p in exclude}
    found: dict[Path, None] = {}
    for root in paths:
        for dirpath, dirnames, _ in os.walk(root):
            here = Path(dirpath)
            if (here / CONFIG).is_file():
                found.setdefault(here, None)
                dirnames.clear()  # a run folder holds no runs
                continue
            dirnames[:] = sorted(
                d for d in dirnames
                if not d.startswith(".") and d != OUTPUT_DIR_NAME
                and (here / d).resolve() not in excluded)
    return list(found)


def load_runs(paths: list[Path], exclude: list[Path] = ()) -> tuple[list[Run], list[tuple]]:
    """Every usable run under ``paths``, and (folder, reason) for each folder skipped."""
    for path in paths:
        if not path.is_dir():
            raise CompareError(f"{path}: no such folder")
    dirs = find_run_dirs(paths, list(exclude))
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(_try_read, dirs))
    runs = [r for r in results if isinstance(r, Run)]
    skipped = [(d, r) for d, r in zip(dirs, results, strict=True) if isinstance(r, str)]
    return runs, skipped


def _try_read(path: Path) -> Run | str:
    try:
        return read_run(path)
    except ValueError as err:
        return str(err)
