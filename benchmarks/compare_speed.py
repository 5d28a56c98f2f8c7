"""Speed of ``pgrun compare``: builds synthetic run folders and times the command on them.

The folders are written with the project's own writers (``CsvLog`` with ``METRIC_COLUMNS``
and ``EVAL_COLUMNS``, ``write_summary``) and real composed configs in ``.hydra/config.yaml``,
as a Hydra multirun would leave them: 4 configurations × 50 seeds = 200 runs of 2,000
metric rows and 52 evaluations each; 1 run in 10 is still in progress (no summary.json):
it is read, and left out of the scores as ``pgrun compare`` does by default. Every interval
uses 10,000 bootstrap resamples. Target: under 5 s on 2 cores. Example:

    python benchmarks/compare_speed.py            # builds in a temp folder, median of 3
    python benchmarks/compare_speed.py --runs 40 --rows 500 --repeats 5
    python benchmarks/compare_speed.py --envs 3   # the runs spread over 3 environments,
                                                  # which adds the comparison across them
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from pgrun.cli import CONF_DIR
from pgrun.config import register
from pgrun.metrics import EVAL_COLUMNS, METRIC_COLUMNS, CsvLog
from pgrun.runfolder import write_summary

CONFIGS = [["algo=ppo"], ["algo=ppo", "algo.clip_eps=0.1"], ["algo=vpg"], ["algo=reinforce"]]
ENVS = ["CartPole-v1", "Acrobot-v1", "Pendulum-v1"]
STEPS_PER_UPDATE = 256
EVAL_INTERVAL = 10_000


def write_run(run_dir: Path, config, seed: int, rows: int, finished: bool) -> None:
    """One run folder with a noisy logistic learning curve."""
    rng = np.random.default_rng(seed)
    (run_dir / ".hydra").mkdir(parents=True)
    config.seed = seed
    (run_dir / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml(config))
    steps = STEPS_PER_UPDATE * np.arange(1, rows + 1)
    speed = rng.uniform(0.5, 2.0) * 1e-5

    def curve(at):
        return 500 / (1 + np.exp(-speed * (at - 150_000)))

    returns = np.clip(curve(steps) + rng.normal(0, 20, rows), 8, 500)
    metrics = CsvLog(run_dir / "metrics.csv", METRIC_COLUMNS)
    for i, (step, ret) in enumerate(zip(steps, returns, strict=True)):
        metrics.write({"update": i + 1, "step": int(step), "episodes": 4 * (i + 1),
                       "time_s": step / 5000, "sps": 5000.0, "return_mean": float(ret),
                       "return_std": 10.0, "length_mean": float(ret), "policy_loss": -0.01,
                       "value_loss": 3.2, "entropy": 0.6, "approx_kl": 0.004,
                       "clip_frac": 0.05, "explained_variance": 0.8, "grad_norm": 0.5,
                       "lr": 3e-4})
    metrics.close()
    evals = CsvLog(run_dir / "eval.csv", EVAL_COLUMNS)
    for step in range(0, int(steps[-1]) + 1, EVAL_INTERVAL):
        ret = float(np.clip(curve(step) + rng.normal(0, 10), 8, 500))
        evals.write({"step": step, "return_mean": ret, "return_std": 5.0, "length_mean": ret,
                     "episodes": 10, "time_s": step / 5000})
    evals.close()
    if finished:
        write_summary(run_dir, {"algo": config.algo.name, "env": config.env.id, "seed": seed,
                                "steps": int(steps[-1]), "wall_time_s": steps[-1] / 5000,
                                "sps": 5000.0})


def build(root: Path, runs: int, rows: int, envs: int = 1) -> None:
    register()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        configs = [compose("config", overrides=[*o, f"env={env}"])
                   for env in ENVS[:envs] for o in CONFIGS]
    seeds = runs // len(configs)
    for c, config in enumerate(configs):
        for seed in range(seeds):
            job = c * seeds + seed
            write_run(root / f"{job}_{config.algo.name}_{config.env.id}_s{seed}", config, seed, rows,
                      finished=job % 10 != 9)


def time_compare(root: Path, extra: list[str], repeats: int) -> list[float]:
    times = []
    for i in range(repeats):
        cmd = [sys.executable, "-m", "pgrun", "compare", str(root), "--out",
               str(root.parent / f"compare_{i}"), *extra]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        times.append(time.perf_counter() - t0)
        if proc.returncode != 0:
            sys.exit(f"pgrun compare failed:\n{proc.stderr}")
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--rows", type=int, default=2000, help="metrics.csv rows per run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--envs", type=int, default=1, choices=range(1, len(ENVS) + 1),
                        help="spread the runs over this many environments (default 1)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pgrun_compare_speed_") as tmp:
        root = Path(tmp) / "sweep"
        t0 = time.perf_counter()
        build(root, args.runs, args.rows, args.envs)
        print(f"built {args.runs} runs × {args.rows:,} metric rows on {args.envs} env(s) in "
              f"{time.perf_counter() - t0:.1f} s")
        for extra in ([], ["--curve", "train"]):
            times = time_compare(root, extra, args.repeats)
            shown = ", ".join(f"{t:.2f}" for t in times)
            print(f"pgrun compare {' '.join(['<sweep>', *extra])}: median "
                  f"{statistics.median(times):.2f} s of {args.repeats} ({shown} s)")


if __name__ == "__main__":
    main()
