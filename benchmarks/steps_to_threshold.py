"""Learning benchmark: env steps until the eval return reaches the env's threshold, per seed.

Runs ``pgrun train`` once per (algo, seed) as separate processes (``--jobs`` at a time,
one torch thread each), then tabulates each run's summary.json. Example (the tuned
presets' budgets, about 10 minutes on 2 cores):

    python benchmarks/steps_to_threshold.py --algos ppo reinforce vpg --seeds 10

Extra arguments after ``--`` are passed to every run as Hydra overrides.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def run_one(algo: str, env: str, seed: int, steps: int | None, out: Path, extra: list[str]) -> dict:
    run_dir = out / f"{algo}_{env}_s{seed}"
    budget = [] if steps is None else [f"total_steps={steps}"]
    cmd = [sys.executable, "-m", "pgrun", "train", f"algo={algo}", f"env={env}", f"seed={seed}",
           *budget, "progress=none", f"hydra.run.dir={run_dir}", *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"algo": algo, "seed": seed, "error": proc.stderr.strip()[-500:]}
    return json.loads((run_dir / "summary.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algos", nargs="+", default=["ppo"])
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--steps", type=int, default=None,
                        help="total_steps of every run (default: the preset's)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("outputs/benchmarks/steps_to_threshold"))
    parser.add_argument("extra", nargs="*", help="Hydra overrides for every run (after --)")
    args = parser.parse_args()
    out = args.out / time.strftime("%Y-%m-%d_%H-%M-%S")

    jobs = [(a, s) for a in args.algos for s in range(args.seeds)]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(
            lambda job: run_one(job[0], args.env, job[1], args.steps, out, args.extra), jobs))
    wall = time.perf_counter() - t0

    print(f"{args.env}, {args.steps or 'preset'} steps, overrides {args.extra or 'none'}; runs in {out}")
    print(f"{'algo':<10} {'seed':>4} {'steps_to_thr':>12} {'final_eval':>10} {'wall_s':>7} {'sps':>7}")
    for algo in args.algos:
        rows = [r for r in results if r["algo"] == algo]
        for r in rows:
            if "error" in r:
                print(f"{algo:<10} {r['seed']:>4} ERROR {r['error']}")
                continue
            print(f"{algo:<10} {r['seed']:>4} {r['steps_to_threshold']!s:>12} "
                  f"{r['final_eval_return']:>10.1f} {r['wall_time_s']:>7.1f} {r['sps']:>7.0f}")
        ok = [r for r in rows if "error" not in r]
        reached = [r["steps_to_threshold"] for r in ok if r["steps_to_threshold"] is not None]
        med = statistics.median(reached) if reached else None
        print(f"{algo:<10} reached {len(reached)}/{len(rows)} seeds; median steps {med}; "
              f"median wall {statistics.median(r['wall_time_s'] for r in ok):.1f} s")
    print(f"total wall {wall:.0f} s with {args.jobs} jobs")


if __name__ == "__main__":
    main()
