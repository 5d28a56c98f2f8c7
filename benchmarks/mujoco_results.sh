#!/usr/bin/env bash
# docs/results/mujoco/: PPO with CleanRL's ppo_continuous_action settings (the env presets and
# conf/hparams/ppo_mujoco.yaml) on Hopper-v5, HalfCheetah-v5 and Walker2d-v5, 1M steps × 5 seeds,
# the 5 seeds of an env in one process (hydra/launcher=batched), one env at a time, then
# `pgrun compare` → docs/results/mujoco/ (greedy evaluations) and docs/results/mujoco/train/
# (training returns); unfinished runs included: the report says which budget every env was
# compared at.
#   benchmarks/mujoco_results.sh                     # all three (hours on 2 cores), then the report
#   benchmarks/mujoco_results.sh hopper              # some of them, then the report
#   benchmarks/mujoco_results.sh report              # the report only
#   ALGO=trpo benchmarks/mujoco_results.sh hopper    # TRPO (conf/hparams/trpo_mujoco.yaml: RL
#                                                    # Zoo's settings) beside PPO in the report
#   ALGO=vpg benchmarks/mujoco_results.sh hopper     # VPG (conf/hparams/vpg_mujoco.yaml: Spinning
#                                                    # Up's settings), likewise
# Runs go to $OUT (default outputs/results-mujoco). A sweep killed part-way continues from each
# seed's checkpoint when the same command runs again (resume=auto); complete seeds are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
PGRUN=${PGRUN:-pgrun}
OUT=${OUT:-outputs/results-mujoco}
SEEDS=${SEEDS:-'range(5)'}
ALGO=${ALGO:-ppo}

sweep() {  # name, env
  local dir=$OUT/$1  # PPO's sweeps keep their first names; another algorithm's: trpo-hopper, ...
  [ "$ALGO" = ppo ] || dir=$OUT/$ALGO-$1
  echo "== $1: algo=$ALGO env=$2 seed=$SEEDS ($(date -u +%H:%M) UTC)"
  $PGRUN train -m hydra/launcher=batched hydra.launcher.n_jobs=1 hydra.launcher.seeds_per_process=5 \
    progress=none "algo=$ALGO" "seed=$SEEDS" "env=$2" "hydra.sweep.dir=$dir"
}

run() {
  case $1 in
    hopper) sweep hopper Hopper-v5 ;;
    halfcheetah) sweep halfcheetah HalfCheetah-v5 ;;
    walker2d) sweep walker2d Walker2d-v5 ;;
    report) ;;
    *) echo "unknown sweep $1" >&2; exit 2 ;;
  esac
}

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(hopper halfcheetah walker2d)
for t in "${targets[@]}"; do run "$t"; done
# greedy evaluations (eval.csv), and training returns (metrics.csv: the stochastic policy's
# episodes, the figure CleanRL's benchmark table reports)
$PGRUN compare "$OUT" --include-unfinished --out docs/results/mujoco
$PGRUN compare "$OUT" --include-unfinished --curve train --out docs/results/mujoco/train
