"""Moving member states along an exploit plan: the transport interface, each rank's part of a plan,
and the registry of transports.

A plan is a list of :class:`~evo.core.selection.Transfer` ``(receiver, donor)`` between members, from
any selection rule: one donor to many (winner takes all), many donors each to one or more receivers
(truncation), several members per rank. A transport knows nothing of the rule that made it.
Weights and optimizer state travel as preallocated contiguous float32 buffers (uppercase mpi4py calls).

The root cuts the plan into one :class:`RankPlan` per rank with the transport's :meth:`Transport.split`
and scatters them; every rank then calls :meth:`Transport.move_members` with its own part. The base
class packs this rank's donors and makes the local copies (donor and receiver on one rank); a
transport only moves the states whose donor lives on another rank than the receiver.

Adding a transport is one file plus a registration. For example ``evo/comm/ring.py``::

    import numpy as np

    from evo.comm.transport import RankPlan, Transport, register_transport

    @register_transport
    class RingTransport(Transport):
        name = "ring"
        collective = False
        description = "pass each state around the ring of ranks"

        def move_remote(self, plan: RankPlan, packed: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
            ...  # send packed donors, return {receiver on this rank: state} for remote donors

and its import in ``evo/comm/__init__.py`` (``from evo.comm import ring``), which runs the
registration whenever ``evo.comm`` is imported. A transport whose ranks must all take part in
every exchange sets ``collective = True`` and overrides :meth:`Transport.split` to give every
rank the rounds it joins (see :func:`with_rounds`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np
from mpi4py import MPI

from evo.comm.placement import owner_of
from evo.core.selection import Transfer
from evo.errors import ConfigError

Pack = Callable[[int, np.ndarray], Any]
"""``pack(member, buf)`` fills ``buf`` (float32, the transport's ``size``) with a local member's state."""


@dataclass(frozen=True)
class RankPlan:
    """What one rank must do in one exchange: only the transfers that involve its members (so its
    message volume does not grow with the population), plus what a collective transport needs
    every rank to know."""

    transfers: tuple[Transfer, ...] = ()
    """The plan's transfers whose donor or receiver this rank hosts, sorted."""
    rounds: int = 0
    """Collective steps every rank takes part in (0 for a point-to-point transport)."""
    round_of: tuple[tuple[int, int], ...] = ()
    """``(donor, round)`` for each donor group of this rank's transfers that moves in a round."""
    roots: tuple[int, ...] = ()
    """The sending rank of each round, for a transport whose ranks join rounds they have no part in."""


def donor_groups(transfers: Sequence[Transfer]) -> dict[int, list[int]]:
    """Donor -> its receivers (sorted, donors in ascending order).

    Raises ``ValueError`` if the plan is not a set of disjoint groups (a member both donor and
    receiver, or a receiver with two donors), which every transport relies on.
    """
    groups: dict[int, list[int]] = {}
    receivers: set[int] = set()
    for t in transfers:
        if t.receiver in receivers:
            raise ValueError(f"member {t.receiver} receives twice in one plan")
        receivers.add(t.receiver)
        groups.setdefault(t.donor, []).append(t.receiver)
    if receivers & set(groups):
        raise ValueError("a member cannot be both donor and receiver in one plan")
    return {d: sorted(r) for d, r in sorted(groups.items())}


def crossing_groups(transfers: Sequence[Transfer], world_size: int) -> dict[int, list[int]]:
    """The donor groups that must cross between ranks (a receiver on another rank than its donor):
    donor -> all its receivers. A group whose members all live on one rank is a local copy only."""
    return {d: rs for d, rs in donor_groups(transfers).items()
            if any(owner_of(r, world_size) != owner_of(d, world_size) for r in rs)}


def group_ranks(donor: int, receivers: Sequence[int], world_size: int) -> set[int]:
    """The ranks that host a donor group's members."""
    return {owner_of(donor, world_size)} | {owner_of(r, world_size) for r in receivers}


def with_rounds(plans: Sequence[RankPlan], rounds: Sequence[Sequence[int]], world_size: int,
                roots: tuple[int, ...] = ()) -> list[RankPlan]:
    """``plans`` with the collective ``rounds`` (each a list of donors whose groups move in that round):
    every rank learns their number (and ``roots``), and the round of each of its own donor groups."""
    round_of = {d: i for i, donors in enumerate(rounds) for d in donors}
    return [replace(p, rounds=len(rounds), roots=roots,
                    round_of=tuple(sorted((d, round_of[d]) for d in {t.donor for t in p.transfers} if d in round_of)))
            for p in plans]


def as_message(buf: np.ndarray) -> list[Any]:
    """The mpi4py buffer spec of a float32 state."""
    return [buf, MPI.FLOAT]


class Transport:
    """Moves flat float32 member states along any exploit plan.

    ``Transport(comm, size)`` holds a pool of ``size``-element buffers, reused from one exchange
    to the next. Subclasses set ``name``, ``collective`` and ``description``, implement
    :meth:`move_remote` and, if collective, override :meth:`split`; then :func:`register_transport`.
    """

    name: ClassVar[str] = ""
    """Registry key and ``--transport`` value."""
    collective: ClassVar[bool] = False
    """True if every rank must take part in every exchange (so it cannot serve asynchronous PBT)."""
    description: ClassVar[str] = ""
    """One line for ``--help``."""

    def __init__(self, comm: MPI.Comm, size: int) -> None:
        self.comm = comm
        self.rank = comm.Get_rank()
        self.world_size = comm.Get_size()
        self.size = int(size)
        self._pool: list[np.ndarray] = []
        self._used = 0

    @classmethod
    def split(cls, transfers: Sequence[Transfer], world_size: int) -> list[RankPlan]:
        """(root) One :class:`RankPlan` per rank: each rank gets the transfers that involve its members.

        Raises ``ValueError`` if ``transfers`` is not a set of disjoint donor groups (run it where
        the error reaches every rank, e.g. inside :func:`~evo.comm.mpi.root_decides`)."""
        donor_groups(transfers)
        per_rank: list[list[Transfer]] = [[] for _ in range(world_size)]
        for t in sorted(transfers):
            for r in sorted({owner_of(t.donor, world_size), owner_of(t.receiver, world_size)}):
                per_rank[r].append(t)
        return [RankPlan(tuple(ts)) for ts in per_rank]

    def move_members(self, plan: RankPlan, pack: Pack) -> dict[int, np.ndarray]:
        """Carry out this rank's part of a plan: ``pack(member, buf)`` fills ``buf`` with a local
        donor's state. Returns ``{receiver member: state}`` for the receivers this rank hosts; the
        arrays are the transport's buffers, valid until the next call (unpack them before)."""
        self._used = 0
        packed: dict[int, np.ndarray] = {}
        for d in sorted({t.donor for t in plan.transfers if self.owner(t.donor) == self.rank}):
            packed[d] = self.take_buffer()
            pack(d, packed[d])
        out = {t.receiver: packed[t.donor] for t in plan.transfers
               if t.donor in packed and self.owner(t.receiver) == self.rank}
        out.update(self.move_remote(plan, packed))
        return out

    def move_remote(self, plan: RankPlan, packed: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
        """Send this rank's ``packed`` donor states where the plan needs them on other ranks, and
        return ``{receiver: state}`` for this rank's receivers whose donor lives elsewhere."""
        raise NotImplementedError

    # -- for subclasses ---------------------------------------------------------------------
    def owner(self, member: int) -> int:
        return owner_of(member, self.world_size)

    def take_buffer(self) -> np.ndarray:
        """A pooled float32 buffer of ``size`` elements, not handed out since this exchange began."""
        if self._used == len(self._pool):
            self._pool.append(np.empty(self.size, dtype=np.float32))
        self._used += 1
        return self._pool[self._used - 1]

    def remote_receivers(self, plan: RankPlan, donor: int) -> list[int]:
        """This rank's receivers of ``donor`` when ``donor`` lives on another rank (else none)."""
        if self.owner(donor) == self.rank:
            return []
        return [t.receiver for t in plan.transfers if t.donor == donor and self.owner(t.receiver) == self.rank]


TRANSPORTS: dict[str, type[Transport]] = {}
"""Every registered transport by name."""


def register_transport(cls: type[Transport]) -> type[Transport]:
    """Add ``cls`` to :data:`TRANSPORTS` under ``cls.name`` (a class decorator). Refuses a second
    transport of the same name."""
    if not (isinstance(cls, type) and issubclass(cls, Transport)):
        raise TypeError(f"{cls!r} is not a Transport subclass")
    if not cls.name or not cls.description:
        raise ValueError(f"transport {cls.__qualname__} needs a name and a description")
    if cls.name in TRANSPORTS:
        raise ValueError(f"transport {cls.name!r} is already registered ({TRANSPORTS[cls.name].__qualname__})")
    TRANSPORTS[cls.name] = cls
    return cls


def make_transport(name: str, comm: MPI.Comm, size: int) -> Transport:
    """The transport called ``name`` on ``comm``, for states of ``size`` float32 elements."""
    cls = TRANSPORTS.get(name)
    if cls is None:
        raise ConfigError(f"unknown transport {name!r} (known: {', '.join(sorted(TRANSPORTS))})")
    return cls(comm, size)
