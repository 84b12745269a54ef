#!/usr/bin/env bash
# CartPole-v1, PPO from SB3's default settings: PBT (truncation), random search, PB2, SB3 defaults
# and the RL Zoo's tuned PPO (evo's `cartpole` set), at a small budget of the same env steps per
# member. Protocol: experiments/methods_lib.sh.
#
# Default size: 8 members, 8 generations x 2048 = 16,384 env steps per member, 5 seeds of each
# population variant (15 runs of 8 members) and 40 seeds of each baseline (5 groups of 8).
# Scale up with e.g. GENERATIONS=25 STEPS_PER_GEN=4096 (102,400 steps; several hours here).
#
# Settings (environment variables): as experiments/pendulum_methods.sh, with GENERATIONS (8),
# STEPS_PER_GEN (2048, a multiple of 2048), LOG_DIR (logs/experiments/cartpole),
# OUT (experiments/results/cartpole).
set -euo pipefail
cd "$(dirname "$0")/.."
SCRIPT=cartpole_methods
TASK=cartpole
ENV_ARGS=(--env-id CartPole-v1)
TUNED_SET=cartpole
TUNED_LABEL="RL Zoo tuned"
GENERATIONS=${GENERATIONS:-8}
STEPS_PER_GEN=${STEPS_PER_GEN:-2048}
# shellcheck source=experiments/methods_lib.sh
source experiments/methods_lib.sh
