"""Extra log sinks beside the run folder's CSVs: TensorBoard and Weights & Biases.

metrics.csv and eval.csv stay the source of truth: ``Table.write`` writes the CSV row first
and then hands the same row to every sink, under the table's name (``train`` for
metrics.csv, ``eval`` for eval.csv), at x = the row's ``step`` (environment steps). Sinks
are switched on with ``logger.tensorboard=true`` / ``logger.wandb=true`` and never change
what a run computes (``logger`` is result-neutral: a run resumes or is skipped whatever
its sinks).

Resume: a resumed run starts a new TensorBoard events file with ``purge_step`` at the
checkpoint's step, so TensorBoard drops what the killed attempt logged from that step on,
and the CSV rows it kept at or after that step are written again (``Table.replay``):
every step then appears once, with the values the CSVs hold.
"""

from __future__ import annotations

import importlib.util
import math
import os
import socket
import time
from pathlib import Path

from pgrun.config import ConfigError

EXTRAS = {"tensorboard": ("tensorboard", "tb"), "wandb": ("wandb", "wandb")}
"""``logger.<key>``: (module it needs, pgrun extra that installs it)."""


def check_logger_dependencies(logger_cfg) -> None:
    """ConfigError naming the extra to install for a sink that is on but whose package is
    missing (called before anything is written)."""
    for key, (module, extra) in EXTRAS.items():
        if logger_cfg is not None and logger_cfg.get(key) and importlib.util.find_spec(module) is None:
            raise ConfigError(
                f"logger.{key}=true needs the {module} package, which is not installed in this "
                f"Python environment. Install pgrun's {extra} extra: pip install -e '.[{extra}]' "
                f"(from the pgrun checkout), or run without logger.{key}=true; metrics.csv and "
                "eval.csv are written either way.")


def _numbers(row: dict) -> dict[str, float]:
    """The row's figures as floats, blanks (None, NaN, '') left out."""
    out = {}
    for key, value in row.items():
        try:
            x = float(value)
        except (TypeError, ValueError):
            continue
        if not math.isnan(x):
            out[key] = x
    return out


def _flat(tree: dict, prefix: str = "") -> dict:
    """A nested config as {dotted key: int | float | str | bool} (lists and None as text)."""
    out = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flat(value, name + "."))
        else:
            out[name] = value if isinstance(value, int | float | str | bool) else str(value)
    return out


class TensorBoardSink:
    """An events file in the run folder: each table's columns as scalars
    ``<table>/<column>`` (one event per row, written and flushed in the calling thread:
    SummaryWriter's writer thread, contending for the GIL, cost several ms a row), the
    resolved config as hparams and as text at step 0 of a fresh run."""

    purges_on_resume = True

    def __init__(self, run_dir: Path, config: dict, yaml: str, purge_step: int | None):
        from tensorboard.compat.proto.event_pb2 import Event, SessionLog
        from tensorboard.compat.proto.summary_pb2 import Summary
        from tensorboard.summary.writer.record_writer import RecordWriter

        self._event, self._summary = Event, Summary
        self._file = open(_events_path(run_dir), "wb")  # noqa: SIM115 (closed in close())
        self._records = RecordWriter(self._file)
        self._add(Event(wall_time=time.time(), file_version="brain.Event:2"))
        if purge_step is not None:  # TensorBoard drops the steps >= purge_step logged before
            self._add(Event(wall_time=time.time(), step=purge_step,
                            session_log=SessionLog(status=SessionLog.START)))
        else:
            from torch.utils.tensorboard.summary import hparams, text

            for part in (*hparams(_flat(config), {"eval/return_mean": math.nan}),
                         text("config", "    " + yaml.replace("\n", "\n    "))):
                self._add(Event(wall_time=time.time(), step=0, summary=part))
        self._file.flush()

    def _add(self, event) -> None:
        self._records.write(event.SerializeToString())

    def write(self, table: str, row: dict) -> None:
        values = [self._summary.Value(tag=f"{table}/{k}", simple_value=v)
                  for k, v in _numbers(row).items() if k != "step"]
        self._add(self._event(wall_time=time.time(), step=int(row["step"]),
                              summary=self._summary(value=values)))
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def _events_path(run_dir: Path) -> Path:
    """A new events file, named to sort after the folder's earlier ones (TensorBoard reads
    them in name order; the name starts with the time in seconds)."""
    stamps = [int(p.name.split(".")[3]) for p in run_dir.glob("events.out.tfevents.*")
              if p.name.split(".")[3].isdigit()]
    stamp = max([int(time.time()), *(t + 1 for t in stamps)])
    return run_dir / f"events.out.tfevents.{stamp:010d}.{socket.gethostname()}.{os.getpid()}.pgrun"


class WandbSink:
    """A Weights & Biases run in the run folder (``wandb/``), offline unless the user's
    ``WANDB_MODE`` says otherwise; one W&B run id per run folder, so a resumed run
    continues the same W&B run. W&B cannot drop rows, so what a killed attempt logged
    after its last checkpoint shows twice there (the CSVs and TensorBoard hold it once)."""

    purges_on_resume = False

    def __init__(self, run_dir: Path, config: dict, logger_cfg, resumed: bool):
        import wandb

        self.run = wandb.init(
            mode=os.environ.get("WANDB_MODE") or "offline",  # nothing leaves the machine unasked
            project=logger_cfg.project, group=logger_cfg.group, tags=list(logger_cfg.tags),
            name=run_dir.name, dir=str(run_dir), config=config,
            id=_wandb_id(run_dir), resume="allow" if resumed else None)
        self.run.define_metric("global_step")
        self.run.define_metric("*", step_metric="global_step")

    def write(self, table: str, row: dict) -> None:
        values = {f"{table}/{k}": v for k, v in _numbers(row).items() if k != "step"}
        self.run.log({**values, "global_step": int(row["step"])})

    def close(self) -> None:
        self.run.finish()


def _wandb_id(run_dir: Path) -> str:
    import hashlib

    return hashlib.sha1(str(run_dir.resolve()).encode()).hexdigest()[:16]


def open_sinks(logger_cfg, run_dir: Path, config: dict, yaml: str,
               resume_step: int | None) -> list:
    """The sinks ``logger`` switches on; ``resume_step``: the checkpoint's step when the
    run resumes (None for a fresh run)."""
    sinks: list = []
    if logger_cfg is None:
        return sinks
    if logger_cfg.get("tensorboard"):
        sinks.append(TensorBoardSink(run_dir, config, yaml, resume_step))
    if logger_cfg.get("wandb"):
        sinks.append(WandbSink(run_dir, config, logger_cfg, resume_step is not None))
    return sinks


class Table:
    """One run CSV (metrics.csv or eval.csv) and the sinks: ``write`` puts the row in the
    CSV (the source of truth), then in each sink."""

    def __init__(self, csv, name: str, sinks: list):
        self.csv, self.name, self.sinks = csv, name, sinks

    def write(self, row: dict) -> None:
        self.csv.write(row)
        for sink in self.sinks:
            sink.write(self.name, row)

    def replay(self, from_step: int) -> None:
        """Hand the sinks again the CSV's kept rows at ``step >= from_step`` (on resume:
        those the new events file's purge dropped)."""
        purging = [s for s in self.sinks if s.purges_on_resume]
        for row in self.csv.kept_rows():
            if float(row["step"]) >= from_step:
                for sink in purging:
                    sink.write(self.name, row)

    def sync(self) -> None:
        self.csv.sync()

    def close(self) -> None:
        self.csv.close()
