"""Wall time of a seed sweep run serially (Hydra's basic launcher) and in parallel
(``hydra/launcher=local``: joblib, one process per core, one torch thread each).

    python benchmarks/sweep_parallel.py                     # 10 seeds × PPO CartPole 100k
    python benchmarks/sweep_parallel.py --seeds 4 --steps 20000 --keep outputs/bench

Both sweeps run the real ``pgrun train -m`` command in a subprocess, one after the other,
into fresh sweep folders; the target is parallel ≤ 0.6 × serial on 2 cores. The load
average before and after each sweep is printed: other work on the machine slows either.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run_sweep(sweep_dir: Path, seeds: int, steps: int, extra: list[str]) -> dict:
    cmd = [sys.executable, "-m", "pgrun", "train", "-m", f"hydra.sweep.dir={sweep_dir}",
           "algo=ppo", "env=CartPole-v1", f"seed=range({seeds})", f"total_steps={steps}",
           "progress=none", *extra]
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        sys.exit(f"sweep failed ({' '.join(cmd)}):\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    summaries = [json.loads(p.read_text()) for p in sweep_dir.glob("*/summary.json")]
    assert len(summaries) == seeds and all(s["status"] == "complete" for s in summaries)
    return {"wall_s": wall, "load_before": load_before, "load_after": os.getloadavg()[0],
            "run_wall_s": sorted(s["wall_time_s"] for s in summaries),
            "final_eval": sorted(s["final_eval_return"] for s in summaries)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--jobs", type=int, default=-1, help="joblib n_jobs (-1: every core)")
    parser.add_argument("--keep", type=Path, help="write the sweeps here (default: a temp dir)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        print(f"{args.seeds} seeds × PPO CartPole-v1, {args.steps:,} steps each; "
              f"{os.cpu_count()} CPUs")
        results = {}
        for name, extra in (("serial", []),
                            ("parallel", ["hydra/launcher=local",
                                          f"hydra.launcher.n_jobs={args.jobs}"])):
            r = results[name] = run_sweep(root / name, args.seeds, args.steps, extra)
            median = r["run_wall_s"][len(r["run_wall_s"]) // 2]
            print(f"{name:>8}: {r['wall_s']:6.1f} s wall (median run {median:.1f} s; load "
                  f"average {r['load_before']:.2f} before, {r['load_after']:.2f} after)",
                  flush=True)
        ratio = results["parallel"]["wall_s"] / results["serial"]["wall_s"]
        print(f"parallel / serial = {ratio:.2f} (target ≤ 0.60)")


if __name__ == "__main__":
    main()
