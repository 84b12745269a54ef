"""Member placement: which rank hosts which member (a pure function of the world size)."""

from __future__ import annotations


def owner_of(member: int, world_size: int) -> int:
    """The rank that hosts ``member``: members are dealt round-robin, so every rank hosts
    ceil(N/world) or floor(N/world) of them and member ``m`` of a one-per-rank run lives on rank ``m``."""
    return member % world_size


def local_members(num_agents: int, rank: int, world_size: int) -> list[int]:
    """The members ``rank`` hosts, in ascending order."""
    return list(range(rank, num_agents, world_size))
