"""A tiny custom env for evo: a 1-D reach task (``Reach-v0``) and its Dict-observation twin
(``DictReach-v0``), registered when :mod:`evo_reach.envs` is imported, plus a reward wrapper.

    PYTHONPATH=examples/custom_env mpiexec -n 2 python -m evo.truncation \\
        --env-id evo_reach.envs:Reach-v0 --env-kwargs size=5 --wrapper evo_reach.wrappers:StepPenalty penalty=0.05
"""
