"""Checks before Hydra makes a run folder, and the folders a refused run leaves behind.

``Preflight`` is a Hydra callback (``hydra.callbacks`` in conf/config.yaml). Before a
single run Hydra creates its folder; ``on_run_start`` comes first, so a configuration
error (``config.validate``: no torch needed) or an unusable ``hydra.run.dir`` (a file, a
name too long, a read-only place) is reported there, exit 2, and no folder is made. It
also warns about keys the schema does not know (``+algo.typo=1``).

In a sweep Hydra makes each job's folder before pgrun sees the job's values; a job that
is refused then removes the folder again when Hydra made it for this job (``made_here``,
``remove_if_made``), so a refusal leaves nothing behind.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from pgrun.config import ConfigError, unknown_keys, validate

STARTED = time.time()
"""When this process loaded pgrun: folders Hydra makes for it are younger."""

NAME_MAX = 255

composed = False
"""Set once Hydra has composed the config: a Hydra exit before that is a config error."""


def made_here(run_dir: Path) -> bool:
    """Whether ``run_dir`` is an empty folder made since this process started (by Hydra,
    for the job at hand), which a refusal should remove again."""
    try:
        return run_dir.stat().st_ctime >= STARTED and not any(run_dir.iterdir())
    except OSError:
        return False


def remove_if_made(run_dir: Path, made: bool) -> None:
    if made:
        try:
            run_dir.rmdir()  # only ever an empty folder
        except OSError:
            pass


def check_folder(path: str, key: str) -> None:
    """ConfigError unless ``path`` is (or can be made as) a folder pgrun can write in; the
    folder is created, as Hydra would a moment later."""
    folder = Path(path)
    for part in folder.parts:
        if len(part.encode()) > NAME_MAX:
            raise ConfigError(
                f"{key}={path[:60]}…: the folder name {part[:40]!r}… is {len(part.encode()):,} "
                f"bytes long; file systems allow {NAME_MAX}. Set a shorter {key} (the default "
                "name includes env.id, so a long env.id needs one).")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        writable = os.access(folder, os.W_OK | os.X_OK)
    except FileExistsError:
        raise ConfigError(f"{key}={path}: a file of that name (or a file above it in the path) "
                          "exists; pgrun needs a folder there. Choose another path.") from None
    except OSError as err:
        raise ConfigError(f"{key}={path}: cannot create the folder ({err.strerror}). Choose a "
                          "path you can write to.") from None
    if not writable:
        raise ConfigError(f"{key}={path}: the folder is not writable. Choose a path you can "
                          "write to.")


def warn_unknown_keys(cfg: DictConfig) -> None:
    """A warning on stderr for each key added with ``+`` that no schema defines."""
    for key in unknown_keys(cfg):
        print(f"pgrun: warning: {key} is not a pgrun setting (no schema in pgrun/config.py "
              "defines it), so nothing reads it. Misspelt? Without the + Hydra names the "
              "keys that exist.", file=sys.stderr, flush=True)


class Preflight(Callback):
    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        global composed
        composed = True
        warn_unknown_keys(config)
        try:
            validate(config)
            HydraConfig.instance().set_config(config)  # as Hydra does next: ${hydra:...} resolves
            check_folder(str(config.hydra.run.dir), "hydra.run.dir")
        except ConfigError as err:
            print(f"pgrun: {err}", file=sys.stderr)
            sys.exit(2)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        global composed
        composed = True
        try:
            HydraConfig.instance().set_config(config)
            check_folder(str(config.hydra.sweep.dir), "hydra.sweep.dir")
        except ConfigError as err:
            print(f"pgrun: {err}", file=sys.stderr)
            sys.exit(2)
