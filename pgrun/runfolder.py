"""The files of a run folder: written whole (checkpoint, summary, error) or row by row
(the CSVs), read back with clear errors.

Checkpoint and summary are written to a temporary file and renamed into place, so a crash
mid-write never leaves a truncated file where a good one stood. Checkpoints hold only
tensors and plain containers, so ``torch.load(..., weights_only=True)`` opens them without
running code: a run folder from someone else never executes anything.

``summary.json`` carries a ``status``: ``complete``, ``interrupted`` (a signal or
``checkpoint.stop_after_updates``: resumable) or ``failed`` (with ``error``; the traceback
is in ``error.txt``). A folder with a checkpoint and no such summary is a run that was
killed: it resumes from the checkpoint.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import platform
import subprocess
from pathlib import Path

import pgrun
from pgrun.config import ConfigError, schema_defaults
from pgrun.metrics import CsvLog
from pgrun.runkeys import without_neutral

CHECKPOINT = "checkpoint.pt"
SUMMARY = "summary.json"
ERROR = "error.txt"
METRICS = "metrics.csv"
EVALS = "eval.csv"

COMPLETE, INTERRUPTED, FAILED = "complete", "interrupted", "failed"



class RunFolderError(ConfigError):
    """A run folder's file cannot be used (corrupted, or from another config): reported as a
    short message naming the file and what to do, no traceback."""


class RunFolderWriteError(RuntimeError):
    """A file of the run folder could not be written (a full disk, say); what stood there
    before is intact. A failure of the run (exit 1), not of its configuration."""


def atomic_write(path: Path, write) -> None:
    """Call ``write(tmp_path)``, fsync, and rename over ``path``. If that fails, the
    temporary file is removed and RunFolderWriteError says why; ``path`` is untouched."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except Exception as err:  # noqa: BLE001 (torch reports a full disk as a RuntimeError)
        tmp.unlink(missing_ok=True)
        kept = f"; the {path.name} that was there before is intact" if path.exists() else ""
        raise RunFolderWriteError(f"could not write {path}: {_write_failure(err, path)}{kept}.") \
            from err


def _write_failure(err: Exception, path: Path) -> str:
    import shutil

    reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    try:
        free = shutil.disk_usage(path.parent).free
    except OSError:
        return reason
    if isinstance(err, OSError) or free < 64 * 2**20:
        return f"{reason} ({free / 2**20:,.0f} MiB free on its disk)"
    return reason


def save_checkpoint(run_dir: Path, state: dict) -> Path:
    import torch

    path = run_dir / CHECKPOINT
    atomic_write(path, lambda tmp: torch.save(state, tmp))
    return path


def load_checkpoint(path: Path) -> dict:
    """The checkpoint's contents, loaded without executing code (``weights_only``); a file
    that is not a readable pgrun checkpoint raises RunFolderError naming it."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise RunFolderError(f"{path}: no such checkpoint.")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 (zip, unpickling and weights-only errors alike)
        reason = str(err).strip().splitlines()[0].split(". ")[0] if str(err).strip() \
            else type(err).__name__
        if reason.startswith("Weights only load failed"):
            reason = ("it is damaged, or holds objects other than tensors and plain containers, "
                      "which pgrun never loads")
        raise RunFolderError(
            f"{path} is corrupted or not a pgrun checkpoint, so it was not loaded ({reason}). "
            "Restore it from a copy, or start the run over in this folder with resume=false "
            "(overwrites its metrics), or in a new folder.") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("agent"), dict) \
            or not isinstance(ckpt.get("config"), dict):
        raise RunFolderError(f"{path} is not a pgrun checkpoint (no agent weights or config); "
                             "it was not loaded.")
    return ckpt


def finite_or_none(value):
    """``value`` with every NaN or ±inf float (at any depth) replaced by None: JSON has no
    such numbers, and a summary must be writable whatever the run produced."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_none(v) for v in value]
    return value


def write_summary(run_dir: Path, summary: dict) -> Path:
    path = run_dir / SUMMARY
    text = json.dumps(finite_or_none(summary), indent=2, allow_nan=False, default=str) + "\n"
    atomic_write(path, lambda tmp: tmp.write_text(text))
    return path


def read_summary(run_dir: Path) -> dict | None:
    """summary.json as a dict (``status`` filled in as complete for summaries written before
    it existed), None when there is none; RunFolderError when it cannot be parsed."""
    path = Path(run_dir) / SUMMARY
    if not path.is_file():
        return None
    try:
        summary = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise RunFolderError(f"{path} is corrupted ({err}); it was not used.") from None
    if not isinstance(summary, dict):
        raise RunFolderError(f"{path} is corrupted (not a JSON object); it was not used.")
    summary.setdefault("status", COMPLETE)
    return summary


def write_error(run_dir: Path, text: str) -> Path:
    """error.txt: the error message on the first line, then the traceback."""
    path = Path(run_dir) / ERROR
    atomic_write(path, lambda tmp: tmp.write_text(text if text.endswith("\n") else text + "\n"))
    return path


def clear_error(run_dir: Path) -> None:
    (Path(run_dir) / ERROR).unlink(missing_ok=True)


# ------------------------------------------------------------------- config identity

def config_identity(config: dict) -> dict:
    """The resolved config without the result-neutral keys (``runkeys.RESULT_NEUTRAL``) and
    without the keys at their schema default (``config.schema_defaults``): what makes two
    runs the same run. A key added to pgrun after a run was made is absent from its config
    and at its default in today's: the same run."""
    return _without_defaults(without_neutral(config), schema_defaults(config))


_NO_DEFAULT = object()


def _without_defaults(tree: dict, defaults: dict) -> dict:
    kept = {}
    for key, value in tree.items():
        default = defaults.get(key, _NO_DEFAULT)
        if isinstance(value, dict) and isinstance(default, dict) and default:
            value = _without_defaults(value, default)
            if not value:
                continue
        elif value == default:
            continue
        kept[key] = value
    return kept


def config_hash(config: dict) -> str:
    text = json.dumps(config_identity(config), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _flatten(d, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def config_diff(old: dict, new: dict, limit: int = 6) -> str:
    """``key: old → new`` for the identity keys that differ (at most ``limit``); a key
    at its default shows the default."""
    a, b = _flatten(config_identity(old)), _flatten(config_identity(new))
    defaults = _flatten(schema_defaults(new))
    keys = sorted(k for k in a.keys() | b.keys() if a.get(k, "<unset>") != b.get(k, "<unset>"))

    def shown(values: dict, key: str):
        return values.get(key, defaults.get(key, "<unset>"))
    parts = [f"{k}: {shown(a, k)} → {shown(b, k)}" for k in keys[:limit]]
    if len(keys) > limit:
        parts.append(f"… {len(keys) - limit} more")
    return "; ".join(parts)


# ------------------------------------------------------------------------------ CSVs

class RunCsv(CsvLog):
    """metrics.csv / eval.csv: a CsvLog that can also reopen an existing file keeping only
    its first ``keep_rows`` rows (those a checkpoint accounts for), and fsync on demand
    (before a checkpoint, so a checkpoint never counts rows the disk has not got)."""

    def __init__(self, path: Path, columns: list[str], keep_rows: int | None = None):
        self._kept: list[list[str]] = []
        if keep_rows is None:
            super().__init__(path, columns)
            return
        rows = _read_rows(path, columns, keep_rows)
        self._kept = rows[:keep_rows]
        with_header = [columns, *self._kept]

        def write(tmp):
            with open(tmp, "w", newline="") as f:
                csv.writer(f).writerows(with_header)

        atomic_write(path, write)
        self.columns = columns
        self._file = open(path, "a", newline="")  # noqa: SIM115 (closed in close())
        self._writer = csv.writer(self._file)

    def kept_rows(self) -> list[dict[str, str]]:
        """The rows kept from the file when it was reopened (as text; none for a new file)."""
        return [dict(zip(self.columns, row, strict=True)) for row in self._kept]

    def sync(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())


def _read_rows(path: Path, columns: list[str], need: int) -> list[list[str]]:
    """The data rows of a run CSV (at least ``need`` whole ones), or RunFolderError."""
    what = f"{path.name} in {path.parent}"
    try:
        with open(path, newline="") as f:
            lines = list(csv.reader(f))
    except FileNotFoundError:
        lines = []
    except (OSError, csv.Error, UnicodeDecodeError) as err:
        raise RunFolderError(f"{what} cannot be read ({err}); the checkpoint cannot be "
                             "resumed without it. Start over with resume=false.") from None
    if need == 0 and not lines:
        return []
    if not lines or lines[0] != columns:
        raise RunFolderError(f"{what} is missing or has other columns than this version of "
                             "pgrun writes, so the run cannot be resumed into it. Start over with "
                             "resume=false, or in a new folder.")
    rows = lines[1:]
    if len(rows) < need or any(len(r) != len(columns) for r in rows[:need]):
        raise RunFolderError(f"{what} has {len(rows)} rows but the checkpoint accounts for {need}: "
                             "rows were lost or damaged, so the run cannot be resumed into it. "
                             "Start over with resume=false, or in a new folder.")
    return rows


def versions() -> dict:
    import gymnasium
    import torch

    return {"pgrun": pgrun.__version__, "torch": torch.__version__,
            "gymnasium": gymnasium.__version__, "python": platform.python_version()}


def git_revision() -> dict | None:
    """The checkout's commit and whether it has uncommitted changes; None outside git."""
    src = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=src, capture_output=True,
                             text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=src, capture_output=True, text=True, timeout=5,
                               check=True).stdout.strip() != ""
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": rev, "dirty": dirty}
