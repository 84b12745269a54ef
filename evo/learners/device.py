"""Device placement: ``--device`` plus where a rank sits on its node -> a torch device string.

Pure (no torch, no MPI): :func:`resolve_device` is unit-tested without a GPU.
"""

from __future__ import annotations

import re

from evo.errors import ConfigError

DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def check_device_spec(spec: str) -> str:
    """Raise a one-line :class:`ConfigError` unless ``spec`` is auto, cpu, cuda or cuda:N."""
    if not isinstance(spec, str) or not DEVICE_PATTERN.match(spec):
        raise ConfigError(f"--device must be auto, cpu, cuda or cuda:N, got {spec!r}")
    return spec


def resolve_device(spec: str, local_rank: int, n_gpus: int) -> str:
    """The torch device a member uses.

    ``cpu``: always the CPU. ``auto``: ``cuda:(local_rank mod n_gpus)`` when the node has GPUs, so the
    ranks of a node spread over its GPUs round-robin, else the CPU. ``cuda``: the same spreading, but
    an error without a GPU. ``cuda:N``: that GPU (an error if the node has no GPU N).
    """
    check_device_spec(spec)
    if local_rank < 0 or n_gpus < 0:
        raise ValueError(f"local_rank and n_gpus must be >= 0, got {local_rank}, {n_gpus}")
    if spec == "cpu":
        return "cpu"
    if spec == "auto":
        return f"cuda:{local_rank % n_gpus}" if n_gpus > 0 else "cpu"
    if n_gpus == 0:
        raise ConfigError(f"--device {spec}: no CUDA GPU is visible on this node")
    if spec == "cuda":
        return f"cuda:{local_rank % n_gpus}"
    index = int(spec.split(":", 1)[1])
    if index >= n_gpus:
        raise ConfigError(f"--device {spec}: this node has {n_gpus} visible GPU(s) (cuda:0..cuda:{n_gpus - 1})")
    return spec
