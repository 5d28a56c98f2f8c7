#!/usr/bin/env bash
# The results table in docs/results/: every tuned preset, 10 seeds, trained with pgrun's own
# sweep command and summarized by `pgrun compare`. Runs on all cores (hydra/launcher=local).
#   benchmarks/results.sh                 # everything (about 40 minutes on 2 cores)
#   benchmarks/results.sh cartpole grid   # some of the sweeps, then the report
#   LAUNCHER=batched SWEEP_ARGS="hydra.launcher.n_jobs=1" benchmarks/results.sh lunarlander
#                                         # seed-batched, one process at a time
# Sweeps already complete are skipped on a rerun (resume=auto), so it can be continued.
set -euo pipefail
cd "$(dirname "$0")/.."
PGRUN=${PGRUN:-pgrun}
OUT=${OUT:-outputs/results}
SEEDS=${SEEDS:-'range(10)'}
LAUNCHER=${LAUNCHER:-local}
read -r -a SWEEP_ARGS <<< "${SWEEP_ARGS:-}"  # more overrides for every sweep

sweep() {  # name, overrides...
  local name=$1; shift
  echo "== $name: $*"
  $PGRUN train -m "hydra/launcher=$LAUNCHER" progress=none "seed=$SEEDS" \
    "hydra.sweep.dir=$OUT/$name" ${SWEEP_ARGS[@]+"${SWEEP_ARGS[@]}"} "$@"
}

run() {
  case $1 in
    cartpole) sweep cartpole algo=reinforce,vpg,ppo,grpo,ppo_kl,trpo env=CartPole-v1 ;;
    acrobot) sweep acrobot algo=ppo env=Acrobot-v1 ;;
    pendulum) sweep pendulum algo=ppo,ppo_kl,trpo env=Pendulum-v1 ;;
    lunarlander) sweep lunarlander algo=ppo env=LunarLander-v3 ;;
    grid) sweep grid algo=reinforce env=GridWorld-v0 ;;
    bandit) sweep bandit algo=reinforce env=Bandit-v0 ;;
    *) echo "unknown sweep $1" >&2; exit 2 ;;
  esac
}

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(cartpole grid bandit acrobot pendulum lunarlander)
for t in "${targets[@]}"; do run "$t"; done
$PGRUN compare "$OUT" --out docs/results
