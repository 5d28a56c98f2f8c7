"""What ``pgrun train`` does with the run folder it is pointed at.

``resume=auto`` (the default):

* the folder holds a complete run of the same config (summary.json ``status: complete``,
  same ``config_hash``) → skip it: nothing is trained or rewritten (a rerun sweep redoes
  only what did not finish);
* it holds a checkpoint of an unfinished run (killed, interrupted, failed) of the same
  config → resume from the checkpoint;
* it holds nothing of the kind → start the run;
* it holds a run of *another* config → refuse (RunFolderError), rather than mix two runs
  in one folder or overwrite one.

``resume=true`` is the same but requires a checkpoint; ``resume=false`` starts over,
deleting the folder's checkpoint, summary and error file first (once the run is built and
holds the folder's lock: ``plan_run`` itself changes nothing).

"Same config" leaves out the result-neutral keys of ``runkeys.RESULT_NEUTRAL`` (progress
display, resume mode, checkpoint settings, ...), which do not change what a run computes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from pgrun.checkpoint import FORMAT
from pgrun.runfolder import (
    CHECKPOINT,
    COMPLETE,
    ERROR,
    SUMMARY,
    RunFolderError,
    config_diff,
    config_hash,
    load_checkpoint,
    read_summary,
)

log = logging.getLogger("pgrun")

START_OVER = ("Use a new folder (another hydra.run.dir / hydra.sweep.dir), or pass "
              "resume=false to start over in this one (deletes its checkpoint and rewrites "
              "its metrics).")


@dataclass
class Plan:
    action: str  # "fresh" | "resume" | "skip"
    checkpoint: dict | None = None
    summary: dict | None = None


def plan_run(run_dir: Path, config: dict, resume) -> Plan:
    """Decide from the folder's files, changing none of them (a "fresh" run calls
    ``start_over`` once it is ready to write); raises RunFolderError with what to do
    instead."""
    run_dir = Path(run_dir)
    if resume is False:
        return Plan("fresh")

    ckpt_path = run_dir / CHECKPOINT
    want = config_hash(config)
    try:
        summary = read_summary(run_dir)
    except RunFolderError as err:
        if not ckpt_path.exists():
            raise RunFolderError(f"{err} There is no checkpoint to resume from. "
                                 f"{START_OVER}") from None
        log.warning("%s Resuming from %s, which rewrites it.", err, ckpt_path)
        summary = None

    ckpt = None
    if summary is not None and summary["status"] == COMPLETE:
        have = summary.get("config_hash")
        if have != want and ckpt_path.exists():  # none yet, or an older pgrun's identity
            ckpt = load_checkpoint(ckpt_path)
            have = config_hash(ckpt["config"])
        if have == want:
            return Plan("skip", summary=summary)
        if ckpt is None and ckpt_path.exists():
            try:
                ckpt = load_checkpoint(ckpt_path)
            except RunFolderError:
                pass
        diff = config_diff(ckpt["config"], config) if ckpt is not None else ""
        raise RunFolderError(
            f"{run_dir} holds a complete run of another configuration"
            f"{f' ({diff})' if diff else ''}. {START_OVER}")

    if not ckpt_path.exists():
        if resume is True:
            raise RunFolderError(f"resume=true, but {run_dir} has no {CHECKPOINT} to resume "
                                 "from. Leave resume at auto to start the run.")
        return Plan("fresh")

    ckpt = ckpt or load_checkpoint(ckpt_path)
    if ckpt.get("format") != FORMAT:
        raise RunFolderError(
            f"{ckpt_path} was written by an older pgrun (checkpoint format "
            f"{ckpt.get('format')}, this one resumes format {FORMAT}); `pgrun eval` can still "
            f"evaluate it. {START_OVER}")
    if config_hash(ckpt["config"]) != want:
        raise RunFolderError(
            f"{ckpt_path} is a checkpoint of another configuration "
            f"({config_diff(ckpt['config'], config)}). {START_OVER}")
    return Plan("resume", checkpoint=ckpt)


def start_over(run_dir: Path) -> None:
    """Delete what an earlier run left that a fresh run would not overwrite at once
    (TensorBoard's event files included: they would show the old run beside the new)."""
    for name in (CHECKPOINT, SUMMARY, ERROR):
        (run_dir / name).unlink(missing_ok=True)
    for events in run_dir.glob("events.out.tfevents.*"):
        events.unlink()
