#!/usr/bin/env bash
# docs/results/atari/: PPO with CleanRL's ppo_atari settings (conf/env/Pong-v5.yaml and
# conf/hparams/ppo_Pong-v5.yaml: 2.5M steps = 10M frames) on Pong, a run at a time in slices
# of SLICE seconds: each slice is stopped by SIGTERM (a checkpoint at the next update) and
# the same command continues it (resume=auto), so a run longer than a session goes on in the
# next one. Then `pgrun compare` → docs/results/atari (sampled evaluations of 8 whole games,
# unclipped scores) and docs/results/atari/train (training episodes, the stochastic policy's
# unclipped game scores); unfinished runs included: the report says the budget compared.
#   benchmarks/atari_results.sh                 # seed 0 for one slice, then the report
#   SEEDS="0 1" SLICE=7200 benchmarks/atari_results.sh
#   benchmarks/atari_results.sh report          # the report only
#   REPORT=no SEEDS=2 benchmarks/atari_results.sh   # the runs only: docs/results/atari untouched
# Runs go to $OUT/ppo_<env><TAG>_s<seed> (default OUT=outputs/results-atari, ENV=Pong-v5).
# EXTRA adds overrides (a variant: give it its own TAG), e.g. CleanRL's kind of env and
# learning-rate schedule: no sticky actions (as PongNoFrameskip-v4), lr annealed over 10M
# steps as CleanRL's ppo_atari, stopped after 1,221 updates = 1.25M steps = 5M frames:
#   TAG=_nosticky EXTRA="+env.kwargs.repeat_action_probability=0.0 total_steps=10000000
#     checkpoint.stop_after_updates=1221" SLICE=7200 benchmarks/atari_results.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PGRUN=${PGRUN:-pgrun}
OUT=${OUT:-outputs/results-atari}
ENV=${ENV:-Pong-v5}
SEEDS=${SEEDS:-0}
SLICE=${SLICE:-3600}
TAG=${TAG:-}
EXTRA=${EXTRA:-}
REPORT=${REPORT:-yes}

if [ "${1:-}" != report ]; then
  for seed in $SEEDS; do
    echo "== env=$ENV seed=$seed, a slice of ${SLICE}s ($(date -u +%H:%M) UTC)"
    rc=0  # 124: the slice ended (checkpointed); run the script again to continue
    # shellcheck disable=SC2086  # EXTRA: several overrides
    timeout -s TERM "$SLICE" $PGRUN train "env=$ENV" "seed=$seed" checkpoint.every=10 $EXTRA \
      "hydra.run.dir=$OUT/ppo_${ENV}${TAG}_s$seed" || rc=$?
    [ $rc -eq 0 ] || [ $rc -eq 124 ] || exit $rc
  done
fi
[ "$REPORT" != no ] || exit 0
$PGRUN compare "$OUT" --include-unfinished --out docs/results/atari
$PGRUN compare "$OUT" --include-unfinished --curve train --out docs/results/atari/train
