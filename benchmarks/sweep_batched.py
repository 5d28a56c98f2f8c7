"""Wall time of a 10-seed PPO sweep: one process per seed (``hydra/launcher=local``),
seed-batched (``hydra/launcher=batched``), and Stable-Baselines3 two seeds at a time.

    python benchmarks/sweep_batched.py                       # CartPole-v1 and Pendulum-v1
    python benchmarks/sweep_batched.py --envs CartPole-v1 --seeds 4 --steps 20000
    python benchmarks/sweep_batched.py --phases   # CPU time of one update, rollout, evaluation

pgrun runs its tuned presets (conf/hparams/ppo_<env>.yaml: RL Zoo's CartPole settings;
Pendulum's 8 envs × 256 steps, minibatches of 64, 10 epochs, normalized observations and
rewards) through the real ``pgrun train -m`` command, evaluations included; SB3 runs the
same settings (``SB3`` below), each seed a process timed from start to exit, with one
final 10-episode evaluation. All three run one after the other on the same machine, and
the ratios are the figures to quote: of wall time, and of the CPU time the sweep's
processes used (user + system, which other load on the machine disturbs far less).
Needs the bench extra (stable-baselines3).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

SB3 = {  # matching conf/hparams/ppo_<env>.yaml
    "CartPole-v1": dict(n_envs=8, n_steps=32, batch_size=256, n_epochs=20, gamma=0.98,
                        gae_lambda=0.8, lr=1e-3, clip=0.2, anneal_clip=True, normalize=False,
                        log_std_init=None),
    "Pendulum-v1": dict(n_envs=8, n_steps=256, batch_size=64, n_epochs=10, gamma=0.9,
                        gae_lambda=0.95, lr=1e-3, clip=0.2, anneal_clip=False, normalize=True,
                        log_std_init=0.5),
}


def sb3_child(env_id: str, steps: int, seed: int) -> dict:
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.vec_env import VecNormalize

    from pgrun.train import limit_threads

    limit_threads(1)
    p = SB3[env_id]
    env = make_vec_env(env_id, n_envs=p["n_envs"], seed=seed)
    if p["normalize"]:
        env = VecNormalize(env, gamma=p["gamma"])
    lr, clip = p["lr"], p["clip"]
    kwargs = {} if p["log_std_init"] is None else {"policy_kwargs": {"log_std_init": p["log_std_init"]}}
    model = PPO("MlpPolicy", env, n_steps=p["n_steps"], batch_size=p["batch_size"],
                n_epochs=p["n_epochs"], gamma=p["gamma"], gae_lambda=p["gae_lambda"],
                learning_rate=lambda f: f * lr,
                clip_range=(lambda f: f * clip) if p["anneal_clip"] else clip,
                ent_coef=0.0, vf_coef=0.5, max_grad_norm=0.5, seed=seed, device="cpu",
                verbose=0, **kwargs)
    model.learn(total_timesteps=steps)
    if p["normalize"]:
        env.training, env.norm_reward = False, False
    mean, _ = evaluate_policy(model, env, n_eval_episodes=10, deterministic=True)
    return {"final_eval": float(mean)}


def run_sb3(env_id: str, seeds: int, steps: int, parallel: int = 2) -> dict:
    def one(seed: int) -> dict:
        out = subprocess.run([sys.executable, __file__, "--child", env_id, str(steps), str(seed)],
                             capture_output=True, text=True, cwd=REPO)
        if out.returncode != 0:
            raise RuntimeError(out.stderr[-2000:])
        return json.loads(out.stdout.strip().splitlines()[-1])

    t0, cpu0 = time.perf_counter(), children_cpu()
    with ThreadPoolExecutor(parallel) as pool:
        results = list(pool.map(one, range(seeds)))
    return {"wall_s": time.perf_counter() - t0, "cpu_s": children_cpu() - cpu0,
            "final_eval": sorted(r["final_eval"] for r in results)}


def children_cpu() -> float:
    """CPU seconds (user + system) of this process's finished child processes."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def phase_costs(env_id: str, seeds: int, repeats: int = 5) -> dict:
    """CPU seconds (``time.process_time``, median of ``repeats``) of one update and one
    rollout of the preset: the K seeds batched against K seeds one after another."""
    import numpy as np
    from hydra import compose, initialize_config_dir

    from pgrun.batched import SeedBatch
    from pgrun.cli import CONF_DIR
    from pgrun.config import register
    from pgrun.resume import Plan
    from pgrun.train import _Run, limit_threads

    register()
    limit_threads(1)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfgs = [compose("config", overrides=[f"env={env_id}", f"seed={s}", "progress=none",
                                             "eval.interval=1000000"])
                for s in range(seeds)]

    def runs(root: Path, name: str) -> list:
        out = []
        for s, cfg in enumerate(cfgs):
            (root / f"{name}{s}").mkdir()
            out.append(_Run(cfg, root / f"{name}{s}", {}, Plan("fresh"), None))
        return out

    def cpu(f) -> float:
        times = []
        for _ in range(repeats):
            t = time.process_time()
            f()
            times.append(time.process_time() - t)
        return float(np.median(times))

    with tempfile.TemporaryDirectory() as tmp:
        batch = SeedBatch(runs(Path(tmp), "b"))
        batch._setup()
        alone = runs(Path(tmp), "a")
        for r in alone:
            r._setup()
        batches = batch._collect()
        alone_batches = [r.algo.collect(r.collector) for r in alone]
        out = {"update_batched_s": cpu(lambda: batch.algo.update(batches, 0.1)),
               "update_alone_s": cpu(lambda: [r.algo.update(b, 0.1) for r, b
                                              in zip(alone, alone_batches, strict=True)]),
               "rollout_batched_s": cpu(batch._collect),
               "rollout_alone_s": cpu(lambda: [r.algo.collect(r.collector) for r in alone]),
               "eval_batched_s": cpu(lambda: batch._evaluate(list(range(seeds)))),
               "eval_alone_s": cpu(lambda: [r._eval() for r in alone])}
        for r in [*batch.runs, *alone]:
            r.close()
    return out


def run_pgrun(env_id: str, seeds: int, steps: int, launcher: str, sweep_dir: Path) -> dict:
    cmd = [sys.executable, "-m", "pgrun", "train", "-m", f"hydra/launcher={launcher}",
           "algo=ppo", f"env={env_id}", f"seed=range({seeds})", f"total_steps={steps}",
           "progress=none", f"hydra.sweep.dir={sweep_dir}"]
    t0, cpu0 = time.perf_counter(), children_cpu()
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - t0, children_cpu() - cpu0
    if out.returncode != 0:
        sys.exit(f"sweep failed ({' '.join(cmd)}):\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    summaries = [json.loads(p.read_text()) for p in sweep_dir.glob("*/summary.json")]
    assert len(summaries) == seeds and all(s["status"] == "complete" for s in summaries)
    return {"wall_s": wall, "cpu_s": cpu,
            "final_eval": sorted(s["final_eval_return"] for s in summaries),
            "update_path": summaries[0]["update_path"]}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(sb3_child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", nargs="+", default=list(SB3))
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--out", type=Path, help="append the results (JSON lines) here")
    parser.add_argument("--no-sb3", action="store_true", help="pgrun's two launchers only")
    parser.add_argument("--phases", action="store_true",
                        help="only the CPU time of one update, rollout and evaluation, K=5 seeds")
    args = parser.parse_args()
    if args.phases:
        for env_id in args.envs:
            c = phase_costs(env_id, 5)
            print(f"{env_id}, 5 seeds, CPU s, batched vs alone:", ", ".join(
                f"{phase} {c[f'{phase}_batched_s']:.3f} vs {c[f'{phase}_alone_s']:.3f} "
                f"({c[f'{phase}_alone_s'] / c[f'{phase}_batched_s']:.2f}×)"
                for phase in ("update", "rollout", "eval")))
        return
    print(f"{args.seeds} seeds × PPO, {args.steps:,} steps each; {os.cpu_count()} CPUs; "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for env_id in args.envs:
            r = {"env": env_id, "seeds": args.seeds, "steps": args.steps,
                 "date": time.strftime("%Y-%m-%d")}
            for launcher in ("local", "batched"):
                r[launcher] = run_pgrun(env_id, args.seeds, args.steps, launcher,
                                        Path(tmp) / f"{env_id}-{launcher}")
                print(f"{env_id} {launcher:>8}: {r[launcher]['wall_s']:7.1f} s wall, "
                      f"{r[launcher]['cpu_s']:7.1f} s CPU", flush=True)
            if not args.no_sb3:
                r["sb3"] = run_sb3(env_id, args.seeds, args.steps)
                print(f"{env_id} sb3 (2 at a time): {r['sb3']['wall_s']:7.1f} s wall, "
                      f"{r['sb3']['cpu_s']:7.1f} s CPU", flush=True)
            for key in ("wall_s", "cpu_s"):
                r[f"batched_over_local_{key}"] = round(r["batched"][key] / r["local"][key], 3)
                if "sb3" in r:
                    r[f"sb3_over_batched_{key}"] = round(r["sb3"][key] / r["batched"][key], 2)
            r["load_after"] = os.getloadavg()[0]
            print(f"{env_id}: batched / local = {r['batched_over_local_wall_s']:.2f} wall, "
                  f"{r['batched_over_local_cpu_s']:.2f} CPU (target ≤ 0.5); load average "
                  f"{r['load_after']:.2f}; final evals local {r['local']['final_eval']}, "
                  f"batched {r['batched']['final_eval']}", flush=True)
            if "sb3" in r:
                print(f"{env_id}: SB3 / batched = {r['sb3_over_batched_wall_s']:.1f} wall, "
                      f"{r['sb3_over_batched_cpu_s']:.1f} CPU (target ≥ 10); SB3 final evals "
                      f"{r['sb3']['final_eval']}", flush=True)
            if args.out:
                with args.out.open("a") as f:
                    f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
