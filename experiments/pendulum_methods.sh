#!/usr/bin/env bash
# Pendulum-v1, PPO from SB3's default settings: PBT (truncation), random search, PB2, SB3 defaults
# and the RL Zoo's tuned PPO, at the same env steps per member. Protocol: experiments/methods_lib.sh.
#
# Default size: 8 members, 12 generations x 4096 = 49,152 env steps per member, 5 seeds of each
# population variant (15 runs of 8 members) and 40 seeds of each baseline (5 groups of 8).
# The RL Zoo reports its tuned PPO at 100k steps; for that budget (about 2 hours here):
#   GENERATIONS=25 experiments/pendulum_methods.sh      # 102,400 env steps per member
# On a cluster give each member its own core: RANKS=8 (or MEMBERS=32 RANKS=32 BASE_SEEDS=160).
#
# Settings (environment variables): RANKS (8), MEMBERS (= RANKS; more than RANKS puts several
# members on a rank), SEEDS ("0 100 200 300 400": spaced by more than the population, as member i of
# a run uses seed + i), VARIANTS ("pbt random pb2"), BASE_SEED (1000), BASE_SEEDS (40), BASE_RANKS
# (= RANKS), GENERATIONS (12), STEPS_PER_GEN (4096, a multiple of 2048),
# EVAL_EPISODES (10), LOG_DIR (logs/experiments/pendulum), OUT (experiments/results/pendulum),
# OVERWRITE (0: keep finished runs), PYTHON, MPIEXEC, MPIEXEC_ARGS.
set -euo pipefail
cd "$(dirname "$0")/.."
SCRIPT=pendulum_methods
TASK=pendulum
ENV_ARGS=(--env-id Pendulum-v1)
TUNED_SET=zoo-ppo-pendulum
TUNED_LABEL="RL Zoo tuned"
GENERATIONS=${GENERATIONS:-12}
STEPS_PER_GEN=${STEPS_PER_GEN:-4096}
# shellcheck source=experiments/methods_lib.sh
source experiments/methods_lib.sh
