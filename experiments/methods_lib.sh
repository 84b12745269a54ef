# Shared body of the method-comparison scripts (sourced, not run): PBT (truncation), random search,
# PB2 and two single-agent baselines on one task, at the same env steps per member, then
# `python -m evo.report` over all of them. The caller sets SCRIPT, TASK, ENV_ARGS, TUNED_SET,
# TUNED_LABEL, GENERATIONS and STEPS_PER_GEN; RANKS (8), MEMBERS (= RANKS), SEEDS ("0 100 200 300
# 400"), VARIANTS ("pbt random pb2"), BASE_SEED (1000), BASE_SEEDS (40: 5 disjoint groups of 8 for the
# compute-matched rows), BASE_RANKS (= RANKS) and EVAL_EPISODES (10) default here. Every size can be set from the environment.
#
# Protocol (fixed before any result of this version was seen; see experiments/results/README.md):
#   * PBT, random search and PB2 (--explore pb2) share everything but the exploit/explore step:
#     MEMBERS members on RANKS ranks, SB3's default PPO run settings (1 env, 2048-step rollouts,
#     64x64 MLP), initial hyperparameters drawn from evo's default PPO search space (ranges from the
#     RL Zoo's Optuna sampler, evo/learners/ppo.py), GENERATIONS x STEPS_PER_GEN env steps per
#     member, truncation with quantile 0.25, evo's default explore (and its cost cap,
#     --max-cost-ratio 2.5). Random search is the same population with --no-exchange (no exploit,
#     no explore). One run per seed in SEEDS; a seed gives every variant the same initial population.
#   * Baselines: BASE_SEEDS seeds (BASE_SEED, BASE_SEED + 1, ...) of SB3's PPO defaults (param set
#     baseline3) and of the RL Zoo's tuned set (TUNED_SET), trained for the same env steps per member
#     and evaluated every STEPS_PER_GEN steps.
#   * Every run evaluates EVAL_EPISODES paired, deterministic episodes per evaluation; the reported
#     score is the final evaluation on unseen episodes (population variants: the member ranked first
#     at the last evaluation; baselines: every seed, and, compute-matched with a population of
#     MEMBERS, the best of each disjoint group of MEMBERS seeds chosen on its last evaluation).
#   * Statistics: evo.report (rliable). With 5 or more runs a row gets its IQM and a 95 % stratified
#     bootstrap CI (bootstrap seed 0); with fewer, n, median and min-max only. P(improvement) with a
#     CI where both sides have 5 or more runs, a point estimate otherwise.
#   * Comparisons named in advance: PBT vs random search (both compute-matched, seed by seed and as
#     rows), PBT vs the SB3 defaults' best of MEMBERS seeds (compute-matched), the population means
#     ("all members") vs a single SB3-default seed, and every row vs the tuned set.
#
# A run whose summary.json exists is kept (rerun the script after an interruption and it goes on
# with the runs left); OVERWRITE=1 redoes every run.
# shellcheck shell=bash
# shellcheck source=experiments/launcher.sh
source experiments/launcher.sh
RANKS=${RANKS:-8}
MEMBERS=${MEMBERS:-$RANKS}
SEEDS=${SEEDS:-0 100 200 300 400}
VARIANTS=${VARIANTS:-pbt random pb2}
BASE_SEED=${BASE_SEED:-1000}
BASE_SEEDS=${BASE_SEEDS:-40}
BASE_RANKS=${BASE_RANKS:-$RANKS}
EVAL_EPISODES=${EVAL_EPISODES:-10}
read -r -a SEED_LIST <<< "$SEEDS"
TIMESTEPS=$((GENERATIONS * STEPS_PER_GEN))
LOG_DIR=${LOG_DIR:-logs/experiments/$TASK}
OUT=${OUT:-experiments/results/$TASK}
COMMON=("${ENV_ARGS[@]}" --eval-episodes "$EVAL_EPISODES" --log-dir "$LOG_DIR" --no-tb-writer --verbose "${VERBOSE:-1}" --overwrite)
START=$SECONDS

run() {  # run NAME RANKS ENTRY-POINT ARGS...: one evo run, skipped when it has finished before
    local name=$1 ranks=$2 entry=$3
    shift 3
    if [[ "${OVERWRITE:-0}" != 1 && -f "$LOG_DIR/$name/summary.json" ]]; then
        echo "== $name: done before, kept"
        return
    fi
    echo "== $name ($(( (SECONDS - START) / 60 )) min so far)"
    "$MPIEXEC" "${LAUNCH_ARGS[@]}" -n "$ranks" "$PYTHON" -m "$entry" "${COMMON[@]}" --exp-name "$name" "$@"
}

PBT_ARGS=(--num-agents "$MEMBERS" --generations "$GENERATIONS" --steps-per-generation "$STEPS_PER_GEN"
          --n-envs 1 --n-steps 2048)
declare -A VARIANT_ARGS=([pbt]="" [pb2]="--explore pb2" [random]="--no-exchange")
declare -A VARIANT_LABEL=([pbt]="PBT (truncation)" [pb2]="PB2" [random]="random search")
read -r -a VARIANT_LIST <<< "$VARIANTS"
REPORT_ARGS=()
for seed in "${SEED_LIST[@]}"; do
    for v in "${VARIANT_LIST[@]}"; do
        [[ -n "${VARIANT_LABEL[$v]:-}" ]] || { echo "$SCRIPT: error: unknown variant $v (pbt, pb2, random)" >&2; exit 2; }
        read -r -a extra <<< "${VARIANT_ARGS[$v]}"
        run "$v-s$seed" "$RANKS" evo.truncation "${PBT_ARGS[@]}" --seed "$seed" "${extra[@]}"
        REPORT_ARGS+=("${VARIANT_LABEL[$v]}=$LOG_DIR/$v-s$seed")
    done
done
BASE_ARGS=(--num-agents "$BASE_SEEDS" --num-timesteps "$TIMESTEPS" --eval-every "$STEPS_PER_GEN" --seed "$BASE_SEED")
run "sb3-defaults" "$BASE_RANKS" evo.baseline "${BASE_ARGS[@]}" --param-name baseline3
run "tuned" "$BASE_RANKS" evo.baseline "${BASE_ARGS[@]}" --param-name "$TUNED_SET"
REPORT_ARGS+=("SB3 defaults=$LOG_DIR/sb3-defaults" "$TUNED_LABEL=$LOG_DIR/tuned")

echo "== report ($(( (SECONDS - START) / 60 )) min so far)"
"$PYTHON" -m evo.report "${REPORT_ARGS[@]}" --budget "$TIMESTEPS" --out "$LOG_DIR/report"
mkdir -p "$OUT"
cp "$LOG_DIR/report/summary.md" "$LOG_DIR/report/report.json" "$LOG_DIR/report/profile.png" \
   "$LOG_DIR/report/scores.png" "$OUT/"
echo "$SCRIPT: $(( (SECONDS - START) / 60 )) min; report in $LOG_DIR/report, copied to $OUT"
