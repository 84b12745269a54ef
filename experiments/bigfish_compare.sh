#!/usr/bin/env bash
# PBT vs baseline on ProcGen bigfish (200 training levels, easy, IMPALA CNN), equal env steps per
# member, scored on the training levels and on held-out levels; then the winner's schedule
# replayed on a fresh agent, then `python -m evo.report`.
#
# The default size is a smoke test that finishes in minutes on a 2-core laptop (CPU PPO with an
# IMPALA CNN does tens of env steps per second per core): 2 ranks x 4096 env steps per member,
# 4 generations. Nothing learns bigfish in that budget: the Procgen paper trains 25M env steps
# per agent with 64 envs x 256 steps. Scale up on a cluster, e.g.
#   RANKS=16 TIMESTEPS=25000000 STEPS_PER_GEN=1048576 N_ENVS=64 N_STEPS=256 experiments/bigfish_compare.sh
# (or use hpc/pbt.sbatch and hpc/baseline.sbatch with the same settings).
#
# Settings (environment variables):
#   RANKS          PBT members = baseline seeds = MPI ranks (default 2)
#   TIMESTEPS      env steps per member, for PBT and baseline alike (default 4096)
#   STEPS_PER_GEN  env steps per PBT generation = baseline evaluation interval (default 1024)
#   N_ENVS, N_STEPS  rollout of every member (default 8 x 128)
#   NUM_LEVELS     training levels; held-out levels are the ones outside (default 200)
#   DISTRIBUTION   easy | hard (default easy)
#   POLICY         impala | CnnPolicy (default impala, as in the Procgen paper)
#   EVAL_EPISODES  episodes per evaluation, on training and on held-out levels (default 8)
#   STRATEGY       wta | truncation | truncation_collective (default truncation)
#   SEED           base seed (default 0)
#   REPLAY         1: also replay the winner's schedule on one fresh agent (default 1)
#   LOG_DIR        where the runs go (default logs/experiments/bigfish)
#   OUT            report directory (default $LOG_DIR/report)
#   OVERWRITE      1: delete earlier runs of the same names first (default 0: refuse)
#   PYTHON         interpreter (default .venv/bin/python if present, else python3)
#   MPIEXEC        launcher (default: mpiexec next to PYTHON, else on PATH)
#   MPIEXEC_ARGS   extra launcher arguments, e.g. "--oversubscribe" for Open MPI
set -euo pipefail
cd "$(dirname "$0")/.."

RANKS=${RANKS:-2}
TIMESTEPS=${TIMESTEPS:-4096}
STEPS_PER_GEN=${STEPS_PER_GEN:-1024}
N_ENVS=${N_ENVS:-8}
N_STEPS=${N_STEPS:-128}
NUM_LEVELS=${NUM_LEVELS:-200}
DISTRIBUTION=${DISTRIBUTION:-easy}
POLICY=${POLICY:-impala}
EVAL_EPISODES=${EVAL_EPISODES:-8}
STRATEGY=${STRATEGY:-truncation}
SEED=${SEED:-0}
REPLAY=${REPLAY:-1}
LOG_DIR=${LOG_DIR:-logs/experiments/bigfish}
OUT=${OUT:-$LOG_DIR/report}
OVERWRITE=${OVERWRITE:-0}
SCRIPT=bigfish_compare
ENV_ARGS=(--env-id bigfish --num-levels "$NUM_LEVELS" --distribution-mode "$DISTRIBUTION" --eval-test-levels
          --policy "$POLICY")
PARAM_NAME=baseline
BASELINE_DESCRIPTION="the Procgen paper's PPO settings"
# shellcheck source=experiments/compare_lib.sh
source experiments/compare_lib.sh
