"""PB2: population-based bandits, a GP-bandit alternative to PBT's random explore step.

Parker-Holder, Nguyen and Roberts (2020), "Provably Efficient Online Hyperparameter Optimization
with Population-Based Bandits". After a receiver has copied a donor, PBT perturbs the donor's
hyperparameters at random; PB2 instead fits a Gaussian process to how much every member's score
*changed* over recent intervals as a function of (time, hyperparameters), and picks the receiver's
new hyperparameters by maximising an upper confidence bound at the current time.

Pure logic, like :func:`evo.core.space.explore`: no MPI, no stable-baselines3; every random choice comes
from the ``rng`` argument (sklearn and the candidate set get integers drawn from it), so the same
inputs give the same output. Inputs are never modified; the result always lies within bounds.

Model
-----
* **Inputs.** Every explorable, non-categorical parameter is mapped to ``[0, 1]`` along its scale
  (``linear``: ``x``; ``log``: ``log x``; ``one_minus``: ``log(1 - x)``; ``0`` is ``low``, ``1`` is
  ``high``; values outside the bounds are clipped). Time is measured in intervals, relative to the
  current time: ``(t_obs - t) / interval``, where ``interval`` is the median gap between a member's
  consecutive observations (or between distinct observation times if no member has two).
* **Targets.** The deltas (score change over an interval), robustly standardised: minus their
  median, divided by ``1.4826 * MAD`` (the standard deviation if the MAD is 0), clipped to ±3, so a
  single outlier interval does not flatten the model. Non-finite deltas are dropped. Deltas are
  used as given (Ray Tune divides them by the interval's length; evo's intervals have equal length).
  Observations from members that copied a donor should measure from the donor's score at the copy.
* **Kernel** (sklearn ``GaussianProcessRegressor`` with a small custom :class:`TimeVaryingSE`):
  ``C * SE(x, x'; l) * (1 - eps) ** (|t - t'| / 2) + White``, the paper's time-varying
  squared-exponential kernel. ``C``, the isotropic length scale ``l`` (one for all dimensions, as in
  the paper and Ray Tune), ``eps`` and the noise level are all fitted by maximising the marginal
  likelihood (sklearn's L-BFGS-B plus 1 seeded restart). ``eps`` lies in ``[1e-3, 0.5]`` (Ray Tune
  clips it at 0.5 too); ``l`` in ``[0.2, 2]`` of the normalised box: with a few dozen noisy points,
  shorter length scales cannot be identified and let the fit chase noise (with ``0.05`` as the lower
  bound the toy benchmark in ``tests/test_pb2.py`` picked near-random corners).
* **Data window.** Only observations from the last ``window`` intervals (default 4) up to ``t``
  (``(t - t_obs) / interval <= window - 0.5``) are used, at most ``max_points`` (default 256) of
  the most recent: older intervals describe an earlier stage of training, and the paper and Ray Tune
  likewise fit only recent data (Ray keeps the last 1000 points). The time-varying kernel
  down-weights the older points inside the window.
* **Acquisition.** GP-UCB at the current time, ``mean + sqrt(beta) * std`` with Ray Tune's schedule
  ``beta = 0.2 + max(0, log(0.4 * n))`` (``n`` observations in the window; the paper's theoretical
  ``beta_t`` has constants that are not practical). ``std`` is the latent function's (without the
  white noise), and unlike Ray Tune (which multiplies by the variance) the standard deviation is
  used, as in GP-UCB. It is maximised over the normalised box by
  ``n_candidates`` seeded uniform candidates (plus the donor's point and the observed points), then
  scipy L-BFGS-B from the best ``n_refine`` of them.
* **Batch.** ``pending`` are configurations already chosen for other receivers this round. They are
  added at the current time as hallucinated observations at the GP's posterior mean (GP-BUCB,
  Desautels et al. 2014), with the fitted kernel: the mean is unchanged, the uncertainty around
  them shrinks, so receivers of one round are pushed apart. Unlike GP-BUCB the hallucinated points
  are noise-free: with RL-level noise, a noisy hallucination barely lowers the uncertainty (in the
  test with pure-noise deltas the second receiver moved by 0.001 of the box, i.e. got the same
  configuration), a noise-free one removes it at the pending point.

Other parameter kinds
---------------------
* ``int``: modelled and optimised as continuous, then rounded and clipped (``Param.clip``).
* ``categorical``: PB2 as published is continuous-only, so categoricals are explored with the
  ordinary PBT rule, by calling :func:`evo.core.space.explore` on a space holding only them (perturb to a
  neighbouring choice, or resample with the space's ``resample_probability``). Their ops are the
  ones ``explore`` gives (``"x1.2"``, ``"resample"``). The GP ignores them: observations that differ
  only in categoricals are pooled.
* Fixed parameters (``Param.fixed``) and constants are copied unchanged and get no entry in
  ``changes`` (as in ``explore``).

Fallback
--------
When the model cannot be used, the whole step is :func:`evo.core.space.explore` with the same ``rng``
(with too little data, exactly ``explore(hparams, space, rng)``; after a failed fit, with the rest
of the stream), and every op is prefixed with ``"fallback:"`` (``"fallback:x0.8"``, ``"fallback:resample"``). That
happens when the window holds observations from fewer than ``min_intervals`` (default 2) distinct
intervals or fewer than ``min_points`` (default 4) usable observations, when the usable observations
do not vary in the modelled hyperparameters or in their deltas, and when fitting or optimising the
GP fails for any reason (this function never raises because of the model). With no continuous or int
parameter to explore, only categoricals are explored (ordinary ops, no fallback prefix).

BLAS is limited to one thread while fitting (``threadpoolctl``): the matrices are tiny, and
threads only contend, with each other and with the training processes on the same node.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np
from scipy.optimize import minimize
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, WhiteKernel
from threadpoolctl import threadpool_limits

from evo.core.gp_kernel import TimeVaryingSE
from evo.core.space import HParams, Param, Space, explore

__all__ = ["Observation", "PB2Settings", "TimeVaryingSE", "pb2_explore"]

FALLBACK_PREFIX = "fallback:"
PB2_OP = "pb2"


@dataclass(frozen=True)
class Observation:
    """One member's interval: trained with ``hparams`` until time ``t``; its score changed by ``delta``."""

    t: float
    """Time of the interval's end (env steps per member, or generation index)."""
    hparams: Mapping[str, Any]
    """Hyperparameters the member trained with during the interval."""
    delta: float
    """Change in score over the interval (``score_end - score_start``)."""
    member: int


@dataclass(frozen=True)
class PB2Settings:
    """Knobs of :func:`pb2_explore`; the defaults are the documented choices."""

    window: int = 4
    """Intervals of history (ending at the current time) the GP is fitted on."""
    max_points: int = 256
    """At most this many (most recent) observations are used."""
    min_intervals: int = 2
    """Fall back to ``explore`` with observations from fewer distinct intervals than this ..."""
    min_points: int = 4
    """... or fewer usable observations than this."""
    length_scale_bounds: tuple[float, float] = (0.2, 2.0)
    epsilon_bounds: tuple[float, float] = (1e-3, 0.5)
    noise_bounds: tuple[float, float] = (1e-4, 4.0)
    n_restarts: int = 1
    """Extra seeded restarts of the marginal-likelihood optimisation."""
    ucb_c1: float = 0.2
    ucb_c2: float = 0.4
    """``beta = c1 + max(0, log(c2 * n))`` (Ray Tune's PB2)."""
    n_candidates: int = 512
    n_refine: int = 3
    refine_maxiter: int = 40


# -- mapping hyperparameters to the unit box --------------------------------------------------------
def _modelled(space: Space) -> list[Param]:
    return [p for p in space.params.values() if not p.fixed and p.kind != "categorical"]


def _to_unit(p: Param, value: Any) -> float:
    assert p.low is not None and p.high is not None
    v = float(value)
    lo, hi = float(p.low), float(p.high)
    if p.scale == "log":
        v, lo, hi = math.log(min(max(v, lo), hi)), math.log(lo), math.log(hi)
    elif p.scale == "one_minus":
        v, lo, hi = math.log(1.0 - min(max(v, lo), hi)), math.log(1.0 - lo), math.log(1.0 - hi)
    z = (v - lo) / (hi - lo)
    return min(max(z, 0.0), 1.0)


def _from_unit(p: Param, z: float) -> Any:
    assert p.low is not None and p.high is not None
    z = min(max(float(z), 0.0), 1.0)
    lo, hi = float(p.low), float(p.high)
    if p.scale == "log":
        value = math.exp(math.log(lo) + z * (math.log(hi) - math.log(lo)))
    elif p.scale == "one_minus":
        value = 1.0 - math.exp(math.log(1.0 - lo) + z * (math.log(1.0 - hi) - math.log(1.0 - lo)))
    else:
        value = lo + z * (hi - lo)
    return p.clip(value)


def _point(params: Sequence[Param], hparams: Mapping[str, Any]) -> np.ndarray | None:
    """``hparams`` in the unit box, or ``None`` if a value is missing or not a finite number."""
    out = []
    for p in params:
        value = hparams.get(p.name)
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            return None
        if not math.isfinite(float(value)):
            return None
        out.append(_to_unit(p, value))
    return np.asarray(out, dtype=float)


# -- the data the GP sees ----------------------------------------------------------------------------
def _interval_length(history: Sequence[Observation]) -> float:
    """Median gap between a member's consecutive observations (else between distinct times)."""
    by_member: dict[int, list[float]] = {}
    for o in history:
        by_member.setdefault(o.member, []).append(float(o.t))
    gaps = [b - a for ts in by_member.values() for a, b in pairwise(sorted(ts)) if b - a > 0]
    if not gaps:
        times = sorted({float(o.t) for o in history})
        gaps = [b - a for a, b in pairwise(times) if b - a > 0]
    return float(np.median(gaps)) if gaps else 1.0


def _robust_standardise(y: np.ndarray) -> np.ndarray | None:
    centre = float(np.median(y))
    scale = 1.4826 * float(np.median(np.abs(y - centre)))
    if not scale > 1e-12:
        scale = float(np.std(y))
    if not scale > 1e-12:
        return None
    return np.clip((y - centre) / scale, -3.0, 3.0)


@dataclass(frozen=True)
class _Data:
    X: np.ndarray  # (n, 1 + d): time in intervals relative to now, then the unit-box point
    y: np.ndarray  # standardised deltas


def _dataset(params: Sequence[Param], history: Sequence[Observation], t: float,
             settings: PB2Settings) -> _Data | None:
    usable = []
    for o in history:
        try:
            ot, delta = float(o.t), float(o.delta)
        except (TypeError, ValueError):
            continue
        if not (math.isfinite(ot) and math.isfinite(delta)):
            continue
        z = _point(params, o.hparams)
        if z is not None:
            usable.append((ot, delta, z, o))
    if not usable:
        return None
    interval = _interval_length([u[3] for u in usable])
    lag = [(t - ot) / interval for ot, _, _, _ in usable]
    keep = [i for i, a in enumerate(lag) if a <= settings.window - 0.5]
    keep.sort(key=lambda i: -usable[i][0])  # most recent first (stable: history order among ties)
    keep = sorted(keep[: settings.max_points])
    if len(keep) < settings.min_points or len({round(lag[i]) for i in keep}) < settings.min_intervals:
        return None
    Z = np.stack([usable[i][2] for i in keep])
    if float(np.max(np.ptp(Z, axis=0))) < 1e-9:
        return None  # every observation had the same hyperparameters: nothing to regress on
    y = _robust_standardise(np.asarray([usable[i][1] for i in keep], dtype=float))
    if y is None:
        return None
    times = np.asarray([[-lag[i]] for i in keep], dtype=float)
    return _Data(np.hstack([times, Z]), y)


# -- fitting and the acquisition -------------------------------------------------------------------
def _fit(data: _Data, pending: np.ndarray, settings: PB2Settings, seed: int) -> GaussianProcessRegressor:
    """Fit the GP's hyperparameters on ``data``; return the model the acquisition is computed with."""
    kernel = (ConstantKernel(1.0, (0.05, 20.0))
              * TimeVaryingSE(0.5, settings.length_scale_bounds, 0.1, settings.epsilon_bounds)
              + WhiteKernel(0.1, settings.noise_bounds))
    gp = GaussianProcessRegressor(kernel, alpha=1e-8, normalize_y=False, n_restarts_optimizer=settings.n_restarts,
                                  random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning when a hyperparameter sits on its bound
        gp.fit(data.X, data.y)
    # The acquisition model: the fitted kernel without its white-noise term, the noise as a per-point
    # ``alpha`` instead, so that the predicted std is the latent function's (what UCB wants). Pending
    # points are added as noise-free hallucinated observations at the posterior mean: the mean stays
    # the same everywhere, the uncertainty at (and around) them collapses.
    noise = float(gp.kernel_.k2.noise_level)
    X, y = data.X, data.y
    alpha = np.full(len(y), noise + 1e-8)
    if len(pending):
        Xp = np.hstack([np.zeros((len(pending), 1)), pending])
        X, y = np.vstack([X, Xp]), np.concatenate([y, gp.predict(Xp)])
        alpha = np.concatenate([alpha, np.full(len(pending), 1e-6)])
    acquisition = GaussianProcessRegressor(gp.kernel_.k1, alpha=alpha, normalize_y=False, optimizer=None)
    return acquisition.fit(X, y)


def _maximise_ucb(gp: GaussianProcessRegressor, data: _Data, donor: np.ndarray | None, settings: PB2Settings,
                  rng: np.random.Generator) -> np.ndarray:
    d = data.X.shape[1] - 1
    n = data.X.shape[0]  # observations, without the hallucinated pending points
    kappa = math.sqrt(settings.ucb_c1 + max(0.0, math.log(settings.ucb_c2 * n)))

    def ucb(Z: np.ndarray) -> np.ndarray:
        Z = np.clip(np.atleast_2d(Z), 0.0, 1.0)
        mean, std = gp.predict(np.hstack([np.zeros((len(Z), 1)), Z]), return_std=True)
        return np.asarray(mean + kappa * std, dtype=float)

    step = 1e-6

    def negative_ucb_and_grad(z: np.ndarray) -> tuple[float, np.ndarray]:
        # Forward differences in one batched prediction (backwards at the upper bound).
        h = np.where(z + step <= 1.0, step, -step)
        values = ucb(np.vstack([z, z + np.diag(h)]))
        return -float(values[0]), -(values[1:] - values[0]) / h

    parts = [rng.random((settings.n_candidates, d)), data.X[:, 1:]]
    if donor is not None:
        parts.append(donor[None, :])
    candidates = np.vstack(parts)
    values = ucb(candidates)
    order = np.argsort(-values, kind="stable")
    best_z, best_v = candidates[order[0]], float(values[order[0]])
    starts: list[np.ndarray] = []
    for i in order:
        if len(starts) >= settings.n_refine:
            break
        if all(float(np.max(np.abs(candidates[i] - s))) > 1e-6 for s in starts):
            starts.append(candidates[i])
    for z0 in starts:
        res = minimize(negative_ucb_and_grad, z0, jac=True, method="L-BFGS-B", bounds=[(0.0, 1.0)] * d,
                       options={"maxiter": settings.refine_maxiter})
        z = np.clip(np.asarray(res.x, dtype=float), 0.0, 1.0)
        v = float(ucb(z)[0])
        if math.isfinite(v) and v > best_v:
            best_z, best_v = z, v
    return np.asarray(best_z, dtype=float)


# -- the explore step --------------------------------------------------------------------------------
def _fallback(hparams: Mapping[str, Any], space: Space, rng: np.random.Generator) -> tuple[HParams, dict[str, Any]]:
    new, changes = explore(hparams, space, rng)
    for change in changes.values():
        change["op"] = FALLBACK_PREFIX + str(change["op"])
    return new, changes


def pb2_explore(hparams: Mapping[str, Any], space: Space, rng: np.random.Generator,
                history: Sequence[Observation], t: float,
                pending: Sequence[Mapping[str, Any]] = (),
                *, settings: PB2Settings | None = None) -> tuple[HParams, dict[str, Any]]:
    """PB2 explore: new hyperparameters for a receiver that copied the donor with ``hparams``.

    ``history`` holds the observed intervals of all members, ``t`` is the current time (in the same
    unit as ``Observation.t``), ``pending`` the configurations already chosen for other receivers in
    this round. Returns ``(new_hparams, changes)`` in the format of :func:`evo.core.space.explore`, with op
    ``"pb2"`` for values the GP chose (see the module docstring for categoricals and the fallback).
    """
    settings = settings or PB2Settings()
    params = _modelled(space)
    if not params:
        return explore(hparams, space, rng)
    try:
        now = float(t)
        data = _dataset(params, history, now, settings) if math.isfinite(now) else None
    except Exception:
        data = None
    if data is None:
        return _fallback(hparams, space, rng)

    categorical = {n: p for n, p in space.params.items() if p.kind == "categorical"}
    sub = Space(params=categorical, constants={}, explore_settings=space.explore_settings)
    new, changes = explore(hparams, sub, rng)
    try:
        seed = int(rng.integers(2**31 - 1))
        points = [_point(params, h) for h in pending]
        pend = np.asarray([z for z in points if z is not None], dtype=float).reshape(-1, len(params))
        with threadpool_limits(1):  # tiny matrices: BLAS threads only contend with each other
            gp = _fit(data, pend, settings, seed)
            z = _maximise_ucb(gp, data, _point(params, hparams), settings, rng)
        if not np.all(np.isfinite(z)):
            raise FloatingPointError("non-finite acquisition maximiser")
    except Exception:
        return _fallback(hparams, space, rng)
    for p, zi in zip(params, z, strict=True):
        old = hparams[p.name]
        value = _from_unit(p, float(zi))
        new[p.name] = value
        changes[p.name] = {"old": old, "new": value, "op": PB2_OP}
    return new, {n: changes[n] for n in space.params if n in changes}
