"""TensorBoard (and W&B) sinks: every CSV column in the event files at the CSV's steps,
the config as hparams and text, no duplicates after a resume, a clear error without the
extra."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pandas as pd
import pytest

import tests.fake_envs  # noqa: F401 (registers FlakyCartPole-v0)
from pgrun.config import ConfigError
from pgrun.train import train
from tests.conftest import REPO, compose_config

TINY = ["total_steps=3000", "eval.interval=1000", "eval.episodes=2", "progress=none"]


def _events(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def _check_table(acc, csv_path, table):
    """Each column of the CSV is the scalar ``table/column``: the same steps, once each,
    in order, and the same values (float32)."""
    frame = pd.read_csv(csv_path)
    tags = set(acc.Tags()["scalars"])
    for column in frame.columns.drop("step"):
        rows = frame[["step", column]].dropna()
        if rows.empty:
            assert f"{table}/{column}" not in tags
            continue
        events = acc.Scalars(f"{table}/{column}")
        assert [e.step for e in events] == list(rows["step"]), column
        assert [e.value for e in events] == pytest.approx(list(rows[column]), rel=1e-6), column


def test_tensorboard_holds_every_csv_column_and_the_config(tmp_path):
    pytest.importorskip("tensorboard")
    train(compose_config(*TINY, "logger.tensorboard=true"), tmp_path)
    acc = _events(tmp_path)
    _check_table(acc, tmp_path / "metrics.csv", "train")
    _check_table(acc, tmp_path / "eval.csv", "eval")
    assert {"train/return_mean", "train/policy_loss", "eval/return_mean"} <= set(
        acc.Tags()["scalars"])
    start = acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    assert b"algo.lr" in start and b"env.id" in start and b"CartPole-v1" in start
    text = acc.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "algo:" in text and "name: ppo" in text


def test_resume_continues_the_events_without_duplicates(tmp_path):
    """The first attempt fails in update 7, after logging updates 5-6 past its checkpoint
    (update 4); the resumed run's events purge those and log every step once."""
    pytest.importorskip("tensorboard")
    flag = tmp_path / "fail"
    flag.touch()
    run = tmp_path / "run"
    overrides = [*TINY, "logger.tensorboard=true", "env.id=FlakyCartPole-v0",
                 f"+env.kwargs.fail_flag={flag}", "+env.kwargs.fail_after=197",
                 "checkpoint.every=4"]
    with pytest.raises(RuntimeError, match="injected failure"):
        train(compose_config(*overrides), run)
    before = _events(run)
    assert len(before.Scalars("train/update")) > 4  # logged past the checkpoint
    flag.unlink()
    summary = train(compose_config(*overrides), run)
    assert summary["status"] == "complete" and summary["resumes"][0]["update"] == 4
    assert len(list(run.glob("events.out.tfevents.*"))) == 2  # one file per attempt
    acc = _events(run)
    _check_table(acc, run / "metrics.csv", "train")
    _check_table(acc, run / "eval.csv", "eval")
    updates = [e.value for e in acc.Scalars("train/update")]
    assert updates == list(range(1, len(updates) + 1))


def test_a_fresh_start_removes_old_event_files(tmp_path):
    pytest.importorskip("tensorboard")
    train(compose_config(*TINY, "logger.tensorboard=true"), tmp_path)
    train(compose_config(*TINY, "logger.tensorboard=true", "resume=false"), tmp_path)
    assert len(list(tmp_path.glob("events.out.tfevents.*"))) == 1
    _check_table(_events(tmp_path), tmp_path / "metrics.csv", "train")


@pytest.mark.parametrize(("key", "module", "extra"), [("tensorboard", "tensorboard", "tb"),
                                                      ("wandb", "wandb", "wandb")])
def test_a_sink_without_its_package_is_refused_before_anything_is_written(
        tmp_path, monkeypatch, key, module, extra):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == module else real(name, *a))
    with pytest.raises(ConfigError, match=rf"pip install -e '\.\[{extra}\]'"):
        train(compose_config(*TINY, f"logger.{key}=true"), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_the_cli_names_the_extra_without_a_traceback(tmp_path):
    """``pgrun train logger.tensorboard=true`` where tensorboard cannot be imported."""
    code = ("import sys; sys.modules['tensorboard'] = None; from pgrun.cli import main; "
            "sys.exit(main(sys.argv[1:]))")
    out = subprocess.run([sys.executable, "-c", code, "train", *TINY, "logger.tensorboard=true",
                          f"hydra.run.dir={tmp_path / 'run'}"], cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    assert "pip install -e '.[tb]'" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "run").exists()


def test_wandb_logs_offline_into_the_run_folder(tmp_path, monkeypatch):
    """Offline by default; the run's record holds the project, group, tags and both tables'
    figures (the .wandb file is binary: its strings are checked)."""
    pytest.importorskip("wandb")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    summary = train(compose_config(*TINY, "logger.wandb=true", "logger.project=pgrun-test",
                                   "logger.group=sweep-g", "logger.tags=[tag-a,tag-b]"), tmp_path)
    assert summary["status"] == "complete"
    (record,) = (tmp_path / "wandb").glob("offline-run-*/run-*.wandb")
    data = record.read_bytes()
    for text in ("pgrun-test", "sweep-g", "tag-a", "tag-b", "train/return_mean",
                 "train/policy_loss", "eval/return_mean", "global_step"):
        assert text.encode() in data, text
