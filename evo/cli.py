"""Shared plumbing of the entry points: parse, run, and turn failures into clean exits.

* A :class:`~evo.errors.EvoError` (bad input) known to be raised identically on every rank
  (command-line validation, which depends on argv alone; checks made on rank 0 and broadcast;
  ``on_every_rank``) prints one line from rank 0 and every rank exits with its code.
* An :class:`~evo.errors.EvoError` raised on some ranks only (a file one rank cannot write, ...)
  would leave the others waiting in their next collective: that rank prints its one line and
  aborts the whole job, so it ends within seconds.
* Any other exception is a bug or a crash on one rank: that rank prints one line and aborts the
  whole MPI job, so no other rank hangs in a collective.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from evo.errors import EvoError, everywhere


def exit_process(code: int) -> NoReturn:
    """End a training entry point's process (``python -m evo.wta`` ...) with ``code`` once its
    ``main()`` has returned. By then every record, TensorBoard writer, model and lock is closed, so
    this flushes stdout/stderr, finalizes MPI and leaves without the interpreter's teardown of torch
    and the rest (about 0.9 s of CPU per rank, measured; ``python -m evo.bench outside``). Used only
    under ``if __name__ == "__main__"``: a program that calls ``main()`` keeps its process."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    try:
        from mpi4py import MPI

        if MPI.Is_initialized() and not MPI.Is_finalized():
            MPI.Finalize()
    except ImportError:
        pass
    os._exit(code)


def main_guard(body: Callable[[], int], prog: str) -> int:
    """Run ``body`` and map its outcome to an exit code on every rank."""
    # Keep BLAS/OpenMP from starting a thread per core in every rank before torch is told.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from evo.stop import STOP

    STOP.install()  # before MPI starts, so MPICH chains to it instead of swallowing SIGUSR1
    try:
        from evo.comm import world
    except ImportError as exc:
        print(f"{prog}: error: mpi4py is not usable ({exc}); install evo with an MPI "
              f"(pip install 'evo[mpich]') or load your site's MPI", file=sys.stderr)
        return 2
    comm = world()
    rank = comm.Get_rank()
    try:
        return body()
    except EvoError as exc:
        if comm.Get_size() == 1 or getattr(exc, "evo_everywhere", False):
            if rank == 0:
                print(f"{prog}: error: {exc}", file=sys.stderr, flush=True)
            return exc.exit_code
        print(f"{prog}: error on rank {rank}: {exc}", file=sys.stderr, flush=True)
        from evo.comm import abort

        abort(comm, exc.exit_code)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BaseException as exc:
        if isinstance(exc, SystemExit):
            raise
        if os.environ.get("EVO_TRACEBACK"):
            import traceback

            traceback.print_exc()
        msg = str(exc).splitlines()[0] if str(exc) else ""
        print(f"{prog}: error on rank {rank}: {type(exc).__name__}: {msg} "
              f"(set EVO_TRACEBACK=1 for the traceback)", file=sys.stderr, flush=True)
        if comm.Get_size() > 1:
            from evo.comm import abort

            abort(comm, 1)
        return 1


def run_baseline(argv: Sequence[str] | None, description: str) -> int:
    """Entry point body of evo.baseline."""
    prog = "python -m evo.baseline"

    def body() -> int:
        from evo import loop
        from evo.cmdline import explicit_flags, parse
        from evo.comm import root_decides, world
        from evo.config import BaselineConfig
        from evo.hparam_sets import read_sets_file

        with everywhere():
            cfg = parse(BaselineConfig, argv, prog, description)
            explicit = explicit_flags(BaselineConfig, argv)
        if "log_dir" not in explicit:
            cfg.log_dir = str(Path(cfg.log_dir) / cfg.env_spec().name)
        sets_text = root_decides(world(), lambda: read_sets_file(cfg.hyperparams or cfg.param_file))
        with everywhere():  # the set's text is the same on every rank now
            cfg.resolve(explicit, sets_text)
            cfg.validate()
        return loop.run(cfg, world())

    return main_guard(body, prog)


def run_strategy(strategy: str, argv: Sequence[str] | None, description: str) -> int:
    """Entry point body of the presets (evo.wta, evo.truncation, evo.truncation_collective) and
    of evo.pbt: ``strategy`` names the preset (a rule and its default transport)."""
    prog = f"python -m evo.{strategy}"

    def body() -> int:
        from evo import loop
        from evo.cmdline import parse
        from evo.comm import TRANSPORTS, world
        from evo.config import PBTConfig
        from evo.core.rules import RULES

        choices = {"transport": [*sorted(TRANSPORTS), "hub"], "rule": sorted(RULES)}
        with everywhere():
            cfg = parse(PBTConfig, argv, prog, description, choices, strategy=strategy)
        if cfg.hyperparams is not None:  # an RL Zoo file brings run and env settings (evo.zoo)
            from evo.cmdline import explicit_flags
            from evo.comm import root_decides
            from evo.core.space import read_space_file
            from evo.zoo import apply_zoo_file

            text = root_decides(world(), lambda: read_space_file(cfg.hyperparams))
            with everywhere():
                apply_zoo_file(cfg, text, explicit_flags(PBTConfig, argv))
        with everywhere():
            cfg.validate()
        return loop.run(cfg, world())

    return main_guard(body, prog)
