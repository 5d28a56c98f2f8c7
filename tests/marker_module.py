"""Stands for hostile code a run folder's config could name: importing this module, or
calling ``make``, creates the file named by $PGRUN_TEST_MARKER (tests/test_trust.py)."""

from __future__ import annotations

import os
from pathlib import Path


def _touch() -> None:
    if os.environ.get("PGRUN_TEST_MARKER"):
        Path(os.environ["PGRUN_TEST_MARKER"]).touch()


_touch()


def make(**kwargs):
    _touch()
    raise RuntimeError("marker written")
