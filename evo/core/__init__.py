"""Pure decisions: search spaces and explore, PB2, selection rules, random streams.

Nothing here imports MPI or stable-baselines3; every function is a function of its arguments
(and a seeded rng), so it is unit-tested without a cluster.
"""
