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
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from pgrun.compare import configdata

CONFIG = Path(".hydra") / "config.yaml"
METRICS, EVAL, SUMMARY = "metrics.csv", "eval.csv", "summary.json"
COMPLETE, INTERRUPTED, FAILED = "complete", "interrupted", "failed"
"""summary.json's statuses (as ``pgrun.runfolder`` writes them; a summary without a status,
from an older pgrun, is complete)."""
UNFINISHED = "unfinished"
"""A run without summary.json: still running, or killed."""
MAX_SUMMARY_BYTES = 10_000_000
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
    config: dict[str, Any]  # the config as data, flattened to dotted keys
    eval: Curve | None  # eval.csv return_mean by step (greedy evaluation)
    train: Curve | None  # metrics.csv return_mean by step (training episodes)
    wall_time_s: float
    sps: float
    status: str  # summary.json's status; UNFINISHED while there is none (running or killed)
    dropped_rows: dict[str, int]  # "<file>: <cause>" → lines of the CSVs left out
    error: str = ""  # summary.json's error message of a failed run

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


def read_config(path: Path) -> dict[str, Any]:
    """The run's config (``.hydra/config.yaml``) as flat data (see ``configdata``);
    ValueError when it is not data or a number the comparison uses is not a number."""
    if path.stat().st_size > configdata.MAX_BYTES:
        raise configdata.ConfigDataError(f"larger than {configdata.MAX_BYTES:,} bytes")
    config = configdata.read(path.read_text(errors="replace"))
    for key in NUMERIC_KEYS:
        value = config.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise configdata.ConfigDataError(f"{key} is {str(value)[:40]!r}, not a number")
    return config


NUMERIC_KEYS = ("env.reward_threshold", "env.random_score", "env.reference_score")


def read_csv(path: Path, columns: list[str]) -> tuple[pd.DataFrame, Counter]:
    """The named columns of a run CSV as floats (missing file or columns: no rows/NaN),
    and the count of lines dropped, by cause.

    The project's writer ends each row with a newline and flushes it, so text after the
    last newline is a row still being written and is dropped; lines with the wrong number
    of fields are dropped; cells that do not parse as numbers become NaN.
    """
    dropped: Counter = Counter()
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return pd.DataFrame(columns=columns, dtype=float), dropped
    end = data.rfind(b"\n") + 1
    if data[end:].strip():
        dropped["a half-written last line"] += 1
    data = data[:end]
    header = data.split(b"\n", 1)[0]
    present = [c for c in columns if c in header.decode(errors="replace").strip().split(",")]
    lines = data.count(b"\n") - 1
    if not present or lines < 1:
        return pd.DataFrame(columns=columns, dtype=float), dropped
    width = header.count(b",")
    if data.count(b",") != width * (lines + 1):  # some line has a field too many or few
        rows = data.split(b"\n")[1:-1]
        good = [row for row in rows if row.count(b",") == width]
        dropped["a line with the wrong number of fields"] += len(rows) - len(good)
        data = b"\n".join([header, *good, b""])
    try:
        frame = pd.read_csv(io.BytesIO(data), usecols=present, dtype=float, engine="c")
    except ValueError:  # a cell that is not a number
        frame = pd.read_csv(io.BytesIO(data), usecols=present, dtype=str, engine="c")
        frame = frame.apply(pd.to_numeric, errors="coerce")
    return frame.reindex(columns=columns), dropped


def _curve(frame: pd.DataFrame, dropped: Counter, blank_return_ok: bool) -> Curve | None:
    """Rows with a finite step and return, in step order (None when there are none);
    ``dropped`` counts the rows left out, by cause. A metrics.csv row without a return
    (no episode ended since the last update) is no data rather than a bad row."""
    steps, returns = frame["step"].to_numpy(), frame["return_mean"].to_numpy()
    good = np.isfinite(steps) & np.isfinite(returns)
    bad_step = ~np.isfinite(steps)
    bad_return = np.isfinite(steps) & ~np.isfinite(returns)
    if blank_return_ok:
        bad_return &= ~np.isnan(returns)
    if bad_step.any():
        dropped["no numeric step"] += int(bad_step.sum())
    if bad_return.any():
        dropped["a blank, NaN or infinite return"] += int(bad_return.sum())
    frame = frame[good]
    if frame.empty:
        return None
    frame = frame.sort_values("step", kind="stable")
    repeated = frame["step"].duplicated(keep="last")
    if repeated.any():
        dropped["a repeated step (the last row kept)"] += int(repeated.sum())
        frame = frame[~repeated]
    return Curve(frame["step"].to_numpy(), frame["return_mean"].to_numpy())


def read_run(path: Path) -> Run:
    """Read one run folder; raises ValueError (the reason) when it cannot be used."""
    try:
        config = read_config(path / CONFIG)
    except IsADirectoryError:
        raise ValueError(".hydra/config.yaml is a directory") from None
    except OSError as err:
        raise ValueError(f".hydra/config.yaml unreadable ({err.strerror})") from None
    except (ValueError, RecursionError) as err:
        raise ValueError(f".hydra/config.yaml is not plain data: {err}") from None
    if not (path / METRICS).exists() and not (path / EVAL).exists():
        raise ValueError("no metrics.csv or eval.csv (the run stopped before its first update?)")
    summary = _read_summary(path / SUMMARY)
    frames = {}
    dropped: dict[str, Counter] = {}
    for name, columns in ((METRICS, ["step", "time_s", "return_mean"]),
                          (EVAL, ["step", "return_mean"])):
        try:
            frames[name], dropped[name] = read_csv(path / name, columns)
        except IsADirectoryError:
            raise ValueError(f"{name} is a directory") from None
        except OSError as err:
            raise ValueError(f"{name} unreadable ({err.strerror})") from None
    train_curve = _curve(frames[METRICS], dropped[METRICS], blank_return_ok=True)
    eval_curve = _curve(frames[EVAL], dropped[EVAL], blank_return_ok=False)
    if train_curve is None and eval_curve is None:
        raise ValueError("metrics.csv and eval.csv have no complete rows yet")
    wall, sps = summary.get("wall_time_s"), summary.get("sps")
    if wall is None or sps is None:  # in progress: the last logged row
        timed = frames[METRICS].dropna(subset=["step", "time_s"])
        wall = float(timed["time_s"].iloc[-1]) if len(timed) else math.nan
        sps = float(timed["step"].iloc[-1]) / wall if len(timed) and wall > 0 else math.nan
    status = summary.get("status", COMPLETE) if summary else UNFINISHED
    rows = {f"{name}: {cause}": n for name, causes in dropped.items()
            for cause, n in causes.items()}
    error = " ".join(str(summary.get("error") or "").split())[:200]  # one line
    return Run(path, config, eval_curve, train_curve, float(wall), float(sps), status, rows,
               error)


STATUSES = (COMPLETE, INTERRUPTED, FAILED)
_NUMBERS = ("wall_time_s", "sps", "steps")


def _read_summary(path: Path) -> dict:
    """summary.json checked ({} when there is none yet); ValueError when it is not a JSON
    object with a known status and numbers where numbers belong. Read here, not with
    pgrun.runfolder, which imports torch."""
    try:
        if path.stat().st_size > MAX_SUMMARY_BYTES:
            raise ValueError(f"summary.json is larger than {MAX_SUMMARY_BYTES:,} bytes")
        summary = json.loads(path.read_text(errors="replace"))
    except FileNotFoundError:
        return {}
    except IsADirectoryError:
        raise ValueError("summary.json is a directory") from None
    except OSError as err:
        raise ValueError(f"summary.json unreadable ({err.strerror})") from None
    except (json.JSONDecodeError, RecursionError):
        raise ValueError("summary.json is not valid JSON") from None
    if not isinstance(summary, dict):
        raise ValueError(f"summary.json is a JSON {type(summary).__name__}, not an object")
    status = summary.get("status", COMPLETE)
    if status not in STATUSES:
        raise ValueError(f"summary.json has status {str(status)[:40]!r}, not one of "
                         f"{', '.join(STATUSES)}")
    for key in _NUMBERS:
        value = summary.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise ValueError(f"summary.json's {key} is a {type(value).__name__}, not a number")
    return summary


def find_run_dirs(paths: list[Path], exclude: list[Path]) -> tuple[list[Path], list[tuple]]:
    """Run folders under ``paths`` (recursively; not inside a run, a hidden folder, a
    ``compare/`` output folder or ``exclude``), sorted, and (folder, reason) for folders
    passed over. Symbolic links to folders are followed, each real folder once: a link
    back to a folder already searched (a loop, or a second link) is passed over."""
    excluded = {p.resolve() for p in exclude}
    found: dict[Path, None] = {}
    passed: list[tuple] = []
    seen: dict[str, Path] = {}
    for root in paths:
        for dirpath, dirnames, _ in os.walk(root, followlinks=True):
            here = Path(dirpath)
            real = os.path.realpath(here)
            if real in seen:
                passed.append((here, f"a symbolic link to {seen[real]}, already searched"))
                dirnames.clear()
                continue
            seen[real] = here
            config = here / CONFIG
            if config.is_file() or config.is_dir():
                found.setdefault(here, None)
                dirnames.clear()  # a run folder holds no runs
                continue
            dirnames[:] = sorted(
                d for d in dirnames
                if not d.startswith(".") and d != OUTPUT_DIR_NAME
                and (here / d).resolve() not in excluded)
    return list(found), passed


def load_runs(paths: list[Path], exclude: list[Path] = ()) -> tuple[list[Run], list[tuple]]:
    """Every usable run under ``paths``, and (folder, reason) for each folder skipped."""
    for path in paths:
        if not path.is_dir():
            raise CompareError(f"{path}: no such folder")
    dirs, skipped = find_run_dirs(paths, list(exclude))
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(_try_read, dirs))
    runs = [r for r in results if isinstance(r, Run)]
    skipped += [(d, r) for d, r in zip(dirs, results, strict=True) if isinstance(r, str)]
    fill_added_keys(runs)
    return runs, skipped


def fill_added_keys(runs: list[Run]) -> None:
    """A key added to pgrun after a run was made is absent from that run's config and
    means the schema's default (as ``runfolder.config_identity`` reads it, for resuming):
    give it that value where other runs have the key, so runs made before and after the
    key was added group together. Keys the schema does not know (another algorithm's, a
    user's ``+key``) stay absent, as does a default mapping whose entries the run sets."""
    keys = set().union(*(run.config for run in runs)) if runs else set()
    defaults_of: dict[Any, dict[str, Any]] = {}
    for run in runs:
        missing = keys - run.config.keys()
        if not missing:
            continue
        algo = run.config.get("algo.name")
        if algo not in defaults_of:
            from pgrun.config import schema_defaults  # the algorithms' Configs: torch, once

            defaults_of[algo] = configdata.flatten(schema_defaults({"algo": {"name": algo}}))
        defaults = defaults_of[algo]
        for key in missing & defaults.keys():
            if not any(k.startswith(key + ".") for k in run.config):
                run.config[key] = defaults[key]


def _try_read(path: Path) -> Run | str:
    try:
        return read_run(path)
    except ValueError as err:
        return str(err)
