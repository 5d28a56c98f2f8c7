"""Atari throughput side by side: sync vs async vectorization, and pgrun PPO vs CleanRL.

    pip install -c constraints.txt -e '.[atari]'
    python benchmarks/atari_speed.py                        # ~10 min on 2 cores
    python benchmarks/atari_speed.py --reps 1 --no-cleanrl  # a quick look

At ``--num-envs`` envs of a preset (default ``env=Pong-v5``: ALE v5, AtariPreprocessing,
4 stacked frames), every measurement in a fresh process, one at a time, the runners
alternated within each repetition so that a change in the machine's load hits all alike:

1. ``random``: the vector env stepped with uniformly random actions (``--random-steps``
   vector steps after 50 of warm-up), ``env.vectorization=sync`` and ``=async``, and with
   ``--only ... random-native``, ALE's own vector env in place of the wrappers (``NATIVE``);
2. ``pgrun``: ``pgrun train`` with the preset's PPO hparams (CleanRL's ppo_atari settings)
   for ``--train-steps`` steps, sync and async (and ``pgrun-native``; ``pgrun-bf16``: sync
   with ``policy.cnn_precision=bfloat16``; ``pgrun-native-bf16``: both), no evaluation or
   checkpoint; steps/s is pgrun's own (metrics.csv's last ``sps``: steps over training
   time, setup left out);
3. ``cleanrl``: CleanRL's ``cleanrl/ppo_atari.py`` as published (read from a git mirror of
   vwxyzjn/cleanrl, run from a temporary folder with its ``cleanrl_utils``), in its own
   venv (``--cleanrl-python``; it needs gymnasium 0.29's API: gymnasium==0.29.1,
   ale-py 0.9 (imported before the script runs: it registers the ALE ids on import),
   opencv, tyro, tensorboard) at the same budget, ``--env-id
   PongNoFrameskip-v4`` (its default kind of env: no sticky actions), ``--no-cuda``,
   ``OMP_NUM_THREADS=1`` as in CleanRL's benchmark/ppo.sh; steps/s is its last printed
   ``SPS`` (global steps over time since its envs were made);
4. ``sb3``: Stable-Baselines3's PPO (``pip install -c constraints.txt -e '.[atari,bench]'``)
   at the same settings, as RL Baselines3 Zoo's atari hyperparameters give them (``CnnPolicy``,
   the Nature CNN; 128 steps, 4 epochs, minibatch 256, lr 2.5e-4 and clip 0.1 both annealed,
   entropy 0.01), on ``make_atari_env`` (its ``AtariWrapper``: 30 no-ops, frame skip 4, life
   loss as episode end, FIRE reset, 84×84 grey, rewards clipped) of the same
   ``--cleanrl-env`` and ``VecFrameStack(4)``; steps/s is steps over ``learn``'s wall time.

Every process runs with one torch/BLAS thread. Writes ``atari_speed.csv`` (every
measurement, with the 1-minute load average just before it) and ``atari_speed.md``
(medians, ratios of medians, ``uptime`` at start and end) into ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NATIVE = ["vector=ale", "env.kwargs.num_threads=1"]
"""ALE's own C++ vector env in place of the preset's gymnasium wrappers (conf/vector/ale.yaml),
with one worker thread, so that its envs step on one core as the other runners' do (ALE's
default, a thread per core, also takes the second core)."""
MODES = {"sync": ["env.vectorization=sync"], "async": ["env.vectorization=async"],
         "native": NATIVE,
         "bf16": ["env.vectorization=sync", "policy.cnn_precision=bfloat16"],
         "native-bf16": [*NATIVE, "policy.cnn_precision=bfloat16"]}
THREADS = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}

RANDOM_CHILD = """
import json, sys, time
import numpy as np
sys.path.insert(0, {root!r})
from hydra import compose, initialize_config_dir
from pgrun.config import register
from pgrun.envs.factory import make_vec_env
register()
with initialize_config_dir(config_dir={conf!r}, version_base="1.3"):
    cfg = compose("config", overrides=["env={env}", *{overrides!r}])
envs = make_vec_env(cfg.env, {n})
envs.reset(seed=0)
rng = np.random.default_rng(0)
k = envs.single_action_space.n
for _ in range(50):
    envs.step(rng.integers(k, size={n}))
t0 = time.perf_counter()
for _ in range({steps}):
    envs.step(rng.integers(k, size={n}))
dt = time.perf_counter() - t0
envs.close()
print(json.dumps({{"sps": {steps} * {n} / dt}}))
"""

SB3_CHILD = """
import json, time
import ale_py, gymnasium, torch
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_atari_env
from stable_baselines3.common.vec_env import VecFrameStack
gymnasium.register_envs(ale_py)
torch.set_num_threads(1)
envs = VecFrameStack(make_atari_env({env!r}, n_envs={n}, seed=1), n_stack=4)
model = PPO("CnnPolicy", envs, n_steps=128, n_epochs=4, batch_size=256,
            learning_rate=lambda f: f * 2.5e-4, clip_range=lambda f: f * 0.1, ent_coef=0.01,
            vf_coef=0.5, seed=1, device="cpu", verbose=0)
t0 = time.perf_counter()
model.learn(total_timesteps={steps})
print(json.dumps({{"sps": model.num_timesteps / (time.perf_counter() - t0)}}))
"""


def load1() -> float:
    return os.getloadavg()[0]


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return f"load average {os.getloadavg()}"


def run_random(args, mode: str) -> float:
    code = RANDOM_CHILD.format(root=str(ROOT), conf=str(ROOT / "conf"), env=args.env,
                               n=args.num_envs, overrides=MODES[mode], steps=args.random_steps)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, **THREADS}, cwd=ROOT, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["sps"]


def run_pgrun(args, mode: str) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pgrun", "train", f"env={args.env}",
               f"env.num_envs={args.num_envs}", *MODES[mode],
               f"total_steps={args.train_steps}", "eval.interval=0",
               "checkpoint.enabled=false", "progress=none", "torch_threads=1",
               f"hydra.run.dir={tmp}/run"]
        subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **THREADS},
                       cwd=ROOT, check=True)
        with open(Path(tmp) / "run" / "metrics.csv") as f:
            rows = list(csv.DictReader(f))
        return float(rows[-1]["sps"])


def cleanrl_files(repo: Path, dest: Path) -> Path:
    """ppo_atari.py and what it imports, as published at the mirror's HEAD."""
    (dest / "cleanrl_utils").mkdir(parents=True)
    for path in ("cleanrl/ppo_atari.py", "cleanrl_utils/__init__.py",
                 "cleanrl_utils/atari_wrappers.py"):
        text = subprocess.run(["git", "--git-dir", str(repo), "show", f"HEAD:{path}"],
                              capture_output=True, text=True, check=True).stdout
        target = dest / (Path(path).name if path.startswith("cleanrl/") else path)
        target.write_text(text)
    return dest / "ppo_atari.py"


def run_cleanrl(args) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        script = cleanrl_files(Path(args.cleanrl_repo), Path(tmp))
        # the script unchanged; ale-py >= 0.9 registers its envs on import (the ale-py 0.8.1
        # CleanRL pins did it through gymnasium's plugin entry point, and needs AutoROM's
        # download for the ROMs), so import it first and run the script as __main__
        launch = (f"import sys, runpy, ale_py; sys.argv[0] = {str(script)!r}; "
                  f"runpy.run_path({str(script)!r}, run_name='__main__')")
        cmd = [args.cleanrl_python, "-c", launch, "--env-id", args.cleanrl_env,
               "--num-envs", str(args.num_envs), "--total-timesteps", str(args.train_steps),
               "--no-cuda", "--seed", "1"]
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp, check=True,
                             env={**os.environ, **THREADS, "PYTHONPATH": tmp})
        sps = re.findall(r"^SPS: (\d+)", out.stdout, flags=re.M)
        if not sps:
            raise RuntimeError(f"no SPS line in CleanRL's output:\n{out.stdout[-2000:]}")
        return float(sps[-1])


def run_sb3(args) -> float:
    code = SB3_CHILD.format(env=args.cleanrl_env, n=args.num_envs, steps=args.train_steps)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, **THREADS}, cwd=ROOT)
    if out.returncode != 0:
        raise RuntimeError(f"SB3 failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])["sps"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--env", default="Pong-v5")
    p.add_argument("--num-envs", type=int, default=8)
    p.add_argument("--random-steps", type=int, default=1000, help="vector steps per measurement")
    p.add_argument("--train-steps", type=int, default=5120)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--no-cleanrl", action="store_true")
    p.add_argument("--cleanrl-python", default="/work/bench-atari-venv/bin/python")
    p.add_argument("--cleanrl-repo", default="/work/.mirror/vwxyzjn+cleanrl/repo",
                   help="a git directory of vwxyzjn/cleanrl")
    p.add_argument("--cleanrl-env", default="PongNoFrameskip-v4", help="CleanRL's and SB3's env")
    p.add_argument("--only", nargs="*", default=None,
                   help="runners to measure (random-sync random-async pgrun-sync pgrun-async "
                        "random-native pgrun-native pgrun-bf16 pgrun-native-bf16 cleanrl sb3; "
                        "default: all but the native, bf16 and sb3 ones)")
    p.add_argument("--out", default=str(ROOT / "docs" / "results" / "atari_speed"))
    args = p.parse_args()

    runners = {
        "random-sync": lambda: run_random(args, "sync"),
        "random-async": lambda: run_random(args, "async"),
        "pgrun-sync": lambda: run_pgrun(args, "sync"),
        "pgrun-async": lambda: run_pgrun(args, "async"),
        "random-native": lambda: run_random(args, "native"),
        "pgrun-native": lambda: run_pgrun(args, "native"),
        "pgrun-bf16": lambda: run_pgrun(args, "bf16"),
        "pgrun-native-bf16": lambda: run_pgrun(args, "native-bf16"),
        "cleanrl": lambda: run_cleanrl(args),
        "sb3": lambda: run_sb3(args),
    }
    if args.no_cleanrl:
        runners.pop("cleanrl")
    if args.only:
        runners = {k: v for k, v in runners.items() if k in args.only}
    else:
        runners = {k: v for k, v in runners.items()
                   if "native" not in k and "bf16" not in k and k != "sb3"}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = uptime()
    print(start, flush=True)
    rows = []
    for rep in range(args.reps):
        for name, fn in runners.items():
            before = load1()
            t0 = time.time()
            sps = fn()
            rows.append({"rep": rep, "runner": name, "sps": round(sps, 1),
                         "load1_before": before, "wall_s": round(time.time() - t0, 1)})
            print(f"rep {rep} {name:13s} {sps:8.1f} steps/s  (load {before:.2f})", flush=True)
    end = uptime()
    print(end, flush=True)
    with open(out / "atari_speed.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    med = {n: statistics.median(r["sps"] for r in rows if r["runner"] == n) for n in runners}
    lines = [f"# Atari steps/s: {args.env}, {args.num_envs} envs",
             "",
             f"`python benchmarks/atari_speed.py {' '.join(sys.argv[1:])}`".replace(" `", "`"),
             "",
             f"Random actions: {args.random_steps} vector steps; training: {args.train_steps} "
             f"steps (CleanRL's ppo_atari settings). Medians of {args.reps} repeats, every "
             "measurement a fresh process, one at a time, runners alternated.",
             "",
             f"- start: `{start}`", f"- end: `{end}`", "",
             "| runner | median steps/s | all repeats |", "|---|---:|---|"]
    for n in runners:
        every = ", ".join(f"{r['sps']:.0f}" for r in rows if r["runner"] == n)
        lines.append(f"| {n} | {med[n]:.0f} | {every} |")
    lines.append("")
    for a, b in (("random-async", "random-sync"), ("pgrun-async", "pgrun-sync"),
                 ("random-native", "random-sync"), ("pgrun-native", "pgrun-sync"),
                 ("pgrun-sync", "cleanrl"), ("pgrun-async", "cleanrl"),
                 ("pgrun-native", "cleanrl"), ("pgrun-bf16", "pgrun-sync"),
                 ("pgrun-bf16", "cleanrl"), ("pgrun-native-bf16", "cleanrl"),
                 ("pgrun-sync", "sb3"), ("pgrun-bf16", "sb3"), ("pgrun-native-bf16", "sb3"),
                 ("cleanrl", "sb3")):
        if a in med and b in med:
            lines.append(f"- {a} / {b}: {med[a] / med[b]:.2f}×")
    (out / "atari_speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
