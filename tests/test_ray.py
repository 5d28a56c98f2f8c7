"""Sweeps through Hydra's Ray launcher (``hydra/launcher=ray_cpu``) on a real Ray cluster:
a head started with ``ray start`` on localhost (2 CPUs), the launcher joining it by
address, as it would join a multi-node cluster. A 4-run sweep completes; a Ray worker
killed mid-run leaves a run that the sweep lists as unfinished (the others complete) and
that the sweep's rerun resumes from its checkpoint."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import REPO

pytest.importorskip("hydra_plugins.hydra_ray_launcher")
RAY = Path(sys.executable).parent / "ray"
ENV = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONWARNINGS": "ignore"}
ENV.pop("HYDRA_FULL_ERROR", None)
RUN_FILES = (".hydra/config.yaml", "metrics.csv", "eval.csv", "checkpoint.pt", "summary.json")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_address():
    """A Ray head on localhost for this module; ``ray start --block`` stops what it
    started when it is terminated (so no other Ray on the machine is touched)."""
    port = _free_port()
    temp = tempfile.mkdtemp(prefix="pgrun-ray-", dir="/tmp")  # short: Ray's socket paths
    head = subprocess.Popen(
        [str(RAY), "start", "--head", "--block", f"--port={port}", "--num-cpus=2",
         "--node-ip-address=127.0.0.1", "--include-dashboard=false", "--disable-usage-stats",
         f"--temp-dir={temp}"], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True)
    seen = []
    deadline = time.monotonic() + 120
    for line in head.stdout:
        seen.append(line)
        if "Ray runtime started" in line or time.monotonic() > deadline:
            break
    if "Ray runtime started" not in "".join(seen):
        head.kill()
        pytest.fail("ray start failed:\n" + "".join(seen))
    try:
        yield f"127.0.0.1:{port}"
    finally:
        head.send_signal(signal.SIGTERM)
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
        shutil.rmtree(temp, ignore_errors=True)


def _sweep(address: str, sweep_dir: Path, *extra: str, background: bool = False):
    args = [sys.executable, "-m", "pgrun", "train", "-m", "hydra/launcher=ray_cpu",
            f"hydra.launcher.ray.init.address={address}", f"hydra.sweep.dir={sweep_dir}",
            "seed=0,1,2,3", "eval.episodes=2", "progress=none", *extra]
    if background:
        return subprocess.Popen(args, cwd=REPO, env=ENV, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
    return subprocess.run(args, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)


def _summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


def _runs(sweep_dir: Path) -> list[Path]:
    return sorted(p for p in sweep_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def test_a_four_run_sweep_runs_on_the_ray_cluster(ray_address, tmp_path):
    out = _sweep(ray_address, tmp_path, "total_steps=1000", "eval.interval=500")
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    port = ray_address.rsplit(":", 1)[1]
    assert re.search(rf"Connecting to existing Ray cluster at address: \S+:{port}", text), text
    assert "4 runs: 4 complete" in out.stdout
    workers = set(re.findall(r"\(_run_job pid=(\d+)\)", text))  # Ray's task log prefix
    assert workers and str(os.getpid()) not in workers
    runs = _runs(tmp_path)
    assert [r.name for r in runs] == [f"{i}_ppo_CartPole-v1_s{i}" for i in range(4)]
    for run in runs:
        assert all((run / f).is_file() for f in RUN_FILES), run
        assert _summary(run)["status"] == "complete"


def _pids_writing(folder: Path) -> list[int]:
    """Processes with a file under ``folder`` open (Linux /proc)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
            if any(os.readlink(f"/proc/{pid}/fd/{fd}").startswith(str(folder) + "/") for fd in fds):
                found.append(int(pid))
        except OSError:
            continue
    return found


def test_a_killed_ray_worker_leaves_a_run_the_rerun_resumes(ray_address, tmp_path):
    args = ("total_steps=6000", "eval.interval=3000", "checkpoint.every=2")
    sweep = _sweep(ray_address, tmp_path, *args, background=True)
    victim = tmp_path / "0_ppo_CartPole-v1_s0"
    deadline = time.monotonic() + 120
    while not (victim / "checkpoint.pt").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    pids = _pids_writing(victim)
    assert len(pids) == 1, "the run's worker process"
    cmdline = Path(f"/proc/{pids[0]}/cmdline").read_bytes()
    assert b"ray" in cmdline and pids[0] != sweep.pid  # a Ray worker, not the driver
    os.kill(pids[0], signal.SIGKILL)
    output, _ = sweep.communicate(timeout=300)
    # the sweep goes on without the lost run, and lists it
    assert sweep.returncode == 1, output
    assert "Ray lost the run seed=0" in output and "WorkerCrashedError" in output
    assert "4 runs: 3 complete, 1 unfinished" in output, output
    assert re.search(rf"UNFINISHED +{victim.name}: no summary.json: killed before it finished "
                     r"\(it resumes from its checkpoint\)", output), output
    assert "Traceback" not in output
    assert (victim / "checkpoint.pt").is_file() and not (victim / "summary.json").exists()
    done = {run: (run / "metrics.csv").stat().st_mtime_ns for run in _runs(tmp_path)
            if run != victim}

    again = _sweep(ray_address, tmp_path, *args)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "4 runs: 1 complete, 3 skipped (already complete)" in again.stdout, again.stdout
    assert all((run / "metrics.csv").stat().st_mtime_ns == t for run, t in done.items())
    resumed = _summary(victim)["resumes"]
    assert _summary(victim)["status"] == "complete"
    assert len(resumed) == 1 and resumed[0]["update"] >= 2
    metrics = pd.read_csv(victim / "metrics.csv")
    assert list(metrics["update"]) == list(range(1, len(metrics) + 1))
    assert metrics["step"].iloc[-1] >= 6000
