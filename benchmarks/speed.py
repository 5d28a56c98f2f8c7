"""Throughput benchmark: pgrun PPO vs Stable-Baselines3 PPO on CartPole-v1, side by side.

    pip install -c constraints.txt -e '.[bench]'      # Stable-Baselines3
    python benchmarks/speed.py                        # ~7 min on 2 cores
    python benchmarks/speed.py --reps 1 --steps 20000 # a quick look

In one run on one machine, alternating the runners, ``--reps`` repetitions each (every
training in a fresh process, one torch and one BLAS thread; timed on training alone:
SB3's ``learn``, pgrun's training loop less its evaluation phase):

1. pgrun (with its accelerator, and with ``accelerate=false``: plain torch autograd) vs SB3
   at RL Zoo's CartPole hyperparameters (8 envs × 32 steps, 20 epochs of one
   256-sample minibatch, γ 0.98, λ 0.8, lr 1e-3 → 0, clip 0.2 → 0, no entropy bonus);
2. the same at CleanRL's defaults (4 envs × 128 steps, 4 epochs × 4 minibatches, lr 2.5e-4
   → 0, γ 0.99, λ 0.95, entropy 0.01, value clipping), SB3 configured to match;
3. the ceiling: gymnasium's vector CartPole stepped with random actions at the same number
   of envs, and the pure update cost (pgrun's PPO update on a fixed batch of the same
   shape, as many gradient steps as the run takes);
4. where pgrun's wall time goes (cProfile of one run, by phase);
5. each runner's final greedy evaluation return (10 episodes), so a speed-up that changed
   learning would show; plus the peak RSS of a pgrun run;
6. what evaluation and logging cost in ``pgrun train`` at its defaults.

Writes ``results.csv`` and ``results.md`` into ``--out`` and prints the tables. Medians
over repetitions; ratios are of medians measured in this run.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import platform
import pstats
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PRESETS = {
    "zoo": {
        "pgrun": ["env.num_envs=8", "algo.num_steps=32", "algo.num_epochs=20",
                  "algo.num_minibatches=1", "algo.gamma=0.98", "algo.gae_lambda=0.8",
                  "algo.lr=1e-3", "algo.anneal_lr=true", "algo.clip_eps=0.2",
                  "algo.anneal_clip=true", "algo.ent_coef=0.0", "algo.clip_vloss=false"],
        "sb3": dict(n_envs=8, n_steps=32, batch_size=256, n_epochs=20, gamma=0.98,
                    gae_lambda=0.8, lr=1e-3, clip=0.2, anneal_clip=True, ent_coef=0.0,
                    clip_vf=None),
        "num_envs": 8, "num_steps": 32, "epochs": 20, "minibatches": 1,
    },
    "cleanrl": {
        "pgrun": ["env.num_envs=4", "algo.num_steps=128", "algo.num_epochs=4",
                  "algo.num_minibatches=4", "algo.gamma=0.99", "algo.gae_lambda=0.95",
                  "algo.lr=2.5e-4", "algo.anneal_lr=true", "algo.clip_eps=0.2",
                  "algo.anneal_clip=false", "algo.ent_coef=0.01", "algo.clip_vloss=true"],
        "sb3": dict(n_envs=4, n_steps=128, batch_size=128, n_epochs=4, gamma=0.99,
                    gae_lambda=0.95, lr=2.5e-4, clip=0.2, anneal_clip=False, ent_coef=0.01,
                    clip_vf=0.2),
        "num_envs": 4, "num_steps": 128, "epochs": 4, "minibatches": 4,
    },
}


# ------------------------------------------------------------------ child processes

def child_pgrun(preset: str, steps: int, seed: int) -> dict:
    """pgrun's training loop; ``preset+autograd`` runs it with ``accelerate=false``."""
    from hydra import compose, initialize_config_dir

    from pgrun.cli import CONF_DIR
    from pgrun.config import register
    from pgrun.train import train

    register()
    preset, _, variant = preset.partition("+")
    overrides = ["algo=ppo", "env=CartPole-v1", f"seed={seed}", f"total_steps={steps}",
                 f"eval.interval={10 * steps}", "progress=none", "checkpoint.every=0",
                 *PRESETS[preset]["pgrun"]]
    if variant == "autograd":
        overrides.append("accelerate=false")
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    with tempfile.TemporaryDirectory() as tmp:
        summary = train(cfg, Path(tmp))
    # timed like SB3's learn(): training only, so the loop's evaluation phase is left out
    train_s = summary["wall_time_s"] - summary["time_s"].get("eval", 0.0)
    return {"steps": summary["steps"], "wall_s": train_s, "loop_wall_s": summary["wall_time_s"],
            "final_eval": summary["final_eval_return"], "phases": summary["time_s"],
            "update_path": summary.get("update_path"),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def child_sb3(preset: str, steps: int, seed: int) -> dict:
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy

    from pgrun.train import limit_threads

    limit_threads(1)  # as pgrun does: one torch and one BLAS thread
    p = PRESETS[preset]["sb3"]
    env = make_vec_env("CartPole-v1", n_envs=p["n_envs"], seed=seed)
    lr, clip = p["lr"], p["clip"]
    model = PPO("MlpPolicy", env, n_steps=p["n_steps"], batch_size=p["batch_size"],
                n_epochs=p["n_epochs"], gamma=p["gamma"], gae_lambda=p["gae_lambda"],
                learning_rate=lambda f: f * lr,
                clip_range=(lambda f: f * clip) if p["anneal_clip"] else clip,
                clip_range_vf=p["clip_vf"], ent_coef=p["ent_coef"], vf_coef=0.5,
                max_grad_norm=0.5, seed=seed, device="cpu", verbose=0)
    t0 = time.perf_counter()
    model.learn(total_timesteps=steps)
    wall = time.perf_counter() - t0
    eval_env = make_vec_env("CartPole-v1", n_envs=1, seed=seed + 1_000_003)
    mean, _ = evaluate_policy(model, eval_env, n_eval_episodes=10, deterministic=True)
    return {"steps": int(model.num_timesteps), "wall_s": wall, "final_eval": float(mean),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def child_env(num_envs: int, steps: int, seed: int) -> dict:
    """Raw vector-env stepping with random actions (the rollout's ceiling)."""
    import gymnasium as gym
    import numpy as np

    envs = gym.make_vec("CartPole-v1", num_envs, vectorization_mode="vector_entry_point")
    envs.reset(seed=seed)
    rng = np.random.default_rng(seed)
    n_steps = steps // num_envs
    actions = rng.integers(0, 2, size=(n_steps, num_envs))
    t0 = time.perf_counter()
    for a in actions:
        envs.step(a)
    wall = time.perf_counter() - t0
    return {"steps": n_steps * num_envs, "wall_s": wall}


def _policy_and_envs(preset: str, seed: int):
    """The speed runs' CartPole vector env and PPO policy: 64-64 tanh with the accelerator;
    ``PRESET+autograd`` without it, ``PRESET+linear`` with no hidden layers (what an update
    costs apart from the network)."""
    import gymnasium as gym
    import torch

    from pgrun.accelerate import attach
    from pgrun.policies import ActorCritic
    from pgrun.rollout import Actor, Collector
    from pgrun.train import limit_threads

    limit_threads(1)
    torch.manual_seed(seed)
    preset, _, variant = preset.partition("+")
    p = PRESETS[preset]
    envs = gym.make_vec("CartPole-v1", p["num_envs"], vectorization_mode="vector_entry_point")
    obs_space, act_space = envs.single_observation_space, envs.single_action_space
    policy = ActorCritic(obs_space, act_space, hidden_sizes=[] if variant == "linear" else (64, 64))
    attach(policy, enabled=variant == "")
    collector = Collector(envs, Actor(policy, obs_space, act_space), seed=seed, with_value=True)
    return p, policy, collector


def child_rollout(preset: str, steps: int, seed: int) -> dict:
    """pgrun's rollout collection alone (inference + env step + storage)."""
    p, _, collector = _policy_and_envs(preset, seed)
    n_batches = steps // (p["num_envs"] * p["num_steps"])
    t0 = time.perf_counter()
    for _ in range(n_batches):
        collector.collect_steps(p["num_steps"])
    wall = time.perf_counter() - t0
    return {"steps": n_batches * p["num_envs"] * p["num_steps"], "wall_s": wall}


def child_update(preset: str, steps: int, seed: int) -> dict:
    """pgrun's PPO update alone: the run's number of gradient steps on a fixed batch."""
    from omegaconf import OmegaConf

    from pgrun.algos.ppo import PPO, PPOConfig

    p, policy, collector = _policy_and_envs(preset, seed)
    cfg = OmegaConf.structured(PPOConfig(num_steps=p["num_steps"], num_epochs=p["epochs"],
                                         num_minibatches=p["minibatches"]))
    algo = PPO(cfg, policy, p["num_envs"])
    batch = collector.collect_steps(p["num_steps"])
    n_updates = steps // (p["num_envs"] * p["num_steps"])
    t0 = time.perf_counter()
    for i in range(n_updates):
        algo.update(batch, i / n_updates)
    wall = time.perf_counter() - t0
    return {"steps": n_updates * p["num_envs"] * p["num_steps"], "wall_s": wall,
            "grad_steps": n_updates * p["epochs"] * p["minibatches"]}


def child_tuned(preset: str, _steps: int, seed: int) -> dict:
    """A tuned preset as ``pgrun train algo=A env=E seed=S`` runs it (``preset`` is
    ``A/E``): its own budget and evaluation schedule; the final return is the mean of the
    last 3 evaluations (as ``pgrun compare``'s default)."""
    from hydra import compose, initialize_config_dir

    from pgrun.cli import CONF_DIR
    from pgrun.config import register
    from pgrun.train import train

    register()
    algo, env = preset.split("/")
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[f"algo={algo}", f"env={env}", f"seed={seed}",
                                           "progress=none", "checkpoint.every=0"])
    with tempfile.TemporaryDirectory() as tmp:
        summary = train(cfg, Path(tmp))
        evals = [float(line.split(",")[1]) for line in
                 (Path(tmp) / "eval.csv").read_text().splitlines()[1:]]
    return {"steps": summary["steps"], "wall_s": summary["wall_time_s"],
            "final_eval": statistics.mean(evals[-3:])}


def child_default(_preset: str, _steps: int, seed: int) -> dict:
    """``pgrun train`` at its defaults (PPO on CartPole-v1 with the tuned preset: evaluation
    every 5k steps, 10 episodes; checkpoints): what evaluation and logging cost."""
    from hydra import compose, initialize_config_dir

    from pgrun.cli import CONF_DIR
    from pgrun.config import register
    from pgrun.train import train

    register()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[f"seed={seed}", "progress=none"])
    with tempfile.TemporaryDirectory() as tmp:
        summary = train(cfg, Path(tmp))
    t = summary["time_s"]
    return {"wall_s": summary["wall_time_s"], "eval_s": t.get("eval", 0.0),
            "log_s": t.get("log", 0.0), "eval_interval": int(cfg.eval.interval)}


def child_profile(preset: str, steps: int, seed: int) -> dict:
    """Wall time of one pgrun run by phase, from cProfile's cumulative times."""
    profiler = cProfile.Profile()
    profiler.enable()
    child_pgrun(preset, steps, seed)
    profiler.disable()
    stats = pstats.Stats(profiler).stats  # (file, line, name) -> (cc, nc, tt, ct, callers)

    def cumulative(file_part: str, name: str) -> float:
        return sum(v[3] for (f, _, n), v in stats.items() if n == name and file_part in f)

    phases = {
        "env step": cumulative("cartpole", "step"),
        "policy inference": cumulative("pgrun/rollout", "act"),
        "returns/GAE": cumulative("pgrun/returns", "gae"),
        "update (losses, backward, optimizer)": cumulative("pgrun/algos/ppo", "update")
        - cumulative("pgrun/returns", "gae"),
        "evaluation": cumulative("pgrun/evaluate", "evaluate"),
        "logging": cumulative("pgrun/metrics", "write") + cumulative("pgrun/metrics", "update"),
    }
    phases["rollout storage/bookkeeping"] = cumulative("pgrun/rollout", "collect_steps") \
        - phases["env step"] - phases["policy inference"]
    total = cumulative("pgrun/train", "train")
    return {"total_s": total, "phases": phases}


CHILDREN = {"pgrun": child_pgrun, "sb3": child_sb3, "env": child_env, "rollout": child_rollout,
            "update": child_update, "profile": child_profile, "default": child_default,
            "tuned": child_tuned}


def spawn(kind: str, arg, steps: int, seed: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", kind, str(arg), str(steps),
                          str(seed)], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{kind} {arg} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------ orchestration

def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def markdown_table(df) -> str:
    head = "| " + " | ".join(df.columns) + " |"
    rule = "|" + "---|" * len(df.columns)
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, rule, *body])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--presets", nargs="+", default=list(PRESETS))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, arg, steps, seed = args.child
        arg = int(arg) if kind == "env" else arg
        print(json.dumps(CHILDREN[kind](arg, int(steps), int(seed))))
        return

    rows, notes = [], []
    for preset in args.presets:
        runs: dict[str, list[dict]] = {"pgrun": [], "autograd": [], "sb3": []}
        for rep in range(args.reps):  # alternate the runners
            for runner, kind, arg in (("pgrun", "pgrun", preset),
                                      ("autograd", "pgrun", f"{preset}+autograd"),
                                      ("sb3", "sb3", preset)):
                r = spawn(kind, arg, args.steps, rep)
                runs[runner].append(r)
                print(f"  {preset} rep {rep} {runner}: {r['steps'] / r['wall_s']:,.0f} steps/s, "
                      f"final eval {r['final_eval']:.1f}", flush=True)
        ceiling = [spawn("env", PRESETS[preset]["num_envs"], args.steps, rep)
                   for rep in range(args.reps)]
        rollout = [spawn("rollout", preset, args.steps, rep) for rep in range(args.reps)]
        update = [spawn("update", preset, args.steps, rep) for rep in range(args.reps)]

        def med_sps(rs):
            return statistics.median(r["steps"] / r["wall_s"] for r in rs)

        pg, sb, ag = med_sps(runs["pgrun"]), med_sps(runs["sb3"]), med_sps(runs["autograd"])
        env_sps, roll_sps = med_sps(ceiling), med_sps(rollout)
        upd = statistics.median(r["wall_s"] for r in update)
        pg_wall = statistics.median(r["wall_s"] for r in runs["pgrun"])
        evals = {k: statistics.median(r["final_eval"] for r in v) for k, v in runs.items()}
        phases = runs["pgrun"][0]["phases"]
        rows.append({
            "preset": preset, "steps": args.steps, "reps": args.reps,
            "pgrun_sps": round(pg), "sb3_sps": round(sb), "speedup": round(pg / sb, 2),
            "autograd_sps": round(ag), "autograd_speedup": round(ag / sb, 2),
            "raw_env_sps": round(env_sps), "rollout_sps": round(roll_sps),
            "rollout_vs_raw": round(roll_sps / env_sps, 3),
            "pure_update_s": round(upd, 2), "pgrun_wall_s": round(pg_wall, 2),
            "update_share": round(upd / pg_wall, 3),
            "eval_log_share": round((phases.get("eval", 0) + phases.get("log", 0))
                                    / runs["pgrun"][0]["loop_wall_s"], 4),
            "pgrun_final_eval": evals["pgrun"], "autograd_final_eval": evals["autograd"],
            "sb3_final_eval": evals["sb3"],
            "pgrun_peak_rss_mb": round(max(r["peak_rss_mb"] for r in runs["pgrun"])),
            "sb3_peak_rss_mb": round(max(r["peak_rss_mb"] for r in runs["sb3"])),
        })
        prof = spawn("profile", preset, args.steps, 0)
        notes.append((preset, prof))

    default = [spawn("default", "-", 0, rep) for rep in range(args.reps)]
    share = {k: statistics.median(r[f"{k}_s"] / r["wall_s"] for r in default) for k in ("eval", "log")}
    default_line = (
        f"At default settings (`pgrun train`: PPO on CartPole-v1, its preset, evaluation every "
        f"{default[0]['eval_interval']:,} steps with 10 greedy episodes), median of {args.reps}: "
        f"evaluation {share['eval']:.1%} and logging {share['log']:.1%} of the wall time "
        f"({statistics.median(r['wall_s'] for r in default):.2f} s). The table's eval_log_share "
        "is of the timed runs above, which evaluate only at the end.")

    args.out.mkdir(parents=True, exist_ok=True)
    import pandas as pd

    table = pd.DataFrame(rows)
    table.to_csv(args.out / "results.csv", index=False)
    machine = f"{cpu_model()}, {os.cpu_count()} cores, {platform.system()}, " \
              f"Python {platform.python_version()}"
    lines = [f"# pgrun vs Stable-Baselines3: PPO on CartPole-v1 ({time.strftime('%Y-%m-%d')})",
             "", f"Machine: {machine}; one torch and one BLAS thread per process. Command: "
             f"`python benchmarks/speed.py --steps {args.steps} --reps {args.reps}`.", "",
             markdown_table(table), "", default_line, ""]
    for preset, prof in notes:
        lines += [f"Where pgrun's wall time goes ({preset}, cProfile, {prof['total_s']:.1f} s "
                  "under the profiler):", ""]
        lines += [f"- {k}: {v / prof['total_s']:.1%}" for k, v in prof["phases"].items()]
        lines.append("")
    text = "\n".join(lines)
    (args.out / "results.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
