"""Files of a run folder that are written whole: checkpoint and summary.

Both are written to a temporary file and renamed into place, so a crash mid-write never
leaves a truncated file where a good one stood. Checkpoints hold only tensors and plain
containers, so ``torch.load(..., weights_only=True)`` opens them without running code.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from pathlib import Path

import gymnasium
import torch

import pgrun

CHECKPOINT = "checkpoint.pt"
SUMMARY = "summary.json"


def atomic_write(path: Path, write) -> None:
    """Call ``write(tmp_path)``, fsync, and rename over ``path``."""
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_checkpoint(run_dir: Path, state: dict) -> Path:
    path = run_dir / CHECKPOINT
    atomic_write(path, lambda tmp: torch.save(state, tmp))
    return path


def load_checkpoint(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def write_summary(run_dir: Path, summary: dict) -> Path:
    path = run_dir / SUMMARY
    text = json.dumps(summary, indent=2, allow_nan=False, default=str) + "\n"
    atomic_write(path, lambda tmp: tmp.write_text(text))
    return path


def versions() -> dict:
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
