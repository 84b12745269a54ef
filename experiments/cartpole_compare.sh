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
SCRIPT=cartpole_compare
ENV_ARGS=(--env-id CartPole-v1)
PARAM_NAME=cartpole
BASELINE_DESCRIPTION="RL Zoo's tuned CartPole PPO settings"
# shellcheck source=experiments/compare_lib.sh
source experiments/compare_lib.sh
