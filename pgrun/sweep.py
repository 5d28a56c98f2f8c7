"""``pgrun train`` as a Hydra task, and the report at the end of a sweep.

Hydra launches the task once per run, in this process (basic launcher), in worker
processes (``hydra/launcher=local``: joblib), or as cluster jobs (``hydra/launcher=slurm``:
submitit). Whatever runs it:

* a single run (``pgrun train``) fails as a command does: a short message and exit 2 for a
  configuration error, exit 1 for a NaN/inf, a traceback otherwise; a signal stops it
  with a checkpoint and exit 128 + the signal number (143 for SIGTERM, 130 for SIGINT);
  ``checkpoint.stop_after_updates`` stops it with exit 0;
* in a sweep (``pgrun train -m``), a run's error never escapes the task (Hydra would stop
  the sweep, or lose it in a worker): it is recorded in the run folder (``error.txt``, the
  message then the traceback; ``summary.json`` status ``failed``) and the sweep goes on.
  ``SweepReport`` (a Hydra callback, ``hydra.callbacks`` in conf/config.yaml) then lists
  the runs that failed or did not finish, with their errors, and ``pgrun`` exits 1.
  Running the same sweep again (same ``hydra.sweep.dir``) skips the complete runs and
  resumes the others from their checkpoints (``resume.py``).
"""

from __future__ import annotations

import logging
import re
import shlex
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from pgrun.config import ConfigError
from pgrun.runfolder import (
    CHECKPOINT,
    COMPLETE,
    ERROR,
    FAILED,
    INTERRUPTED,
    SUMMARY,
    RunFolderError,
    read_summary,
    write_error,
)

log = logging.getLogger("pgrun")


# ----------------------------------------------------------------- the task

def run_train_task(cfg: DictConfig) -> float | None:
    """Hydra's task function for ``pgrun train``: one run into Hydra's output folder."""
    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    if hc.mode == RunMode.MULTIRUN:
        return _sweep_run(cfg, run_dir)
    return _single_run(cfg, run_dir, list(hc.overrides.task))


def _single_run(cfg: DictConfig, run_dir: Path, overrides: list[str]) -> float | None:
    from pgrun.signals import stop_on_signals
    from pgrun.train import NonFiniteError, train  # torch stays out of --help and config errors

    with stop_on_signals() as flag:
        try:
            summary = train(cfg, run_dir, stop=flag)
        except ConfigError as err:
            print(f"pgrun: {err}", file=sys.stderr)
            sys.exit(2)
        except NonFiniteError as err:
            print(f"pgrun: {run_dir}: {err}", file=sys.stderr)
            sys.exit(1)
    if summary["status"] == INTERRUPTED:
        again = [o for o in overrides if not o.startswith(
            ("hydra.run.dir=", "resume=", "checkpoint.stop_after_updates="))]
        command = " ".join(shlex.quote(a) for a in
                           ["pgrun", "train", *again, f"hydra.run.dir={run_dir}"])
        where = (f"checkpoint at update {summary['checkpoint']['update']} (step "
                 f"{summary['checkpoint']['step']:,} of {summary['total_steps']:,}) in {run_dir}"
                 if summary.get("checkpoint") else "no checkpoint: it cannot be resumed")
        print(f"pgrun: stopped ({summary['stop_reason']}); {where}.\n"
              f"Continue it with: {command}", file=sys.stderr)
        sys.exit(128 + flag.signum if flag.signum else 0)
    return summary.get("final_eval_return")


def _sweep_run(cfg: DictConfig, run_dir: Path) -> float | None:
    from pgrun.signals import process_flag

    flag = process_flag()
    if flag.requested:
        log.warning("%s: not started: the sweep was stopped (%s)", run_dir, flag.reason)
        return None
    try:
        from pgrun.train import train

        summary = train(cfg, run_dir, stop=flag)
    except Exception as err:  # noqa: BLE001 (recorded in the run folder, listed at the end)
        message = f"{type(err).__name__}: {err}"
        if not isinstance(err, ConfigError):
            message += "\n\n" + "".join(traceback.format_exception(type(err), err,
                                                                    err.__traceback__))
        run_dir.mkdir(parents=True, exist_ok=True)
        write_error(run_dir, message)
        log.error("%s: failed: %s: %s", run_dir, type(err).__name__, err)
        return None
    return summary.get("final_eval_return")


# --------------------------------------------------------------- the report

@dataclass
class RunStatus:
    path: Path
    status: str  # complete | skipped | failed | interrupted | unfinished
    detail: str = ""


_failed_runs: list[RunStatus] = []


def failed_runs() -> list[RunStatus]:
    """The runs the last sweep of this process did not complete (for the exit status)."""
    return list(_failed_runs)


def _job_order(path: Path, root: Path) -> tuple:
    rel = path.relative_to(root).as_posix()
    m = re.match(r"(\d+)", rel)
    return (int(m.group(1)) if m else sys.maxsize, rel)


def run_statuses(sweep_dir: Path, since: float | None = None) -> list[RunStatus]:
    """The status of every run folder under ``sweep_dir`` (folders with ``.hydra/``), only
    those Hydra (re)launched at or after ``since`` (a time.time()) when given."""
    sweep_dir = Path(sweep_dir)
    slack = 1.0  # file-time granularity
    out = []
    folders = sorted({p.parent.parent for p in sweep_dir.rglob("config.yaml")
                      if p.parent.name == ".hydra"}, key=lambda p: _job_order(p, sweep_dir))
    for run in folders:
        if since is not None and (run / ".hydra" / "config.yaml").stat().st_mtime < since - slack:
            continue
        error = run / ERROR
        if error.is_file() and (since is None or error.stat().st_mtime >= since - slack):
            text = error.read_text(errors="replace").split("\n\n", 1)[0].strip()
            out.append(RunStatus(run, FAILED, f"{text} (see {error})"))
            continue
        try:
            summary = read_summary(run)
        except RunFolderError as err:
            out.append(RunStatus(run, "unfinished", str(err)))
            continue
        if summary is None:
            has_ckpt = (run / CHECKPOINT).is_file()
            out.append(RunStatus(run, "unfinished", "no summary.json: killed before it finished"
                                 + (" (it resumes from its checkpoint)" if has_ckpt
                                    else ", or not started")))
        elif summary["status"] == COMPLETE:
            fresh = since is None or (run / SUMMARY).stat().st_mtime >= since - slack
            out.append(RunStatus(run, COMPLETE if fresh else "skipped",
                                 f"final eval return {summary.get('final_eval_return')}"))
        elif summary["status"] == INTERRUPTED:
            ck = summary.get("checkpoint") or {}
            out.append(RunStatus(run, INTERRUPTED, f"{summary.get('stop_reason')} at update "
                                 f"{ck.get('update')} (step {ck.get('step')})"))
        else:
            out.append(RunStatus(run, FAILED, str(summary.get("error", summary["status"]))))
    return out


def format_report(sweep_dir: Path, statuses: list[RunStatus], argv: list[str] | None = None) -> str:
    counts: dict[str, int] = {}
    for s in statuses:
        counts[s.status] = counts.get(s.status, 0) + 1
    order = (COMPLETE, "skipped", FAILED, INTERRUPTED, "unfinished")
    lines = [f"pgrun sweep {sweep_dir}: {len(statuses)} runs: " + ", ".join(
        f"{counts[k]} {k if k != 'skipped' else 'skipped (already complete)'}"
        for k in order if counts.get(k))]
    bad = [s for s in statuses if s.status in (FAILED, INTERRUPTED, "unfinished")]
    if bad:
        lines.append("Runs that did not complete:")
        for s in bad:
            detail = s.detail.replace("\n", "\n      ")
            lines.append(f"  {s.status.upper():<11} {s.path.relative_to(sweep_dir)}: {detail}")
        if argv is not None:
            again = [a for a in argv if not a.startswith("hydra.sweep.dir=")]
            command = " ".join(shlex.quote(a) for a in
                               ["pgrun", "train", *again, f"hydra.sweep.dir={sweep_dir}"])
            lines.append("Run the same sweep again to redo them (complete runs are skipped, "
                         f"unfinished ones resume from their checkpoints):\n  {command}")
    return "\n".join(lines)


class SweepReport(Callback):
    """Hydra callback: after a multirun, list the runs that failed or did not finish."""

    def __init__(self) -> None:
        self.start: float | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.start = time.time()
        _failed_runs.clear()

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        statuses = run_statuses(sweep_dir, since=self.start)
        _failed_runs[:] = [s for s in statuses if s.status in (FAILED, INTERRUPTED, "unfinished")]
        argv = sys.argv[1:] if sys.argv and sys.argv[0] == "pgrun train" else None
        print(format_report(sweep_dir, statuses, argv), file=sys.stderr if _failed_runs
              else sys.stdout, flush=True)
