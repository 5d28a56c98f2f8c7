"""Did a change alter learning? The same PPO runs with two revisions of pgrun, side by side.

    python benchmarks/learning_ab.py e1d70e3                  # that revision vs the working tree
    python benchmarks/learning_ab.py e1d70e3 HEAD --seeds 10 --presets zoo cleanrl
    python benchmarks/learning_ab.py ce75b5b --presets vpg/CartPole-v1 ppo/Pendulum-v1

Each revision is checked out into a temporary git worktree; every run is
``benchmarks/speed.py --child pgrun PRESET STEPS SEED`` of the working tree's speed.py
(its presets ``zoo`` and ``cleanrl``: RL Zoo's and CleanRL's CartPole settings, final
greedy evaluation of 10 episodes), or for a preset named ``ALGO/ENV`` (e.g.
``vpg/CartPole-v1``) ``--child tuned``: that tuned preset as ``pgrun train`` runs it, the
mean of its last 3 evaluations. Each run imports that revision's ``pgrun`` package
(``PYTHONPATH``), so only the library differs. Reports, per preset, each revision's final
returns, their means and a two-sided Mann–Whitney U test, and the training speed. A speed-up should leave the
returns' distribution alone; float-level differences still change individual seeds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from scipy.stats import mannwhitneyu

ROOT = Path(__file__).resolve().parent.parent
SPEED = ROOT / "benchmarks" / "speed.py"


def checkout(rev: str, where: Path) -> Path:
    """A worktree of ``rev`` (``WORKTREE``: the working tree itself)."""
    if rev == "WORKTREE":
        return ROOT
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(where), rev],
                   check=True)
    return where


def run(tree: Path, preset: str, steps: int, seed: int) -> dict:
    kind = "tuned" if "/" in preset else "pgrun"
    out = subprocess.run([sys.executable, str(SPEED), "--child", kind, preset, str(steps),
                          str(seed)], cwd=tree, env={**os.environ, "PYTHONPATH": str(tree)},
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{tree} {preset} seed {seed} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base", help="git revision to compare against")
    parser.add_argument("new", nargs="?", default="WORKTREE",
                        help="git revision (default: the working tree)")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--presets", nargs="+", default=["zoo", "cleanrl"])
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        trees = {}
        try:
            for label, rev in (("base", args.base), ("new", args.new)):
                trees[label] = checkout(rev, Path(tmp) / label)
            for preset in args.presets:
                results = {label: [] for label in trees}
                for seed in range(args.seeds):  # alternate the revisions
                    for label, tree in trees.items():
                        results[label].append(run(tree, preset, args.steps, seed))
                finals = {k: [r["final_eval"] for r in v] for k, v in results.items()}
                sps = {k: statistics.median(r["steps"] / r["wall_s"] for r in v)
                       for k, v in results.items()}
                p = mannwhitneyu(finals["base"], finals["new"]).pvalue \
                    if finals["base"] != finals["new"] else 1.0
                print(f"{preset}: final eval mean {statistics.mean(finals['base']):.1f} "
                      f"({args.base}) vs {statistics.mean(finals['new']):.1f} ({args.new}), "
                      f"Mann-Whitney p = {p:.2f}; median steps/s {sps['base']:,.0f} vs "
                      f"{sps['new']:,.0f}")
                for label in trees:
                    print(f"  {label}: {[round(x, 1) for x in finals[label]]}")
        finally:
            for tree in trees.values():
                if tree != ROOT:
                    subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                                    str(tree)], check=False)


if __name__ == "__main__":
    main()
