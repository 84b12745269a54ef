# Shared body of the PBT-vs-baseline comparison scripts (sourced, not run).
# The caller sets SCRIPT, ENV_ARGS (env flags), PARAM_NAME, BASELINE_DESCRIPTION and the sizes
# (RANKS, TIMESTEPS, STEPS_PER_GEN, N_ENVS, N_STEPS, EVAL_EPISODES, STRATEGY, SEED, REPLAY,
# LOG_DIR, OUT, OVERWRITE); this file finds PYTHON and MPIEXEC, checks the sizes, runs PBT,
# the baseline, the replay and the report.
# shellcheck shell=bash
# shellcheck source=experiments/launcher.sh
source experiments/launcher.sh

ROLLOUT=$((N_ENVS * N_STEPS))
if (( STEPS_PER_GEN % ROLLOUT != 0 || TIMESTEPS % STEPS_PER_GEN != 0 )); then
    echo "$SCRIPT: error: STEPS_PER_GEN ($STEPS_PER_GEN) must be a multiple of N_ENVS*N_STEPS ($ROLLOUT)" \
         "and TIMESTEPS ($TIMESTEPS) a multiple of STEPS_PER_GEN" >&2
    exit 2
fi
GENERATIONS=$((TIMESTEPS / STEPS_PER_GEN))
PBT_NAME="pbt-$STRATEGY-n$RANKS-s$SEED"
BASE_NAME="baseline-n$RANKS-s$SEED"
EXTRA=()
[[ "$OVERWRITE" == 1 ]] && EXTRA+=(--overwrite)
COMMON=("${ENV_ARGS[@]}" --n-envs "$N_ENVS" --n-steps "$N_STEPS" --eval-episodes "$EVAL_EPISODES"
        --seed "$SEED" --log-dir "$LOG_DIR" "${EXTRA[@]}")

echo "== PBT ($STRATEGY): $RANKS members, $GENERATIONS generations x $STEPS_PER_GEN env steps per member"
"$MPIEXEC" "${LAUNCH_ARGS[@]}" -n "$RANKS" "$PYTHON" -m "evo.$STRATEGY" "${COMMON[@]}" \
    --generations "$GENERATIONS" --steps-per-generation "$STEPS_PER_GEN" --exp-name "$PBT_NAME"

echo "== baseline ($BASELINE_DESCRIPTION): $RANKS seeds x $TIMESTEPS env steps"
"$MPIEXEC" "${LAUNCH_ARGS[@]}" -n "$RANKS" "$PYTHON" -m evo.baseline "${COMMON[@]}" --param-name "$PARAM_NAME" \
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
