"""evo: population-based training for reinforcement learning, driven by MPI.

(ProcGen needs the old ``gym`` package, which stable-baselines3 imports whenever it is installed;
evo pins ``gym-notices==0.0.8``, whose notices say nothing for gym 0.26.2, so neither evo nor a
plain ``import stable_baselines3`` in its environment prints gym's "unmaintained" banner.)
"""

__version__ = "0.1.0"
