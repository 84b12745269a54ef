#!/usr/bin/env bash
# PBT vs a baseline for the off-policy learners (SAC, TD3) on Pendulum-v1.
#
# Protocol (fixed before any result was seen): 4 members / 4 seeds, 6 generations x 1000 env steps
# per member (6000 steps), 1 env per member, truncation (quantile 0.25) from evo's default search
# space, 5 evaluation episodes; baselines: the RL Zoo's tuned SAC set, and SB3's TD3 defaults
# (the Zoo's TD3 set starts learning only after 10,000 steps, beyond this budget), seeds 1000-1003.
# One PBT run per seed in SEEDS (spaced by more than the population: member i uses seed + i).
#
# Time here (2 cores): about 7 minutes per PBT run and per baseline run of SAC, more for TD3;
# the defaults (sac and td3, one PBT seed) about 30 minutes. A run can take far longer: explore may
# resample gradient_steps up to 64 per env step (experiments/results/README.md, "SAC"); bound it
# with --hyperparams when wall time matters.
# Scale up with GENERATIONS, STEPS (per generation), RANKS.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
MPIEXEC=${MPIEXEC:-.venv/bin/mpiexec}
OUT=${OUT:-logs/offpolicy}
GENERATIONS=${GENERATIONS:-6}
STEPS=${STEPS:-1000}
RANKS=${RANKS:-4}
ALGOS=${ALGOS:-sac td3}
read -r -a SEED_LIST <<< "${SEEDS:-0}"
common=(--env-id Pendulum-v1 --n-envs 1 --eval-episodes 5 --log-dir "$OUT" --no-tb-writer --verbose 0)
for algo in $ALGOS; do
  set_name=$([ "$algo" = sac ] && echo zoo-sac-pendulum || echo sb3-td3)
  runs=()
  for seed in "${SEED_LIST[@]}"; do
    "$MPIEXEC" -n "$RANKS" "$PY" -m evo.truncation --algo "$algo" "${common[@]}" --generations "$GENERATIONS" \
      --steps-per-generation "$STEPS" --seed "$seed" --exp-name "pbt-$algo-s$seed" --overwrite
    runs+=("PBT (truncation)=$OUT/pbt-$algo-s$seed")
  done
  "$MPIEXEC" -n "$RANKS" "$PY" -m evo.baseline --algo "$algo" --param-name "$set_name" "${common[@]}" \
    --num-timesteps $((GENERATIONS * STEPS)) --eval-every "$STEPS" --seed 1000 --exp-name "base-$algo" --overwrite
  "$PY" -m evo.report "${runs[@]}" "$set_name=$OUT/base-$algo" --out "$OUT/report-$algo"
done
