#!/usr/bin/env bash
# One short PBT-vs-baseline run per off-policy learner (SAC, TD3) on Pendulum-v1.
#
# Protocol (fixed before any result was seen): 4 members / 4 seeds, 6 generations x 1000 env steps
# per member (6000 steps), 1 env per member, truncation (quantile 0.25) from evo's default search
# space, 5 evaluation episodes; baselines: the RL Zoo's tuned SAC set, and SB3's TD3 defaults
# (the Zoo's TD3 set starts learning only after 10,000 steps, beyond this budget). One PBT seed:
# a smoke-sized comparison, not a result; scale GENERATIONS/SEEDS up for one.
# Takes 29 minutes on a 2-core machine (measured while other jobs shared it; less alone).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
MPIEXEC=${MPIEXEC:-.venv/bin/mpiexec}
OUT=${OUT:-logs/offpolicy}
GENERATIONS=${GENERATIONS:-6}
STEPS=1000
common=(--env-id Pendulum-v1 --n-envs 1 --eval-episodes 5 --log-dir "$OUT" --no-tb-writer --verbose 0)
for algo in sac td3; do
  set_name=$([ "$algo" = sac ] && echo zoo-sac-pendulum || echo sb3-td3)
  "$MPIEXEC" -n 4 "$PY" -m evo.truncation --algo "$algo" "${common[@]}" --generations "$GENERATIONS" \
    --steps-per-generation "$STEPS" --exp-name "pbt-$algo" --overwrite
  "$MPIEXEC" -n 4 "$PY" -m evo.baseline --algo "$algo" --param-name "$set_name" "${common[@]}" \
    --num-timesteps $((GENERATIONS * STEPS)) --eval-every "$STEPS" --exp-name "base-$algo" --overwrite
  "$PY" -m evo.report "$OUT/pbt-$algo" "$OUT/base-$algo" --out "$OUT/report-$algo"
done
