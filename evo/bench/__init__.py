"""Benchmarks of evo: ``python -m evo.bench SUBCOMMAND [options]``.

Each subcommand prints a table and writes CSV + JSON (and a PNG where it plots) to ``--out``
(default ``bench_out/``):

* ``exchange``  real PBT runs (``python -m evo.pbt``) for each rule x transport x world size, with
  and without ``--no-exchange``: exchange ms per generation, its share of the generation,
  env-steps/s, and the overhead of exchanging (:mod:`evo.bench.sweep`).
* ``scaling``   the same over world sizes 2 4 8 (a population needs two members), plus a plot.
* ``micro``     size, pack/unpack and MPI move time (Bcast, Sendrecv) of the flat state of the
  CartPole MLP, NatureCNN and IMPALA CNN, against a local ``np.copyto`` (:mod:`evo.bench.micro`).
* ``member-vs-baseline``  training env-steps/s of PBT members vs ``evo.baseline`` seeds doing the
  same work on as many ranks (:mod:`evo.bench.versus`).
* ``transport`` the loop's own phases (sync: publish + decide, copy + apply through a registered
  transport; async: the coordinator behind the hub) on synthetic members of a chosen state size,
  per rule x transport x world size: exchange ms, idle share, copies, bytes (:mod:`evo.bench.phases`).
* ``agreement`` paired vs unpaired evaluation of a trained run: how often two independent
  evaluations agree on the bottom quantile (:mod:`evo.bench.agreement`).
* ``cost``      a small PBT run from an algorithm's default space, explore and the cost cap on:
  max/median of the members' training time and cost per generation (:mod:`evo.bench.cost`).

Every run is a subprocess with a timeout. Generation 0 includes warm-up (first ``learn()``, lazy
MPI connection set-up), so statistics skip it whenever there is more than one generation.
"""

from evo.bench.cli import main

__all__ = ["main"]
