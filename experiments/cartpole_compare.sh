#!/usr/bin/env bash
# PBT vs baseline on CartPole-v1 at an equal env-step budget per member, then the winner's
# schedule replayed on a fresh agent, then `python -m evo.report` over all three.
#
# Default size: 4 ranks x 32768 env steps per member, evaluated every 2048 steps; a few minutes
# on a 2-core laptop. Scale with environment variables, e.g.
#   RANKS=16 TIMESTEPS=200000 STEPS_PER_GEN=4096 experiments/cartpole_compare.sh
#
# Settings (environment variables):
#   RANKS          PBT members = baseline seeds = MPI ranks (default 4)
#   TIMESTEPS      env steps per member, for PBT and baseline alike (default 32768)
#   STEPS_PER_GEN  env steps per PBT generation = baseline evaluation interval (default 2048)
#   N_ENVS, N_STEPS  rollout of every member (default 8 x 32, the baseline's cartpole set)
#   EVAL_EPISODES  episodes per evaluation (default 10)
#   STRATEGY       wta | truncation | truncation_collective (default truncation)
#   SEED           base seed (default 0)
#   REPLAY         1: also replay the winner's schedule on one fresh agent (default 1)
#   LOG_DIR        where the runs go (default logs/experiments/cartpole)
#   OUT            report directory (default $LOG_DIR/report)
#   OVERWRITE      1: delete earlier runs of the same names first (default 0: refuse)
#   PYTHON         interpreter (default .venv/bin/python if present, else python3)
#   MPIEXEC        launcher (default: mpiexec next to PYTHON, else on PATH)
#   MPIEXEC_ARGS   extra launcher arguments, e.g. "--oversubscribe" for Open MPI
set -euo pipefail
cd "$(dirname "$0")/.."

RANKS=${RANKS:-4}
TIMESTEPS=${TIMESTEPS:-32768}
STEPS_PER_GEN=${STEPS_PER_GEN:-2048}
N_ENVS=${N_ENVS:-8}
N_STEPS=${N_STEPS:-32}
EVAL_EPISODES=${EVAL_EPISODES:-10}
STRATEGY=${STRATEGY:-truncation}
SEED=${SEED:-0}
REPLAY=${REPLAY:-1}
LOG_DIR=${LOG_DIR:-logs/experiments/cartpole}
OUT=${OUT:-$LOG_DIR/report}
OVERWRITE=${OVERWRITE:-0}
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
if [[ -z "${MPIEXEC:-}" ]]; then
    MPIEXEC="$(dirname "$PYTHON")/mpiexec"
    [[ -x "$MPIEXEC" ]] || MPIEXEC=$(command -v mpiexec || true)
fi
[[ -n "$MPIEXEC" ]] || { echo "cartpole_compare: error: no mpiexec (pip install mpich, or set MPIEXEC)" >&2; exit 2; }
read -r -a LAUNCH_ARGS <<< "${MPIEXEC_ARGS:-}"

ROLLOUT=$((N_ENVS * N_STEPS))
if (( STEPS_PER_GEN % ROLLOUT != 0 || TIMESTEPS % STEPS_PER_GEN != 0 )); then
    echo "cartpole_compare: error: STEPS_PER_GEN ($STEPS_PER_GEN) must be a multiple of N_ENVS*N_STEPS ($ROLLOUT)" \
         "and TIMESTEPS ($TIMESTEPS) a multiple of STEPS_PER_GEN" >&2
    exit 2
fi
GENERATIONS=$((TIMESTEPS / STEPS_PER_GEN))
PBT_NAME="pbt-$STRATEGY-n$RANKS-s$SEED"
BASE_NAME="baseline-n$RANKS-s$SEED"
EXTRA=()
[[ "$OVERWRITE" == 1 ]] && EXTRA+=(--overwrite)
COMMON=(--env-id CartPole-v1 --n-envs "$N_ENVS" --n-steps "$N_STEPS" --eval-episodes "$EVAL_EPISODES"
        --seed "$SEED" --log-dir "$LOG_DIR" "${EXTRA[@]}")

echo "== PBT ($STRATEGY): $RANKS members, $GENERATIONS generations x $STEPS_PER_GEN env steps per member"
"$MPIEXEC" "${LAUNCH_ARGS[@]}" -n "$RANKS" "$PYTHON" -m "evo.$STRATEGY" "${COMMON[@]}" \
    --generations "$GENERATIONS" --steps-per-generation "$STEPS_PER_GEN" --exp-name "$PBT_NAME"

echo "== baseline (RL Zoo's tuned CartPole PPO settings): $RANKS seeds x $TIMESTEPS env steps"
"$MPIEXEC" "${LAUNCH_ARGS[@]}" -n "$RANKS" "$PYTHON" -m evo.baseline "${COMMON[@]}" --param-name cartpole \
    --num-timesteps "$TIMESTEPS" --eval-every "$STEPS_PER_GEN" --exp-name "$BASE_NAME"

RUNS=("$LOG_DIR/$PBT_NAME" "$LOG_DIR/$BASE_NAME")
if [[ "$REPLAY" == 1 ]]; then
    echo "== replay of the PBT winner's hyperparameter schedule on one fresh agent"
    "$PYTHON" -m evo.replay "$LOG_DIR/$PBT_NAME" "${EXTRA[@]}"
    RUNS+=("$LOG_DIR/$PBT_NAME-replay")
fi

echo "== report"
"$PYTHON" -m evo.report "${RUNS[@]}" --out "$OUT"
echo "summary: $OUT/summary.md"
