# Finds the interpreter and the MPI launcher for the experiment scripts (sourced, not run).
# Sets PYTHON (default .venv/bin/python if present, else python3), MPIEXEC (default: mpiexec next
# to PYTHON, else on PATH) and LAUNCH_ARGS (from MPIEXEC_ARGS); needs SCRIPT for its error line.
# shellcheck shell=bash
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
if [[ -z "${MPIEXEC:-}" ]]; then
    MPIEXEC="$(dirname "$PYTHON")/mpiexec"
    [[ -x "$MPIEXEC" ]] || MPIEXEC=$(command -v mpiexec || true)
fi
[[ -n "$MPIEXEC" ]] || { echo "$SCRIPT: error: no mpiexec (pip install mpich, or set MPIEXEC)" >&2; exit 2; }
read -r -a LAUNCH_ARGS <<< "${MPIEXEC_ARGS:-}"
