"""Where a rank's wall time goes outside the generation loop: summary.json's ``timing``.

A :class:`Timeline` marks the phase boundaries of one rank in seconds since its process started
(Linux: read from ``/proc``; elsewhere since this module was imported), so interpreter start-up and
imports are counted too. The launcher's own start (``mpiexec`` spawning the ranks) is not: a
benchmark that times the whole command sees it (``python -m evo.bench outside``).
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from typing import Any

_T0 = time.perf_counter()


def _age_at_import() -> float:
    """Seconds this process had been running when this module was imported (0.0 without /proc)."""
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return max(0.0, uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK"))  # field 22: starttime
    except (OSError, ValueError, IndexError):
        return 0.0


_AGE0 = _age_at_import()


def since_process_start() -> float:
    """Seconds since this process started."""
    return _AGE0 + time.perf_counter() - _T0


class Timeline:
    """One rank's phase marks (``start``: the loop's start phase begins, ``loop``: the first
    generation begins, ``loop_end``, ``end``) and summed spans (``reference``, ``checkpoint``,
    ``final_eval``), all in seconds."""

    def __init__(self) -> None:
        self.marks: dict[str, float] = {}
        self.spans: dict[str, float] = defaultdict(float)

    def mark(self, name: str) -> None:
        self.marks[name] = since_process_start()

    def add(self, name: str, seconds: float) -> None:
        self.spans[name] += seconds

    def summary(self) -> dict[str, Any]:
        """Seconds per phase: ``to_start_s`` (interpreter, imports, arguments, checks), ``start_s``
        (run directory, lock, members built, config and random-policy reference), ``loop_s`` (its
        last generation includes the final evaluation), ``finish_s`` (models, summary), their sum
        ``total_s`` and ``outside_loop_s`` (total minus loop), with the spans inside them."""
        m = self.marks
        start, loop = m.get("start", 0.0), m.get("loop", 0.0)
        loop_end, end = m.get("loop_end", loop), m.get("end", since_process_start())
        out = {"to_start_s": start, "start_s": loop - start, "loop_s": loop_end - loop,
               "finish_s": end - loop_end, "total_s": end, "outside_loop_s": end - (loop_end - loop)}
        out.update({f"{k}_s": v for k, v in sorted(self.spans.items())})
        return {k: round(v, 4) for k, v in out.items()}


TIMING_NOTE = ("seconds per rank since its process started: to_start (interpreter, imports, checks), start (run "
               "directory, members built, config and random-policy reference), loop (with the final evaluation of "
               "the last generation: final_eval), finish (models, summary); outside_loop = total - loop. The "
               "launcher's start before the processes is not counted (python -m evo.bench outside times whole "
               "commands)")

__all__ = ["TIMING_NOTE", "Timeline", "since_process_start"]
