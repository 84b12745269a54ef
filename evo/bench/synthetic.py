"""Stand-ins for the transport benchmark, so that it measures the loop's own phases and nothing
else: a member whose flat state is a float32 array of a chosen size and whose training is a sleep,
and a communicator wrapper that meters the control messages the loop sends.

The member's state is filled with one value, its score (the sum of its per-interval gains); a copy
that brought the donor's state is recognisable from that value (see :func:`bad_copies`).
"""

from __future__ import annotations

import math
import pickle
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from evo.learners import TrainStats

PROBES = 64
"""Positions of a received state checked for one value (a partial or mixed copy fails)."""


def durations(n: int, generations: int, seed: int, interval_s: float, spread: float, jitter: float) -> np.ndarray:
    """Seconds of training per (member, generation): ``interval_s`` x a per-member slowness
    (lognormal, sigma ``spread``) x a per-interval jitter (lognormal, sigma ``jitter``), seeded."""
    rng = np.random.default_rng([seed, 11])
    slowness = np.exp(spread * rng.standard_normal(n))
    noise = np.exp(jitter * rng.standard_normal((n, generations)))
    return interval_s * slowness[:, None] * noise


class SyntheticMember:
    """A population member as the loop's phases see it (``index``, ``hparams``, ``num_timesteps``,
    ``flat_size``, ``reseed``, ``train``, ``evaluate``, ``pack``, ``unpack``, ``apply_hparams``).

    ``train`` sleeps this member's duration of the generation set by ``reseed`` and adds its gain to
    the state; ``evaluate`` returns the state's value. ``unpack`` records what arrived:
    ``received`` holds ``(generation, value, whole)`` per copy (``whole``: the probed positions
    all hold one value) and ``bytes_in`` the bytes unpacked."""

    failed = False

    def __init__(self, index: int, size: int, hparams: Mapping[str, Any], seconds: Sequence[float],
                 gain: float) -> None:
        self.index = index
        self.hparams = dict(hparams)
        self.state = np.zeros(max(2, int(size)), dtype=np.float32)
        self.seconds = [float(s) for s in seconds]
        self.gain = float(gain)
        self.generation = 0
        self.num_timesteps = 0
        self.train_s = 0.0
        self.bytes_in = 0
        self.received: list[tuple[int, float, bool]] = []
        self._probes = np.unique(np.linspace(0, self.state.size - 1, PROBES).astype(np.int64))

    @property
    def flat_size(self) -> int:
        return int(self.state.size)

    @property
    def num_params(self) -> int:
        return int(self.state.size)

    def reseed(self, generation: int) -> None:
        self.generation = generation

    def apply_hparams(self, hparams: Mapping[str, Any]) -> None:
        self.hparams = dict(hparams)

    def train(self, steps: int, should_stop: Any = None) -> TrainStats:
        t0 = time.perf_counter()
        time.sleep(self.seconds[self.generation])
        self.state.fill(self.state[0] + np.float32(self.gain))
        self.num_timesteps += steps
        seconds = time.perf_counter() - t0
        self.train_s += seconds
        return TrainStats(seconds=seconds, rollout_seconds=seconds)

    def evaluate(self, n_episodes: int, deterministic: bool, seed: int, test_levels: bool = False) -> float:
        return float(self.state[0])

    def pack(self, out: np.ndarray | None = None) -> np.ndarray:
        if out is None:
            return self.state.copy()
        np.copyto(out, self.state)
        return out

    def unpack(self, buf: np.ndarray) -> None:
        whole = bool(np.all(buf[self._probes] == buf[0]))
        self.received.append((self.generation, float(buf[0]), whole))
        self.bytes_in += int(buf.nbytes)
        np.copyto(self.state, buf)

    def close(self) -> None:
        pass


def bad_copies(lineage: Iterable[Mapping[str, Any]], received: Iterable[tuple[int, int, float, bool]]) -> int:
    """Copies that did not bring the donor's state. ``lineage``: the loop's lineage lines (receiver,
    generation, and the score of the donor's state that was copied: ``donor_snapshot_score`` in the
    asynchronous schedule, where the donor may have published a newer snapshot than the one compared,
    else ``donor_score``); ``received``: ``(member, generation, value, whole)`` per unpacked state.
    Each line must match exactly one whole received state holding that score, and nothing may be
    received without a line."""
    expected = {(int(x["receiver"]), int(x["generation"])): x.get("donor_snapshot_score", x["donor_score"])
                for x in lineage}
    got: dict[tuple[int, int], tuple[float, bool]] = {}
    bad = 0
    for member, gen, value, whole in received:
        bad += (member, gen) in got  # a member unpacked twice in one generation
        got[(member, gen)] = (value, whole)
    for key in expected.keys() | got.keys():
        score, arrived = expected.get(key), got.get(key)
        brought = (score is not None and arrived is not None and arrived[1] and math.isfinite(arrived[0])
                   and np.float32(score) == np.float32(arrived[0]))
        bad += not brought
    return bad


class MeteredComm:
    """The loop's communicator, counting the control messages this rank receives through it and
    their pickled bytes: on the root of a ``gather`` every other rank's part, the own part of a
    ``scatter``, the object of a ``bcast`` on other ranks. Everything else goes to ``comm``
    unchanged. Pickling for the count waits for :meth:`settle`, outside the timed phases."""

    def __init__(self, comm: Any) -> None:
        self._comm = comm
        self._pending: list[Any] = []
        self.bytes_in = 0
        self.msgs_in = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._comm, name)

    def gather(self, obj: Any, root: int = 0) -> Any:
        out = self._comm.gather(obj, root=root)
        if out is not None:
            self._pending += [part for k, part in enumerate(out) if k != self._comm.Get_rank()]
        return out

    def scatter(self, objs: Any, root: int = 0) -> Any:
        mine = self._comm.scatter(objs, root=root)
        if self._comm.Get_rank() != root:
            self._pending.append(mine)
        return mine

    def bcast(self, obj: Any, root: int = 0) -> Any:
        out = self._comm.bcast(obj, root=root)
        if self._comm.Get_rank() != root:
            self._pending.append(out)
        return out

    def settle(self) -> None:
        """Count the messages received since the last call."""
        self.msgs_in += len(self._pending)
        self.bytes_in += sum(len(pickle.dumps(obj, pickle.HIGHEST_PROTOCOL)) for obj in self._pending)
        self._pending.clear()
