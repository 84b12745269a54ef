"""evo: population-based training for reinforcement learning, driven by MPI."""

import sys as _sys

# ProcGen needs the old ``gym`` package at import time, and stable-baselines3 imports it when it
# is installed; on import ``gym`` prints a multi-line deprecation notice to stderr, once per MPI
# rank. evo uses Gymnasium throughout, so that notice is only noise: block the notice module
# (gym catches the ImportError and carries on).
if "gym" not in _sys.modules:
    _sys.modules.setdefault("gym_notices", None)  # type: ignore[arg-type]

__version__ = "0.1.0"
