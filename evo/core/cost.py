"""A member's cost: gradient updates per env step, and the cap that keeps explore from raising it
far above the population's (pure: no MPI, no stable-baselines3).

The figure, per algorithm (what stable-baselines3 does with the hyperparameters):

* PPO-like (on-policy, minibatches of the rollout): ``n_epochs * ceil(rollout / batch_size) / rollout``
  (each epoch runs one update per minibatch; the last one may be partial);
* A2C-like (on-policy, one batch): ``1 / rollout`` (one update per rollout);
* off-policy (SAC, TD3, DQN): ``gradient_steps / (train_freq * n_envs)``: SB3 counts ``train_freq`` in
  steps of the VecEnv (each steps every one of the ``n_envs`` envs) and runs ``gradient_steps`` updates
  after each such round (``-1``: as many as env steps collected, i.e. 1 per env step). With a
  ``replay_ratio`` (the default spaces search it instead of the two integers), both integers are
  derived from it by :func:`replay_schedule`, and the figure is the ratio SB3 then really runs.

``rollout = n_steps * n_envs``. The cap (``--max-cost-ratio K``): explore never leaves a member of
the population costing more than ``K`` times the population's median cost. A receiver is the only
member whose hyperparameters change, so a receiver whose explored value breaks that has its
cost-driving parameters moved (deterministically, as little as the space allows): cheaper when it is
itself above the cap (the replay ratio down; else ``n_epochs`` / ``gradient_steps`` down, then
``batch_size`` / ``train_freq`` up), dearer when its drop took the median so low that another member is
above it. Only searched parameters move (a fixed value is the same for every member). Where no value
of the space restores the bound (a population sampled wider than ``K``), the receiver ends as cheap as
it can be, or stays as explored when only a dearer value could have helped.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from evo.core.algos import AlgoSpec, algo_spec
from evo.core.params import HParams, Space

REPLAY_RATIO = "replay_ratio"
"""The off-policy live hyperparameter: gradient updates per env step."""
NO_REPLAY_RATIO = "none"
"""``replay_ratio: none``: ``train_freq`` and ``gradient_steps`` apply as given (SB3's own pair)."""
CAP_OP = "cap"
"""The ``op`` of a change the cap made (appended to explore's own op: ``x1.2+cap``)."""
_EPS = 1e-9


def replay_schedule(replay_ratio: float, train_freq: int, n_envs: int) -> tuple[int, int]:
    """``(train_freq, gradient_steps)`` that run ``replay_ratio`` gradient updates per env step.

    ``train_freq`` (in VecEnv steps) is the base period: ``gradient_steps = floor(r * train_freq *
    n_envs)``. A ratio below one update per period trains less often instead: ``gradient_steps = 1``
    every ``ceil(1 / (r * n_envs))`` VecEnv steps. The ratio run, ``gradient_steps / (train_freq *
    n_envs)``, never exceeds ``replay_ratio`` and never decreases as it grows.
    """
    if not (replay_ratio > 0 and math.isfinite(replay_ratio)):
        raise ValueError(f"replay_ratio must be a finite number > 0, got {replay_ratio!r}")
    t, n = max(1, int(train_freq)), max(1, int(n_envs))
    per_period = replay_ratio * t * n
    if per_period + _EPS >= 1:
        return t, int(math.floor(per_period + _EPS))
    return max(t, int(math.ceil(1.0 / (replay_ratio * n) - _EPS))), 1


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _get(spec: AlgoSpec, hparams: Mapping[str, Any], name: str) -> Any:
    return hparams[name] if name in hparams else spec.defaults.get(name)


def cost(algo: str, hparams: Mapping[str, Any], n_envs: int, n_steps: int) -> float:
    """Gradient updates per env step of a member of ``algo`` with ``hparams`` (missing names: SB3's
    defaults), ``n_envs`` envs and rollouts of ``n_steps`` (on-policy); NaN if it cannot be known."""
    spec = algo_spec(algo)

    def get(name: str) -> Any:
        return _get(spec, hparams, name)

    if spec.on_policy:
        rollout = n_steps * n_envs
        epochs = _number(get("n_epochs")) if "n_epochs" in spec.live else 1.0
        batch = _number(get("batch_size")) if spec.rollout_batches else float(rollout)
        if epochs is None or batch is None or batch <= 0 or rollout <= 0:
            return math.nan
        return epochs * math.ceil(rollout / batch - _EPS) / rollout
    if "train_freq" not in spec.live:
        return math.nan
    freq, ratio = _number(get("train_freq")), get(REPLAY_RATIO)
    if freq is None or freq < 1:
        return math.nan
    if _number(ratio) is not None:
        t, g = replay_schedule(float(ratio), int(freq), n_envs)
        return g / (t * n_envs)
    steps = _number(get("gradient_steps"))
    if steps is None:
        return math.nan
    return 1.0 if steps < 0 else steps / (freq * n_envs)


@dataclass(frozen=True)
class CostLimit:
    """``--max-cost-ratio``: the population's costs stay within ``max_ratio`` x their median."""

    algo: str
    n_envs: int
    n_steps: int
    max_ratio: float

    def cost(self, hparams: Mapping[str, Any]) -> float:
        return cost(self.algo, hparams, self.n_envs, self.n_steps)

    def costs(self, population: Sequence[Mapping[str, Any]]) -> list[float]:
        """The known costs of ``population`` (an empty mapping is a member not known yet)."""
        return [c for c in (self.cost(hp) for hp in population if hp) if math.isfinite(c)]

    def cap(self, population: Sequence[Mapping[str, Any]]) -> float:
        """``max_ratio`` x the median cost of ``population`` (inf when off or nothing is known)."""
        costs = self.costs(population)
        if self.max_ratio <= 0 or not costs:
            return math.inf
        return self.max_ratio * float(statistics.median(costs))

    def holds(self, population: Sequence[Mapping[str, Any]]) -> bool:
        """No member of ``population`` costs more than the cap."""
        costs = self.costs(population)
        return not costs or max(costs) <= self.cap(population) * (1 + _EPS)

    def clamp(self, hparams: Mapping[str, Any], space: Space, others: Sequence[Mapping[str, Any]],
              changes: Mapping[str, Any] | None = None) -> tuple[HParams, dict[str, Any]]:
        """A receiver's explored ``hparams``, moved as little as the space allows so that no member of
        the population it joins (``others`` + itself) costs more than the cap; and ``changes`` updated
        with what moved (``op`` ``+cap``, or ``cap`` alone).

        First the receiver: above the cap, it is made cheaper (at most down to the cheapest the space
        allows). Then the others: if one is above the cap (the receiver's drop took the median down),
        the receiver is made dearer just enough, if the space allows that without taking the receiver
        above the cap (else it stays as it was). Drivers move in order (:meth:`_drivers`), each from
        where the one before it stopped."""
        new: HParams = dict(hparams)
        out = {k: dict(v) for k, v in (changes or {}).items()}
        if self.max_ratio <= 0 or not self.costs(others) or not math.isfinite(self.cost(new)):
            return new, out

        def under(hp: Mapping[str, Any]) -> bool:
            return self.cost(hp) <= self.cap([*others, hp]) * (1 + _EPS)

        def holds(hp: Mapping[str, Any]) -> bool:
            return self.holds([*others, hp])

        if not under(new):
            new = self._search(new, space, True, under) or new
        if not holds(new):
            new = self._search(new, space, False, holds) or new
        for name in (n for n in space.params if new[n] != hparams[n]):
            if name in out:
                out[name]["new"] = new[name]
                out[name]["op"] = f"{out[name]['op']}+{CAP_OP}"
            else:
                out[name] = {"old": hparams[name], "new": new[name], "op": CAP_OP}
        return new, out

    def _search(self, hp: Mapping[str, Any], space: Space, cheaper: bool,
                fits: Callable[[Mapping[str, Any]], bool]) -> HParams | None:
        """``hp`` with its drivers moved (cheaper or dearer) until ``fits``; if nothing does: as cheap
        as the space allows (``cheaper``) or ``None``."""
        new = dict(hp)
        for name, lower_is_cheaper in self._drivers(new):
            if name not in space.params or space.params[name].fixed:
                continue
            for value in self._path(new, space, name, lower_is_cheaper == cheaper):
                new[name] = space.clip(name, value)
                if fits(new):
                    return new
        return new if cheaper else None

    def _drivers(self, hp: Mapping[str, Any]) -> list[tuple[str, bool]]:
        """The parameters that set the cost, in the order they are moved (``True``: lowering it
        lowers the cost)."""
        spec = algo_spec(self.algo)
        if spec.on_policy:
            return [("n_epochs", True), ("batch_size", False)]
        if _number(_get(spec, hp, REPLAY_RATIO)) is not None:
            return [(REPLAY_RATIO, True), ("train_freq", False)]
        return [("gradient_steps", True), ("train_freq", False)]

    def _path(self, hp: Mapping[str, Any], space: Space, name: str, down: bool) -> list[Any]:
        """The values of ``name`` from its current one to the end of its range, in that direction."""
        p, current = space.params[name], hp[name]
        if _number(current) is None:
            return []  # an extra value such as gradient_steps -1 or replay_ratio none
        cur = float(current)
        if p.kind == "categorical":
            values = [float(c) for c in p.choices or () if _number(c) is not None]
            kinds = {float(c): c for c in p.choices or () if _number(c) is not None}
            return [kinds[v] for v in sorted((v for v in values if (v < cur if down else v > cur)), reverse=down)]
        assert p.low is not None and p.high is not None
        lo, hi = (float(p.low), cur) if down else (cur, float(p.high))
        if p.kind == "int":
            return list(range(int(cur) - 1, int(lo) - 1, -1)) if down else list(range(int(cur) + 1, int(hi) + 1))
        end = lo if down else hi
        if name != REPLAY_RATIO:
            return [end]
        spec = algo_spec(self.algo)
        freq = _number(_get(spec, hp, "train_freq")) or 1.0
        steps = sorted({v for v in ratio_values(lo, hi, int(freq), self.n_envs) if lo <= v <= hi} | {end},
                       reverse=down)
        return [v for v in steps if (v < cur if down else v > cur)]


def ratio_values(low: float, high: float, train_freq: int, n_envs: int) -> list[float]:
    """Every replay ratio in ``[low, high]`` that :func:`replay_schedule` runs exactly (with base period
    ``train_freq`` and ``n_envs`` envs): ``g / (train_freq * n_envs)``, and ``1 / (t * n_envs)`` below."""
    t, n = max(1, int(train_freq)), max(1, int(n_envs))
    out = [g / (t * n) for g in range(max(1, math.ceil(low * t * n - _EPS)), math.floor(high * t * n + _EPS) + 1)]
    if low * t * n < 1:
        slowest = math.floor(1.0 / (low * n) + _EPS)
        out += [1.0 / (k * n) for k in range(t + 1, slowest + 1) if 1.0 / (k * n) <= high]
    return out


def cost_limit(cfg: Any) -> CostLimit | None:
    """The cap of a run's config (``algo``, ``n_envs``, ``n_steps``, ``max_cost_ratio``); ``None``
    when it is off."""
    ratio = float(getattr(cfg, "max_cost_ratio", 0.0) or 0.0)
    if ratio <= 0:
        return None
    return CostLimit(str(getattr(cfg, "algo", "ppo")), int(cfg.n_envs), int(cfg.n_steps), ratio)
