"""A learner's flat state: weights, optimizer state and float64 values in one CPU float32 buffer.

The layout, in this order:

1. weights: the given tensors (every parameter and floating-point buffer of ``model.policy``, target
   networks included, plus tensors outside it such as SAC's ``log_ent_coef``);
2. optimizer state: per optimizer, each of its per-parameter moment buffers (Adam: ``exp_avg``,
   ``exp_avg_sq``; RMSprop: ``square_avg``...), then its per-parameter step counts;
3. float64 values (:class:`ExtraField`), each stored as two float32 words (bit patterns, not values).

Buffers are always CPU float32 (``pack``/``unpack`` copy to/from the device), so members on different
devices exchange bit-exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


@dataclass(frozen=True)
class ExtraField:
    """A float64 part of the flat state: ``size`` values read by ``get`` and written by ``set``."""

    name: str
    size: int
    get: Callable[[], np.ndarray]
    set: Callable[[np.ndarray], None]


def optimizer_slots(opt: torch.optim.Optimizer) -> tuple[str, ...]:
    """The per-parameter state buffers ``opt`` keeps besides its step count."""
    per_group = []
    for g in opt.param_groups:
        if isinstance(opt, torch.optim.Adam | torch.optim.AdamW):
            slots: tuple[str, ...] = ("exp_avg", "exp_avg_sq", *(("max_exp_avg_sq",) if g.get("amsgrad") else ()))
        elif isinstance(opt, torch.optim.RMSprop):
            slots = ("square_avg", *(("momentum_buffer",) if g.get("momentum", 0) > 0 else ()),
                     *(("grad_avg",) if g.get("centered") else ()))
        else:
            raise NotImplementedError(f"evo cannot move the state of a {type(opt).__name__} optimizer")
        per_group.append(slots)
    if len(set(per_group)) > 1:
        raise NotImplementedError(f"{type(opt).__name__}: parameter groups with different state buffers")
    return per_group[0] if per_group else ()


def unique(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """``tensors`` without repeats (by identity), in order."""
    seen: set[int] = set()
    out = []
    for t in tensors:
        if id(t) not in seen:
            seen.add(id(t))
            out.append(t)
    return out


def int_buffer_field(name: str, b: torch.Tensor) -> ExtraField:
    """An integer tensor (BatchNorm's ``num_batches_tracked``...) as float64 values."""

    def get() -> np.ndarray:
        return b.detach().cpu().reshape(-1).numpy().astype(np.float64)

    def put(a: np.ndarray) -> None:
        with torch.no_grad():
            b.copy_(torch.from_numpy(a.astype(np.int64)).view_as(b))

    return ExtraField(name, b.numel(), get, put)


def rms_fields(name: str, rms: Callable[[], Any]) -> list[ExtraField]:
    """A running mean/variance (VecNormalize's ``obs_rms``, ``ret_rms``): mean, var, count."""
    shape = tuple(np.shape(rms().mean))
    size = int(np.prod(shape)) if shape else 1

    def put(attr: str) -> Callable[[np.ndarray], None]:
        return lambda a: setattr(rms(), attr, a.reshape(shape).copy())

    return [
        ExtraField(f"{name}.mean", size, lambda: np.asarray(rms().mean, np.float64).reshape(-1), put("mean")),
        ExtraField(f"{name}.var", size, lambda: np.asarray(rms().var, np.float64).reshape(-1), put("var")),
        ExtraField(f"{name}.count", 1, lambda: np.array([rms().count], np.float64),
                   lambda a: setattr(rms(), "count", float(a[0]))),
    ]


class FlatState:
    """Packs and unpacks one learner's weights, optimizers and float64 fields (layout: module docstring)."""

    def __init__(self, weights: list[torch.Tensor], optimizers: list[torch.optim.Optimizer],
                 fields: list[ExtraField]) -> None:
        self.weights = unique(weights)
        self.num_params = sum(t.numel() for t in self.weights)
        self.opt_layout = [(opt, [p for g in opt.param_groups for p in g["params"]], optimizer_slots(opt))
                           for opt in optimizers]
        self.fields = fields
        self.n_extras = sum(f.size for f in fields)

    @property
    def size(self) -> int:
        """float32 elements of the flat state."""
        n = self.num_params + 2 * self.n_extras
        for _, params, slots in self.opt_layout:
            n += sum(p.numel() for p in params) * len(slots) + len(params)
        return n

    def extras(self) -> np.ndarray:
        if not self.fields:
            return np.zeros(0, np.float64)
        return np.concatenate([np.asarray(f.get(), np.float64).reshape(-1) for f in self.fields])

    def set_extras(self, values: np.ndarray) -> None:
        pos = 0
        for f in self.fields:
            f.set(values[pos:pos + f.size].copy())
            pos += f.size

    @staticmethod
    def _opt_states(opt: torch.optim.Optimizer, params: list[torch.Tensor],
                    slots: tuple[str, ...]) -> list[dict[str, Any]]:
        """Each parameter's optimizer state, created as the optimizer's first step would (zeros,
        step 0) where it does not exist yet, so every member has the same layout from the start."""
        group_of = {id(p): g for g in opt.param_groups for p in g["params"]}
        states = []
        for p in params:
            st = opt.state[p]
            if not st:
                g = group_of[id(p)]
                dtype = torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32
                if g.get("capturable") or g.get("fused"):
                    st["step"] = torch.zeros((), dtype=torch.float32 if g.get("fused") else dtype, device=p.device)
                else:
                    st["step"] = torch.tensor(0.0, dtype=dtype)
                for slot in slots:
                    st[slot] = torch.zeros_like(p, memory_format=torch.preserve_format)
            states.append(st)
        return states

    def pack(self, out: np.ndarray | None = None) -> np.ndarray:
        """The flat state into one contiguous CPU float32 buffer (no pickling)."""
        if out is None:
            out = np.empty(self.size, dtype=np.float32)
        assert out.dtype == np.float32 and out.size == self.size
        pos = 0

        def put(t: torch.Tensor) -> None:
            nonlocal pos
            n = t.numel()
            out[pos:pos + n] = t.detach().reshape(-1).cpu().numpy()
            pos += n

        with torch.no_grad():
            for t in self.weights:
                put(t)
            for opt, params, slots in self.opt_layout:
                states = self._opt_states(opt, params, slots)
                for slot in slots:
                    for st in states:
                        put(st[slot])
                for st in states:
                    out[pos] = float(st["step"])
                    pos += 1
        extras = self.extras()
        out[pos:pos + 2 * extras.size] = extras.view(np.float32)
        return out

    def unpack(self, buf: np.ndarray) -> None:
        """Load the flat state from a buffer made by :meth:`pack` (bit-exact)."""
        if buf.dtype != np.float32 or buf.size != self.size:
            raise ValueError(f"flat state has {buf.size} {buf.dtype} values, expected {self.size} float32")
        pos = 0

        def take(t: torch.Tensor) -> None:
            nonlocal pos
            n = t.numel()
            t.copy_(torch.from_numpy(buf[pos:pos + n]).view_as(t))
            pos += n

        with torch.no_grad():
            for t in self.weights:
                take(t)
            for opt, params, slots in self.opt_layout:
                states = self._opt_states(opt, params, slots)
                for slot in slots:
                    for st in states:
                        take(st[slot])
                for st in states:
                    st["step"].fill_(float(buf[pos]))
                    pos += 1
        self.set_extras(buf[pos:pos + 2 * self.n_extras].copy().view(np.float64))

    def finite(self) -> bool:
        return all(bool(torch.isfinite(t).all()) for t in self.weights)
