# Shared body of the method-comparison scripts (sourced, not run): PBT (truncation), PB2, random
# search and two single-agent baselines on one task, at the same env steps per member, then
# `python -m evo.report` over all of them. The caller sets SCRIPT, TASK, ENV_ARGS, TUNED_SET,
# TUNED_LABEL, GENERATIONS and STEPS_PER_GEN; RANKS (8), MEMBERS (= RANKS), SEEDS ("0 100 200"),
# BASE_SEED (1000) and EVAL_EPISODES (10) default here. Every size can be set from the environment.
#
# Protocol (fixed before any result was seen; see experiments/results/README.md):
#   * PBT, PB2 and random search share everything but the exploit/explore step: MEMBERS members on
#     RANKS ranks, SB3's default PPO run settings (1 env, 2048-step rollouts, 64x64 MLP), initial
#     hyperparameters drawn from evo's default PPO search space (whose initial ranges contain SB3's
#     defaults), GENERATIONS x STEPS_PER_GEN env steps per member, truncation with quantile 0.25.
#     Random search is the same population with --no-exchange (no exploit, no explore). One run per
#     seed in SEEDS; a seed gives all three variants the same initial population.
#   * Baselines: MEMBERS seeds (base seed BASE_SEED) of SB3's PPO defaults (param set baseline3) and
#     of the RL Zoo's tuned set (TUNED_SET), trained for the same env steps per member and evaluated
#     every STEPS_PER_GEN steps.
#   * Every run evaluates EVAL_EPISODES paired, deterministic episodes per evaluation; the reported
#     score is the final evaluation on unseen episodes (PBT variants: the member selection ranked
#     first; baselines: every seed). Statistics: evo.report (IQM, 95 % stratified-bootstrap CIs,
#     probability of improvement; bootstrap seed 0).
#
# A run whose summary.json exists is kept (rerun the script after an interruption and it goes on
# with the runs left); OVERWRITE=1 redoes every run.
# shellcheck shell=bash
# shellcheck source=experiments/launcher.sh
source experiments/launcher.sh
RANKS=${RANKS:-8}
MEMBERS=${MEMBERS:-$RANKS}
SEEDS=${SEEDS:-0 100 200}
BASE_SEED=${BASE_SEED:-1000}
EVAL_EPISODES=${EVAL_EPISODES:-10}
read -r -a SEED_LIST <<< "$SEEDS"
TIMESTEPS=$((GENERATIONS * STEPS_PER_GEN))
LOG_DIR=${LOG_DIR:-logs/experiments/$TASK}
OUT=${OUT:-experiments/results/$TASK}
COMMON=("${ENV_ARGS[@]}" --eval-episodes "$EVAL_EPISODES" --log-dir "$LOG_DIR" --num-agents "$MEMBERS"
        --no-tb-writer --verbose "${VERBOSE:-1}" --overwrite)
START=$SECONDS

run() {  # run NAME ENTRY-POINT ARGS...: one evo run, skipped when it has finished before
    local name=$1 entry=$2
    shift 2
    if [[ "${OVERWRITE:-0}" != 1 && -f "$LOG_DIR/$name/summary.json" ]]; then
        echo "== $name: done before, kept"
        return
    fi
    echo "== $name ($(( (SECONDS - START) / 60 )) min so far)"
    "$MPIEXEC" "${LAUNCH_ARGS[@]}" -n "$RANKS" "$PYTHON" -m "$entry" "${COMMON[@]}" --exp-name "$name" "$@"
}

PBT_ARGS=(--generations "$GENERATIONS" --steps-per-generation "$STEPS_PER_GEN" --n-envs 1 --n-steps 2048)
REPORT_ARGS=()
for seed in "${SEED_LIST[@]}"; do
    run "pbt-s$seed" evo.truncation "${PBT_ARGS[@]}" --seed "$seed"
    run "pb2-s$seed" evo.truncation "${PBT_ARGS[@]}" --seed "$seed" --explore pb2
    run "random-s$seed" evo.truncation "${PBT_ARGS[@]}" --seed "$seed" --no-exchange
    REPORT_ARGS+=("PBT (truncation)=$LOG_DIR/pbt-s$seed" "PB2=$LOG_DIR/pb2-s$seed"
                  "random search=$LOG_DIR/random-s$seed")
done
BASE_ARGS=(--num-timesteps "$TIMESTEPS" --eval-every "$STEPS_PER_GEN" --seed "$BASE_SEED")
run "sb3-defaults" evo.baseline "${BASE_ARGS[@]}" --param-name baseline3
run "tuned" evo.baseline "${BASE_ARGS[@]}" --param-name "$TUNED_SET"
REPORT_ARGS+=("SB3 defaults=$LOG_DIR/sb3-defaults" "$TUNED_LABEL=$LOG_DIR/tuned")

echo "== report ($(( (SECONDS - START) / 60 )) min so far)"
"$PYTHON" -m evo.report "${REPORT_ARGS[@]}" --budget "$TIMESTEPS" --out "$LOG_DIR/report"
mkdir -p "$OUT"
cp "$LOG_DIR/report/summary.md" "$LOG_DIR/report/report.json" "$LOG_DIR/report/profile.png" \
   "$LOG_DIR/report/scores.png" "$OUT/"
echo "$SCRIPT: $(( (SECONDS - START) / 60 )) min; report in $LOG_DIR/report, copied to $OUT"
