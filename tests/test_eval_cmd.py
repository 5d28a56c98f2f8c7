"""``pgrun eval RUN_DIR``: rebuilds the agent from the checkpoint's config, evaluates,
prints mean ± std; clear errors for a missing folder, checkpoint or extra."""

from __future__ import annotations

import importlib.util
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from pgrun import evalcmd
from pgrun.train import train
from tests.conftest import compose_config


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("run")
    train(compose_config("total_steps=3000", "eval.interval=1000", "eval.episodes=3",
                         "progress=none"), path)
    return path


def test_eval_reproduces_the_runs_final_evaluation(cli, run_dir):
    out = cli("eval", str(run_dir))
    assert out.returncode == 0, out.stderr
    last = pd.read_csv(run_dir / "eval.csv").iloc[-1]
    m = re.search(r"return (\S+) ± (\S+) over 3 episodes \(deterministic", out.stdout)
    assert m, out.stdout
    assert float(m.group(1)) == pytest.approx(last["return_mean"], abs=0.005)
    assert float(m.group(2)) == pytest.approx(last["return_std"], abs=0.005)
    assert "checkpoint at step" in out.stdout and "complete run" in out.stdout


def test_eval_options(run_dir):
    r = evalcmd.evaluate_run(run_dir, episodes=4, deterministic=False, seed=123)
    assert r["episodes"] == 4 and not r["deterministic"] and r["eval_seed"] == 123
    assert r == evalcmd.evaluate_run(run_dir, episodes=4, deterministic=False, seed=123)


@pytest.mark.parametrize(("args", "message"), [
    (["{missing}"], "no such run folder"),
    (["{empty}"], "has no checkpoint.pt"),
    (["{corrupt}"], "checkpoint.pt is corrupted"),
    (["{run}", "episodes=0"], "episodes=0: must be ≥ 1"),
    (["{run}", "deterministic=maybe"], "must be true or false"),
    (["{run}", "epsiodes=3"], "unknown option 'epsiodes'"),
    ([], "which run?"),
])
def test_eval_errors_are_short_and_clear(capsys, tmp_path, run_dir, args, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / "checkpoint.pt").write_bytes(b"not a checkpoint")
    paths = {"missing": tmp_path / "missing", "empty": tmp_path / "empty",
             "corrupt": tmp_path / "corrupt", "run": run_dir}
    argv = [a.format(**paths) for a in args] or ["episodes=3"]
    assert evalcmd.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_video_without_the_extra_says_what_to_install(capsys, run_dir, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "moviepy" else real(name, *a))
    assert evalcmd.main([str(run_dir), "video=true"]) == 2
    assert "pip install 'pgrun[video]'" in capsys.readouterr().err


def test_video_records_every_episode_into_the_run_folder(run_dir):
    pytest.importorskip("moviepy")
    pytest.importorskip("pygame")
    r = evalcmd.evaluate_run(run_dir, episodes=2, video=True)
    assert len(r["videos"]) == 2
    assert all(p.startswith(str(run_dir / "videos")) and p.endswith(".mp4") for p in r["videos"])
    assert all(Path(p).stat().st_size > 1000 for p in r["videos"])  # frames were written


def test_a_refused_video_leaves_no_videos_folder(tmp_path, run_dir, monkeypatch):
    import pgrun.envs
    from pgrun.config import ConfigError

    pytest.importorskip("moviepy")
    pytest.importorskip("pygame")
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("videos"))

    def refuse(env_cfg, num_envs, *, wrappers, **kwargs):  # refused once RecordVideo is made
        import gymnasium as gym

        wrappers[-1](gym.make("CartPole-v1", render_mode="rgb_array")).close()
        assert (copy / "videos").is_dir()
        raise ConfigError("no env for you")

    monkeypatch.setattr(pgrun.envs, "make_vec_env", refuse)
    with pytest.raises(ConfigError, match="no env for you"):
        evalcmd.evaluate_run(copy, episodes=1, video=True)
    assert not (copy / "videos").exists()


@pytest.mark.slow
def test_video_of_a_vector_ale_run_plays_through_the_wrappers(tmp_path):
    """ALE's vector env renders no frames: the video plays the preset's wrappers."""
    for module in ("ale_py", "cv2", "moviepy"):
        pytest.importorskip(module)
    train(compose_config("env=Pong-v5", "vector=ale", "env.kwargs.num_threads=1",
                         "env.num_envs=2", "algo.num_steps=64", "total_steps=128",
                         "eval.interval=0", "progress=none"), tmp_path)
    r = evalcmd.evaluate_run(tmp_path, episodes=1, video=True)
    assert len(r["videos"]) == 1 and Path(r["videos"][0]).stat().st_size > 1000
    assert -21 <= r["return_mean"] <= 21 and r["length_mean"] > 100  # a whole game


def test_eval_without_a_run_dir_is_a_usage_error(cli):
    out = cli("eval")
    assert out.returncode == 2 and "RUN_DIR is missing" in out.stderr
    assert cli("eval", "--help").returncode == 0
