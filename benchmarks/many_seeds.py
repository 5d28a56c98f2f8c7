"""Throughput of seed batching against K, the number of seeds in one process: PPO on a
classic-control preset, K seeds trained together in this process (``batched.train_seeds``,
no evaluations, one checkpoint at the end), on the CPU or a GPU.

    python benchmarks/many_seeds.py                              # K = 1, 4, 16 on the CPU
    python benchmarks/many_seeds.py --device cuda --seeds 1 16 64 256 --steps 20000

For each K it prints the wall time, the environment steps per second of the K seeds
together, and seeds per hour at the budget (K × 3600 / wall); ``--out`` appends the rows
as JSON lines. Issue 15's GPU target: 256 seeds in one process on the GPU, against the CPU.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path


def run(env: str, seeds: int, steps: int, device: str) -> dict:
    from hydra import compose, initialize_config_dir

    from pgrun.batched import train_seeds
    from pgrun.cli import CONF_DIR
    from pgrun.config import register

    register()
    overrides = [f"env={env}", f"total_steps={steps}", "progress=none", "eval.interval=0",
                 f"device={device}", "checkpoint.every=0"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfgs = [compose("config", overrides=[*overrides, f"seed={s}"]) for s in range(seeds)]
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        results = train_seeds(cfgs, [Path(tmp) / f"s{s}" for s in range(seeds)])
        wall = time.perf_counter() - t0
    bad = [r for r in results if not isinstance(r, dict) or r["status"] != "complete"]
    if bad:
        raise SystemExit(f"{len(bad)} of {seeds} runs did not complete: {bad[0]}")
    total = sum(r["steps"] for r in results)
    return {"env": env, "seeds": seeds, "steps": steps, "device": device, "wall_s": wall,
            "steps_per_s": total / wall, "seeds_per_hour": seeds * 3600 / wall,
            "update_path": results[0]["update_path"], "host": platform.node()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, help="append the results (JSON lines) here")
    args = parser.parse_args()
    from pgrun.train import limit_threads

    limit_threads(1)
    run(args.env, 1, 512, args.device)  # warm-up: imports, first-call costs
    for k in args.seeds:
        row = run(args.env, k, args.steps, args.device)
        print(f"{args.env} K={k:4d} {args.device}: {row['wall_s']:8.1f} s, "
              f"{row['steps_per_s']:9.0f} steps/s, {row['seeds_per_hour']:8.0f} seeds/h "
              f"({row['update_path']})", flush=True)
        if args.out:
            with args.out.open("a") as f:
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
