"""``pgrun train`` as a Hydra task, and the report at the end of a sweep.

A run's folder gets ``.hydra/`` (config.yaml, hydra.yaml, overrides.yaml, as Hydra writes
them; ``hydra.output_subdir`` is null so that Hydra itself does not) and ``pgrun.log`` only
once the run starts or resumes (``record_start``): a refused run changes nothing.

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
  A run that is *refused* (a configuration error, a folder of another run or locked by
  another writer) leaves its folder exactly as it was. Every job notes itself in
  ``<sweep dir>/.pgrun-jobs/<job>.txt`` when it starts (a refused one writes its message
  there), which is how the report knows the runs this sweep launched.
  ``SweepReport`` (a Hydra callback, ``hydra.callbacks`` in conf/config.yaml) then lists
  the runs that failed or did not finish, with their errors, and ``pgrun`` exits 1.
  Running the same sweep again (same ``hydra.sweep.dir``) skips the complete runs and
  resumes the others from their checkpoints (``resume.py``).
"""

from __future__ import annotations

import copy
import logging
import re
import shlex
import sys
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from pgrun.config import ConfigError, validate
from pgrun.preflight import made_here, remove_if_made, warn_unknown_keys
from pgrun.runfolder import (
    CHECKPOINT,
    COMPLETE,
    ERROR,
    FAILED,
    INTERRUPTED,
    SUMMARY,
    RunFolderError,
    RunFolderWriteError,
    atomic_write,
    read_summary,
    write_error,
)

log = logging.getLogger("pgrun")


# ----------------------------------------------------------------- the task

JOBS = ".pgrun-jobs"
LOG = "pgrun.log"
LOG_FORMAT = "[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"  # Hydra's


def run_train_task(cfg: DictConfig) -> float | None:
    """Hydra's task function for ``pgrun train``: one run into Hydra's output folder."""
    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    made = made_here(run_dir)
    handler: list[logging.Handler] = []

    def on_start(folder: Path) -> None:
        handler.append(record_start(cfg, folder))

    try:
        if hc.mode == RunMode.MULTIRUN:
            return _sweep_run(cfg, run_dir, made, on_start)
        return _single_run(cfg, run_dir, list(hc.overrides.task), made, on_start)
    finally:
        for h in handler:
            logging.getLogger().removeHandler(h)
            h.close()


def record_start(cfg: DictConfig, run_dir: Path, hc: DictConfig | None = None) -> logging.Handler:
    """Write ``.hydra/`` as Hydra would have, and log into ``pgrun.log`` from now on (the
    handler is returned, to be removed at the end of the task). ``hc``: the job's Hydra
    config (default: the current job's)."""
    hc = HydraConfig.get() if hc is None else hc
    out = run_dir / ".hydra"
    out.mkdir(exist_ok=True)
    for name, node in (("config.yaml", cfg), ("hydra.yaml", OmegaConf.create({"hydra": hc})),
                       ("overrides.yaml", hc.overrides.task)):
        text = OmegaConf.to_yaml(node)
        atomic_write(out / name, lambda tmp, text=text: tmp.write_text(text, encoding="utf-8"))
    handler = logging.FileHandler(run_dir / LOG)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.addFilter(_OwnLines(run_dir))
    logging.getLogger().addHandler(handler)
    return handler


class _OwnLines(logging.Filter):
    """A run's ``pgrun.log`` takes the process's lines except other runs' (a line of a run
    names its folder: ``train._Run.log``)."""

    def __init__(self, run_dir: Path):
        super().__init__()
        self.run_dir = str(run_dir)

    def filter(self, record: logging.LogRecord) -> bool:
        return getattr(record, "run_dir", self.run_dir) == self.run_dir


def preflight_env(cfg: DictConfig) -> None:
    """The config's ranges and the environment's name (gymnasium, no torch): the common
    mistakes cost half a second, not torch's import."""
    validate(cfg)
    from pgrun.envs import resolve_spec
    from pgrun.envs.extras import check_env_dependencies, env_id_of
    from pgrun.sinks import check_logger_dependencies

    check_env_dependencies(env_id_of(cfg.env))
    check_logger_dependencies(cfg.get("logger"))
    resolve_spec(cfg.env)


def _single_run(cfg: DictConfig, run_dir: Path, overrides: list[str], made: bool,
                on_start) -> float | None:
    from pgrun.signals import stop_on_signals

    with stop_on_signals() as flag:
        try:
            preflight_env(cfg)
            from pgrun.train import NonFiniteError, train

            try:
                summary = train(cfg, run_dir, stop=flag, on_start=on_start)
            except (NonFiniteError, RunFolderWriteError, OSError) as err:
                print(f"pgrun: {run_dir}: {err}", file=sys.stderr)
                sys.exit(1)
        except ConfigError as err:
            remove_if_made(run_dir, made)
            print(f"pgrun: {err}", file=sys.stderr)
            sys.exit(2)
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


def _sweep_run(cfg: DictConfig, run_dir: Path, made: bool, on_start) -> float | None:
    from pgrun.signals import process_flag

    flag = process_flag()
    note = _job_note(run_dir)
    try:
        note.parent.mkdir(exist_ok=True)
        atomic_write(note, lambda tmp: tmp.write_text(""))
    except (OSError, RunFolderWriteError) as err:
        log.error("%s: cannot note the job in the sweep folder: %s", run_dir, err)
    if flag.requested:
        remove_if_made(run_dir, made)
        log.warning("%s: not started: the sweep was stopped (%s)", run_dir, flag.reason)
        return None
    try:
        warn_unknown_keys(cfg)
        preflight_env(cfg)
        if _deferred is not None:  # the batched launcher trains the chunk's runs together
            _deferred.append(DeferredRun(cfg, run_dir, made, note,
                                         copy.deepcopy(HydraConfig.get())))
            return None
        from pgrun.train import train

        summary = train(cfg, run_dir, stop=flag, on_start=on_start)
    except Exception as err:  # noqa: BLE001 (recorded, listed at the end of the sweep)
        record_job_error(err, run_dir, made, note)
        return None
    return summary.get("final_eval_return")


def record_job_error(err: Exception, run_dir: Path, made: bool, note: Path) -> None:
    """A sweep job's error: in the run's folder where the run had started (error.txt),
    else (refused) in the job's note, the folder left as it was."""
    message = f"{type(err).__name__}: {err}"
    if not isinstance(err, ConfigError):
        message += "\n\n" + "".join(traceback.format_exception(type(err), err,
                                                                err.__traceback__))
    remove_if_made(run_dir, made)
    try:
        if not isinstance(err, ConfigError) and (run_dir / ".hydra" / "config.yaml").is_file():
            write_error(run_dir, message)  # the run had started: its folder records it
        else:  # refused: the folder stays as it was
            atomic_write(note, lambda tmp: tmp.write_text(message + "\n"))
    except RunFolderWriteError as again:  # a full disk: the sweep goes on all the same
        log.error("%s", again)
    log.error("%s: %s: %s: %s", run_dir, "refused" if isinstance(err, ConfigError)
              else "failed", type(err).__name__, err)


# ------------------------------------------------- seed-batched sweep jobs

@dataclass
class DeferredRun:
    """A sweep job that passed its checks, left for ``train_deferred``."""

    cfg: DictConfig
    run_dir: Path
    made: bool
    note: Path
    hydra: DictConfig


_deferred: list[DeferredRun] | None = None


@contextmanager
def deferring():
    """Within the block, sweep jobs are checked and noted but not trained: they collect in
    the yielded list, for ``train_deferred`` (the batched launcher)."""
    global _deferred
    _deferred = jobs = []
    try:
        yield jobs
    finally:
        _deferred = None


def train_deferred(jobs: list[DeferredRun]) -> list[float | None]:
    """Train deferred jobs of one configuration (seeds differ) together
    (``batched.train_seeds``), recording each one's outcome as a sweep job's; returns
    their final eval returns."""
    from pgrun.batched import train_seeds
    from pgrun.signals import process_flag

    handlers: list[logging.Handler] = []

    def on_start(job: DeferredRun):
        return lambda folder: handlers.append(record_start(job.cfg, folder, job.hydra))

    try:
        results = train_seeds([j.cfg for j in jobs], [j.run_dir for j in jobs],
                              stop=process_flag(), on_starts=[on_start(j) for j in jobs])
    except Exception as err:  # noqa: BLE001 (every job records it)
        results = [err] * len(jobs)
    finally:
        for h in handlers:
            logging.getLogger().removeHandler(h)
            h.close()
    out = []
    for job, result in zip(jobs, results, strict=True):
        if isinstance(result, Exception):
            record_job_error(result, job.run_dir, job.made, job.note)
            out.append(None)
        else:
            out.append(result.get("final_eval_return"))
    return out


def _job_note(run_dir: Path) -> Path:
    """``<sweep dir>/.pgrun-jobs/<job subdir>.txt`` for a sweep job's folder."""
    depth = len(Path(str(HydraConfig.get().sweep.subdir)).parts)
    root = run_dir.parents[depth - 1]
    return root / JOBS / (run_dir.relative_to(root).as_posix().replace("/", "__") + ".txt")


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
    """The status of every run folder under ``sweep_dir`` (folders with ``.hydra/``), or,
    with ``since`` (a time.time()), of the jobs launched at or after it (JOBS notes)."""
    sweep_dir = Path(sweep_dir)
    slack = 1.0  # file-time granularity
    out = []
    notes = {sweep_dir / p.stem.replace("__", "/"): p for p in (sweep_dir / JOBS).glob("*.txt")
             if since is None or p.stat().st_mtime >= since - slack}
    folders = set(notes) if since is not None else notes.keys() | {
        p.parent.parent for p in sweep_dir.rglob("config.yaml") if p.parent.name == ".hydra"}
    for run in sorted(folders, key=lambda p: _job_order(p, sweep_dir)):
        refusal = notes[run].read_text(errors="replace").strip() if run in notes else ""
        if refusal:
            text = refusal.split("\n\n", 1)[0]
            out.append(RunStatus(run, FAILED, f"{text} (refused: nothing was written)"))
            continue
        if not (run / ".hydra" / "config.yaml").is_file() and not (run / ERROR).is_file():
            out.append(RunStatus(run, "unfinished", "not started"))
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
