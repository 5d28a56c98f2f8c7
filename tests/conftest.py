"""Shared helpers: compose pgrun's real config in-process, run the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from pgrun.cli import CONF_DIR
from pgrun.config import register

register()
torch.set_num_threads(1)
REPO = Path(__file__).resolve().parent.parent


def compose_config(*overrides: str):
    """The config ``pgrun train <overrides>`` would run with (without the hydra node)."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 300):
    """Run ``python -m pgrun ARGS`` and return the CompletedProcess (text output)."""
    env = {**os.environ, "HYDRA_FULL_ERROR": "", "PYTHONWARNINGS": "ignore"}
    env.pop("HYDRA_FULL_ERROR")
    return subprocess.run([sys.executable, "-m", "pgrun", *args], cwd=cwd or REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def cli():
    return run_cli
