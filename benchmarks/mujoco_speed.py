"""Steps/s on MuJoCo at 1 env: raw env stepping, pgrun PPO, CleanRL's ppo_continuous_action.py
(as published) and Stable-Baselines3 PPO, side by side in one run.

    pip install -c constraints.txt -e '.[mujoco,bench]'          # pgrun, SB3
    # CleanRL in a venv of its own, with its pins (gymnasium 0.29.1, mujoco 2.3.3; numpy < 2,
    # which gymnasium 0.29 needs), the script copied from vwxyzjn/cleanrl unchanged:
    python3 -m venv /work/bench-venv && /work/bench-venv/bin/pip install -c constraints.txt \\
        torch==2.13.0 'gymnasium[mujoco]==0.29.1' mujoco==2.3.3 'numpy<2' tyro tensorboard
    python benchmarks/mujoco_speed.py --cleanrl-python /work/bench-venv/bin/python \\
        --cleanrl-script /work/bench-cleanrl/ppo_continuous_action.py

Every runner is a fresh process with one torch and one BLAS thread (CleanRL under
OMP_NUM_THREADS=1, as its benchmark/ppo.sh runs it), at CleanRL's settings: 1 env × 2048
steps, 10 epochs × 32 minibatches, observation and reward normalization. The runners
alternate, ``--reps`` times; the table gives medians and the load average around each run.

* ``raw env``: ``gym.make(ID)`` stepped with ``action_space.sample()``, reset at episode
  ends — the ceiling of a 1-env rollout (in each venv: CleanRL's pins only have Hopper-v4);
* ``pgrun``: ``pgrun train env=Hopper-v5`` (the preset, evaluation off; ``pgrun-v4``: the
  same with ``env.id=Hopper-v4``, CleanRL's env, in pgrun's venv), timed on its training
  loop (summary.json's wall time, setup excluded), steps = real transitions;
* ``CleanRL``: its own ``SPS:`` print at the end (global_step / time since its first reset),
  on Hopper-v4 (its pins have no v5);
* ``SB3``: ``PPO.learn`` with ``VecNormalize`` (clip 10 and 10), the same settings, timed on
  ``learn``.

Writes ``mujoco_speed.csv`` and ``mujoco_speed.md`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


def child_env(env_id: str, steps: int, seed: int) -> dict:
    """Raw single-env stepping with random actions (stdlib, gymnasium and NumPy only, so
    it runs in CleanRL's venv too)."""
    import gymnasium as gym

    env = gym.make(env_id)
    env.reset(seed=seed)
    env.action_space.seed(seed)
    t0 = time.perf_counter()
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()
    return {"steps": steps, "wall_s": time.perf_counter() - t0}


def child_pgrun(env_id: str, steps: int, seed: int) -> dict:
    from hydra import compose, initialize_config_dir

    from pgrun.cli import CONF_DIR
    from pgrun.config import register
    from pgrun.train import train

    register()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["env=Hopper-v5", f"env.id={env_id}", f"seed={seed}",
                                           f"total_steps={steps}", "eval.interval=0",
                                           "progress=none", "checkpoint.enabled=false"])
    with tempfile.TemporaryDirectory() as tmp:
        summary = train(cfg, Path(tmp))
    return {"steps": summary["steps"], "wall_s": summary["wall_time_s"]}


def child_sb3(env_id: str, steps: int, seed: int) -> dict:
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    from pgrun.train import limit_threads

    limit_threads(1)
    env = VecNormalize(make_vec_env(env_id, n_envs=1, seed=seed), gamma=0.99, clip_obs=10.0,
                       clip_reward=10.0)
    model = PPO("MlpPolicy", env, n_steps=2048, batch_size=64, n_epochs=10, gamma=0.99,
                gae_lambda=0.95, learning_rate=lambda f: f * 3e-4, clip_range=0.2,
                clip_range_vf=0.2, ent_coef=0.0, vf_coef=0.5, max_grad_norm=0.5,
                policy_kwargs=dict(net_arch=dict(pi=[64, 64], vf=[64, 64]),
                                   activation_fn=torch.nn.Tanh, log_std_init=0.0),
                seed=seed, device="cpu", verbose=0)
    t0 = time.perf_counter()
    model.learn(total_timesteps=steps)
    return {"steps": int(model.num_timesteps), "wall_s": time.perf_counter() - t0}


CHILDREN = {"env": child_env, "pgrun": child_pgrun, "sb3": child_sb3}


def spawn(python: str, kind: str, env_id: str, steps: int, seed: int) -> dict:
    env = {**os.environ, **ONE_THREAD}
    out = subprocess.run([python, __file__, "--child", kind, env_id, str(steps), str(seed)],
                         capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"{kind} {env_id} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_cleanrl(python: str, script: str, env_id: str, steps: int, seed: int) -> dict:
    """CleanRL's script unchanged, in a scratch folder (it writes runs/); its last SPS print."""
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run([python, script, "--env-id", env_id, "--total-timesteps",
                              str(steps), "--seed", str(seed), "--no-cuda"], cwd=tmp,
                             capture_output=True, text=True, env={**os.environ, **ONE_THREAD})
    sps = re.findall(r"^SPS: (\d+)", out.stdout, flags=re.M)
    if out.returncode != 0 or not sps:
        raise RuntimeError(f"CleanRL failed:\n{out.stderr[-2000:]}")
    return {"steps": steps, "sps": float(sps[-1])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20480, help="per training run (10 updates)")
    parser.add_argument("--env-steps", type=int, default=20000, help="per raw-env run")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--cleanrl-python", default="/work/bench-venv/bin/python")
    parser.add_argument("--cleanrl-script", default="/work/bench-cleanrl/ppo_continuous_action.py")
    parser.add_argument("--runners", nargs="+",
                        default=["env", "env-v4", "env-cleanrl", "pgrun", "pgrun-v4",
                                 "cleanrl", "sb3"])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, env_id, steps, seed = args.child
        print(json.dumps(CHILDREN[kind](env_id, int(steps), int(seed))))
        return

    runners = {  # name: (label, env id, how)
        "env": ("raw env (pgrun's venv)", "Hopper-v5",
                lambda s: spawn(sys.executable, "env", "Hopper-v5", args.env_steps, s)),
        "env-cleanrl": ("raw env (CleanRL's venv)", "Hopper-v4",
                        lambda s: spawn(args.cleanrl_python, "env", "Hopper-v4",
                                        args.env_steps, s)),
        "env-v4": ("raw env (pgrun's venv)", "Hopper-v4",
                   lambda s: spawn(sys.executable, "env", "Hopper-v4", args.env_steps, s)),
        "pgrun": ("pgrun PPO", "Hopper-v5",
                  lambda s: spawn(sys.executable, "pgrun", "Hopper-v5", args.steps, s)),
        "pgrun-v4": ("pgrun PPO", "Hopper-v4",
                     lambda s: spawn(sys.executable, "pgrun", "Hopper-v4", args.steps, s)),
        "cleanrl": ("CleanRL ppo_continuous_action.py", "Hopper-v4",
                    lambda s: run_cleanrl(args.cleanrl_python, args.cleanrl_script,
                                          "Hopper-v4", args.steps, s)),
        "sb3": ("SB3 PPO", "Hopper-v5",
                lambda s: spawn(sys.executable, "sb3", "Hopper-v5", args.steps, s)),
    }
    rows = []
    for rep in range(args.reps):
        for name in args.runners:
            label, env_id, how = runners[name]
            load0 = os.getloadavg()[0]
            r = how(rep + 1)
            sps = r.get("sps") or r["steps"] / r["wall_s"]
            rows.append({"runner": name, "label": label, "env": env_id, "rep": rep, "sps": sps,
                         "load_before": load0, "load_after": os.getloadavg()[0]})
            print(f"rep {rep} {label:38s} {env_id:10s} {sps:8.0f} steps/s  "
                  f"(load {load0:.2f} → {rows[-1]['load_after']:.2f})", flush=True)

    med = {n: statistics.median(r["sps"] for r in rows if r["runner"] == n) for n in args.runners}
    loads = [x for r in rows for x in (r["load_before"], r["load_after"])]
    lines = [f"# MuJoCo steps/s at 1 env (`python benchmarks/mujoco_speed.py`, {args.reps} reps, "
             f"{args.steps} training steps, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})",
             "", f"Load average (1 min) around the runs: {min(loads):.2f}–{max(loads):.2f} "
             f"on {os.cpu_count()} cores.", "",
             "| runner | env | median steps/s | runs |", "|---|---|---|---|"]
    for n in args.runners:
        label, env_id, _ = runners[n]
        runs = ", ".join(f"{r['sps']:.0f}" for r in rows if r["runner"] == n)
        lines.append(f"| {label} | {env_id} | {med[n]:.0f} | {runs} |")
    if "pgrun" in med and "cleanrl" in med:
        lines += ["", f"pgrun / CleanRL: {med['pgrun'] / med['cleanrl']:.2f}× (Hopper-v5 / its v4)"]
    if "pgrun-v4" in med and "cleanrl" in med:
        lines.append(f"pgrun / CleanRL, both on Hopper-v4: {med['pgrun-v4'] / med['cleanrl']:.2f}×")
    if "pgrun" in med and "sb3" in med:
        lines.append(f"pgrun / SB3: {med['pgrun'] / med['sb3']:.2f}×")
    if "pgrun" in med and "env" in med:
        lines.append(f"pgrun / raw env (same venv): {med['pgrun'] / med['env']:.2f}")
    if "cleanrl" in med and "env-cleanrl" in med:
        lines.append(f"CleanRL / raw env (its venv): {med['cleanrl'] / med['env-cleanrl']:.2f}")
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "mujoco_speed.md").write_text(text)
    with open(args.out / "mujoco_speed.csv", "w") as f:
        f.write("runner,env,rep,sps,load_before,load_after\n")
        for r in rows:
            f.write(f"{r['runner']},{r['env']},{r['rep']},{r['sps']:.1f},"
                    f"{r['load_before']:.2f},{r['load_after']:.2f}\n")


if __name__ == "__main__":
    main()
