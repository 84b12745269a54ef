"""Hyperparameter search space: bounds, scales, sampling and PBT's explore step.

Pure logic: no MPI, no stable-baselines3. Everything random takes an explicit
``numpy.random.Generator`` so that every decision can be replayed.

Scales
------
``linear``     perturb ``x -> x * f``
``log``        perturb ``x -> x * f`` and sample log-uniformly
``one_minus``  perturb in ``1 - x`` space: ``x -> 1 - (1 - x) * f`` (discount factors, GAE lambda)
Kinds
-----
``float``, ``int`` (rounded after perturbing) and ``categorical`` (perturbing moves to a
neighbouring choice, as Ray Tune does).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from evo.errors import ConfigError

HParams = dict[str, Any]
SCALES = ("linear", "log", "one_minus")
KINDS = ("float", "int", "categorical")


@dataclass(frozen=True)
class Param:
    """One hyperparameter: where it may go (bounds) and where it starts (init)."""

    name: str
    kind: str = "float"
    scale: str = "linear"
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] | None = None
    init: tuple[float, float] | tuple[Any, ...] | float | int | None = None
    """``(lo, hi)`` range to sample from, a single fixed start value, or (categorical) a subset
    of ``choices``. ``None`` samples from the full bounds."""

    def validate(self) -> None:
        n = self.name
        if self.kind not in KINDS:
            raise ConfigError(f"hyperparameter {n!r}: kind must be one of {KINDS}, got {self.kind!r}")
        if self.scale not in SCALES:
            raise ConfigError(f"hyperparameter {n!r}: scale must be one of {SCALES}, got {self.scale!r}")
        if self.kind == "categorical":
            if not self.choices:
                raise ConfigError(f"hyperparameter {n!r}: categorical needs a non-empty 'choices' list")
            if self.init is not None:
                init = self.init if isinstance(self.init, (list, tuple)) else (self.init,)
                if not init:
                    raise ConfigError(f"hyperparameter {n!r}: init must name at least one of the choices")
                bad = [c for c in init if c not in self.choices]
                if bad:
                    raise ConfigError(f"hyperparameter {n!r}: initial value(s) {bad} not in choices")
            return
        if self.low is None or self.high is None:
            raise ConfigError(f"hyperparameter {n!r}: needs 'low' and 'high' bounds")
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise ConfigError(f"hyperparameter {n!r}: bounds must be finite")
        if self.low > self.high:
            raise ConfigError(f"hyperparameter {n!r}: inverted bounds low={self.low} > high={self.high}")
        if self.scale == "log" and self.low <= 0:
            raise ConfigError(f"hyperparameter {n!r}: log scale needs low > 0, got {self.low}")
        if self.scale == "one_minus" and self.high >= 1:
            raise ConfigError(f"hyperparameter {n!r}: one_minus scale needs high < 1, got {self.high}")
        if self.kind == "int" and (self.low != int(self.low) or self.high != int(self.high)):
            raise ConfigError(f"hyperparameter {n!r}: int bounds must be whole numbers")
        lo, hi = self.init_range()
        if not (self.low <= lo <= hi <= self.high):  # also rejects NaN
            raise ConfigError(
                f"hyperparameter {n!r}: initial value/range {self.init} outside bounds [{self.low}, {self.high}]"
            )

    @property
    def fixed(self) -> bool:
        """A parameter whose bounds pin it to one value is never explored."""
        if self.kind == "categorical":
            return self.choices is not None and len(self.choices) == 1
        return self.low == self.high

    def init_range(self) -> tuple[float, float]:
        assert self.low is not None and self.high is not None
        if self.init is None:
            return float(self.low), float(self.high)
        if isinstance(self.init, (list, tuple)):
            if len(self.init) != 2:
                raise ConfigError(f"hyperparameter {self.name!r}: init must be a value or [low, high]")
            return float(self.init[0]), float(self.init[1])
        return float(self.init), float(self.init)

    # -- sampling -------------------------------------------------------------------------------
    def sample(self, rng: np.random.Generator, initial: bool = True) -> Any:
        """Draw a value: from the initial distribution, or (``initial=False``) the full bounds."""
        if self.kind == "categorical":
            assert self.choices is not None
            pool: Sequence[Any] = self.choices
            if initial and self.init is not None:
                pool = self.init if isinstance(self.init, (list, tuple)) else (self.init,)
            return pool[int(rng.integers(len(pool)))]
        assert self.low is not None and self.high is not None
        lo, hi = self.init_range() if initial else (float(self.low), float(self.high))
        if lo == hi:
            value = lo
        elif self.scale == "log":
            value = float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
        elif self.scale == "one_minus":
            value = 1.0 - float(math.exp(rng.uniform(math.log(1 - hi), math.log(1 - lo))))
        else:
            value = float(rng.uniform(lo, hi))
        return self.clip(value)

    def clip(self, value: Any) -> Any:
        """Clamp into bounds; ints stay ints, categoricals must be a choice."""
        if self.kind == "categorical":
            assert self.choices is not None
            if value not in self.choices:
                raise ConfigError(f"hyperparameter {self.name!r}: {value!r} not in {list(self.choices)}")
            return value
        assert self.low is not None and self.high is not None
        value = min(max(float(value), float(self.low)), float(self.high))
        if self.kind == "int":
            return int(round(value))
        return value

    def perturb(self, value: Any, factor: float) -> Any:
        """Move ``value`` by ``factor`` in this parameter's scale, then clamp."""
        if self.kind == "categorical":
            assert self.choices is not None
            idx = list(self.choices).index(value)
            step = -1 if factor < 1 else 1
            return self.choices[min(max(idx + step, 0), len(self.choices) - 1)]
        if self.scale == "one_minus":
            new = 1.0 - (1.0 - float(value)) * factor
        else:
            new = float(value) * factor
        if self.kind == "int" and factor != 1 and round(new) == value:
            new = value + (1 if factor > 1 else -1)  # small ints (1, 2) would never move otherwise
        return self.clip(new)


@dataclass(frozen=True)
class ExploreSettings:
    """How losers explore after copying a winner (PBT's ``explore`` step)."""

    perturb_factors: tuple[float, ...] = (0.8, 1.2)
    resample_probability: float = 0.25

    def validate(self) -> None:
        if not self.perturb_factors or any(f <= 0 or not math.isfinite(f) for f in self.perturb_factors):
            raise ConfigError("explore.perturb_factors must be a non-empty list of positive numbers")
        if not 0.0 <= self.resample_probability <= 1.0:
            raise ConfigError("explore.resample_probability must be in [0, 1]")


@dataclass(frozen=True)
class Space:
    """A set of :class:`Param` plus fixed (never explored) values and explore settings."""

    params: Mapping[str, Param]
    constants: Mapping[str, Any] = field(default_factory=dict)
    explore_settings: ExploreSettings = ExploreSettings()

    def validate(self) -> None:
        for p in self.params.values():
            p.validate()
        self.explore_settings.validate()

    @property
    def names(self) -> list[str]:
        return [*self.params, *self.constants]

    def sample(self, rng: np.random.Generator) -> HParams:
        """Initial hyperparameters for a new member (parameters in declaration order)."""
        hp: HParams = {name: p.sample(rng, initial=True) for name, p in self.params.items()}
        hp.update(self.constants)
        return hp

    def explore(self, hparams: Mapping[str, Any], rng: np.random.Generator) -> tuple[HParams, dict[str, Any]]:
        """PBT explore: perturb or resample every searchable hyperparameter.

        Returns ``(new_hparams, changes)`` where ``changes[name] = {"old", "new", "op"}`` and ``op``
        is ``"resample"`` or ``"x<factor>"``. ``hparams`` is not modified.
        """
        return explore(hparams, self, rng)


def explore(
    hparams: Mapping[str, Any], space: Space, rng: np.random.Generator
) -> tuple[HParams, dict[str, Any]]:
    """Pure PBT explore step: ``(config, space, rng) -> (new config, what changed)``."""
    settings = space.explore_settings
    new: HParams = dict(hparams)
    changes: dict[str, Any] = {}
    for name, p in space.params.items():
        if p.fixed:
            continue
        old = hparams[name]
        # Draw both numbers for every parameter so the rng stream does not depend on the branch.
        u = float(rng.random())
        factor = float(settings.perturb_factors[int(rng.integers(len(settings.perturb_factors)))])
        resampled = p.sample(rng, initial=False)
        if u < settings.resample_probability:
            value, op = resampled, "resample"
        else:
            value, op = p.perturb(old, factor), f"x{factor:g}"
        new[name] = value
        changes[name] = {"old": old, "new": value, "op": op}
    return new, changes


# -- algorithms: which hyperparameters belong to which learner -----------------------------------
ALGOS = ("ppo", "a2c", "sac", "td3", "dqn")
"""Values of ``--algo``: stable-baselines3's PPO, A2C, SAC, TD3 and DQN."""
ON_POLICY = ("ppo", "a2c")
"""Algorithms that train on whole rollouts of ``n_steps * n_envs`` env steps."""
ACTION_SPACES: dict[str, tuple[str, ...]] = {
    "ppo": ("Box", "Discrete", "MultiDiscrete", "MultiBinary"),
    "a2c": ("Box", "Discrete", "MultiDiscrete", "MultiBinary"),
    "sac": ("Box",),
    "td3": ("Box",),
    "dqn": ("Discrete",),
}
"""Gymnasium action-space classes each algorithm can drive (as stable-baselines3 declares them)."""

_OFF_POLICY_LIVE = ("learning_rate", "gamma", "batch_size", "tau", "train_freq", "gradient_steps", "learning_starts")
HPARAMS: dict[str, tuple[str, ...]] = {
    "ppo": ("learning_rate", "clip_range", "ent_coef", "vf_coef", "gamma", "gae_lambda", "n_epochs", "batch_size",
            "max_grad_norm"),
    "a2c": ("learning_rate", "ent_coef", "vf_coef", "gamma", "gae_lambda", "max_grad_norm"),
    "sac": (*_OFF_POLICY_LIVE, "ent_coef", "target_entropy", "target_update_interval", "action_noise_std"),
    "td3": (*_OFF_POLICY_LIVE, "policy_delay", "target_policy_noise", "target_noise_clip", "action_noise_std"),
    "dqn": (*_OFF_POLICY_LIVE, "target_update_interval", "exploration_fraction", "exploration_initial_eps",
            "exploration_final_eps", "max_grad_norm"),
}
"""Hyperparameters a live model takes from its next ``train()`` on: searchable, and moved by an exploit."""
SETTINGS: dict[str, tuple[str, ...]] = {
    "ppo": ("net_arch", "ortho_init", "log_std_init", "use_sde", "sde_sample_freq", "normalize_advantage"),
    "a2c": ("net_arch", "ortho_init", "log_std_init", "use_sde", "sde_sample_freq", "normalize_advantage",
            "use_rms_prop", "rms_prop_eps"),
    "sac": ("net_arch", "buffer_size", "log_std_init", "use_sde", "sde_sample_freq"),
    "td3": ("net_arch", "buffer_size"),
    "dqn": ("net_arch", "buffer_size"),
}
"""Settings fixed when the model is built (network shape, buffer size, ...): a named set or a scalar in
``--hyperparams`` may give them, explore never changes them, and every member of a run has the same."""

SEARCHABLE = HPARAMS["ppo"]
"""Hyperparameters evo knows how to apply to a live PPO model (kept for older imports)."""

INT_NAMES = frozenset({"n_epochs", "batch_size", "train_freq", "gradient_steps", "learning_starts",
                       "target_update_interval", "policy_delay", "buffer_size", "sde_sample_freq"})
BOOL_NAMES = frozenset({"ortho_init", "use_sde", "normalize_advantage", "use_rms_prop"})
_MIN_INT = {"n_epochs": 1, "batch_size": 1, "train_freq": 1, "gradient_steps": -1, "learning_starts": 0,
            "target_update_interval": 1, "policy_delay": 1, "buffer_size": 1, "sde_sample_freq": -1}
_NON_NEGATIVE = frozenset({"learning_rate", "clip_range", "vf_coef", "max_grad_norm", "tau", "action_noise_std",
                           "target_policy_noise", "target_noise_clip", "exploration_fraction",
                           "exploration_initial_eps", "exploration_final_eps", "rms_prop_eps"})


def check_algo(algo: str) -> str:
    if algo not in ALGOS:
        raise ConfigError(f"unknown --algo {algo!r} (known: {', '.join(ALGOS)})")
    return algo


def known_names(algo: str) -> tuple[str, ...]:
    """Every hyperparameter or setting a member of ``algo`` accepts."""
    return (*HPARAMS[check_algo(algo)], *SETTINGS[algo])


def generation_unit(algo: str, n_steps: int, n_envs: int) -> int:
    """Env steps a generation must be a multiple of: one rollout (``n_steps * n_envs``) for on-policy
    algorithms, one step of every env (``n_envs``) for off-policy ones."""
    return n_steps * n_envs if check_algo(algo) in ON_POLICY else n_envs


def coerce_value(algo: str, name: str, value: Any) -> Any:
    """``value`` as the type ``name`` takes for ``algo``; a one-line :class:`ConfigError` if it does not
    belong to the algorithm or has the wrong type."""
    if name not in known_names(algo):
        raise ConfigError(f"hyperparameter {name!r} does not belong to --algo {algo} "
                          f"(known: {', '.join(known_names(algo))})")
    if isinstance(value, str) and (name == "net_arch" or name in BOOL_NAMES):
        value = _from_text(value)  # as members.csv writes it (evo.replay reads schedules back from there)
    if name == "net_arch":
        if not isinstance(value, (list, tuple)) or not value or \
                not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
            raise ConfigError(f"net_arch must be a non-empty list of layer sizes, got {value!r}")
        return [int(v) for v in value]
    if name in BOOL_NAMES:
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be true or false, got {value!r}")
        return value
    if algo == "sac" and name in ("ent_coef", "target_entropy") and isinstance(value, str):
        if value == "auto" or (name == "ent_coef" and value.startswith("auto_") and _positive(value[5:])):
            return value
        allowed = "'auto', 'auto_<initial value>'" if name == "ent_coef" else "'auto'"
        raise ConfigError(f"{name} must be a number or {allowed}, got {value!r}")
    if isinstance(value, bool):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    number = _num(name, "value", value)
    if not math.isfinite(number):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    if name in INT_NAMES:
        if number != int(number) or number < _MIN_INT[name] or (name == "sde_sample_freq" and number == 0):
            raise ConfigError(f"{name} must be a whole number >= {_MIN_INT[name]}, got {value!r}")
        return int(number)
    if name in _NON_NEGATIVE and number < 0:
        raise ConfigError(f"{name} must be >= 0, got {value!r}")
    return number


def _from_text(text: str) -> Any:
    import json

    if text in ("True", "False"):
        return text == "True"
    try:
        return json.loads(text)
    except ValueError:
        return text


def _positive(text: str) -> bool:
    try:
        return float(text) > 0
    except ValueError:
        return False


# -- defaults and YAML ---------------------------------------------------------------------------
def default_space(rollout_size: int | None = None, algo: str = "ppo") -> Space:
    """The default search space of ``algo`` (bounds, then the initial range in ``init``).

    Ranges span the RL Zoo's tuned settings (rl-baselines3-zoo ``hyperparams/<algo>.yml``) for the
    classic-control, Box2D and PyBullet tasks; initial ranges sit around its values for CartPole-v1
    and Pendulum-v1. Everything not listed keeps stable-baselines3's default (or the value a set or a
    ``--hyperparams`` file gives).

    ====  ==========================================================================================
    algo  searched (scale: bounds, initial range)
    ====  ==========================================================================================
    ppo   learning_rate (log: 1e-5..1e-2, 1e-4..1e-3), clip_range (0.05..0.5, 0.1..0.3), ent_coef (log:
          1e-6..0.1, 1e-4..1e-2), vf_coef (0.1..1, 0.25..0.75), gamma (1-x: 0.9..0.9999, 0.95..0.999),
          gae_lambda (1-x: 0.8..0.99, 0.9..0.98), n_epochs (int: 1..20, 3..10), batch_size (sizes that
          divide the rollout, from 32..1024; 64..256 at first)
    a2c   learning_rate (log: 1e-5..1e-2, 1e-4..2e-3), ent_coef (log: 1e-8..0.1, 1e-6..1e-2), vf_coef
          (0.1..1, 0.25..0.75), gamma (1-x: 0.9..0.9999, 0.95..0.995), gae_lambda (1-x: 0.8..0.999,
          0.9..0.99); n_steps stays fixed (``--n-steps``), a rollout is one batch
    sac   learning_rate (log: 1e-5..1e-2, 1e-4..1e-3), gamma (1-x: 0.9..0.9999, 0.95..0.995),
          batch_size (64, 128, 256, 512; 128 or 256 at first), tau (log: 1e-3..0.1, 5e-3..0.02),
          train_freq and gradient_steps (int, log: 1..64, starting at 1); ent_coef stays 'auto'
    td3   as sac, plus action_noise_std (0..0.5, 0.05..0.2), target_policy_noise (0..0.5, 0.1..0.3),
          policy_delay (int: 1..4, 2); batch_size (64, 100, 128, 256, 512; 100..256 at first)
    dqn   learning_rate (log: 1e-5..1e-2, 1e-4..3e-3), gamma (1-x: 0.9..0.9999, 0.95..0.995),
          batch_size (32..512; 64 or 128 at first), train_freq (int, log: 1..256, 4..16),
          gradient_steps (int, log: 1..128, 1..4), target_update_interval (int, log: 1..20000,
          100..5000), exploration_fraction (0.01..0.5, 0.05..0.2), exploration_final_eps (0..0.2,
          0.01..0.1)
    ====  ==========================================================================================
    """
    algo = check_algo(algo)
    if algo == "ppo":
        return _ppo_space(rollout_size)
    lr_init = {"a2c": (1e-4, 2e-3), "dqn": (1e-4, 3e-3)}.get(algo, (1e-4, 1e-3))
    params = [
        Param("learning_rate", scale="log", low=1e-5, high=1e-2, init=lr_init),
        Param("gamma", scale="one_minus", low=0.9, high=0.9999, init=(0.95, 0.995)),
    ]
    if algo == "a2c":
        params += [
            Param("ent_coef", scale="log", low=1e-8, high=0.1, init=(1e-6, 1e-2)),
            Param("vf_coef", low=0.1, high=1.0, init=(0.25, 0.75)),
            Param("gae_lambda", scale="one_minus", low=0.8, high=0.999, init=(0.9, 0.99)),
        ]
    elif algo in ("sac", "td3"):
        batch = (64, 128, 256, 512) if algo == "sac" else (64, 100, 128, 256, 512)
        params += [
            Param("batch_size", kind="categorical", choices=batch,
                  init=(128, 256) if algo == "sac" else (100, 128, 256)),
            Param("tau", scale="log", low=1e-3, high=0.1, init=(5e-3, 0.02)),
            Param("train_freq", kind="int", scale="log", low=1, high=64, init=1),
            Param("gradient_steps", kind="int", scale="log", low=1, high=64, init=1),
        ]
        if algo == "td3":
            params += [
                Param("action_noise_std", low=0.0, high=0.5, init=(0.05, 0.2)),
                Param("target_policy_noise", low=0.0, high=0.5, init=(0.1, 0.3)),
                Param("policy_delay", kind="int", low=1, high=4, init=2),
            ]
    else:  # dqn
        params += [
            Param("batch_size", kind="categorical", choices=(32, 64, 128, 256, 512), init=(64, 128)),
            Param("train_freq", kind="int", scale="log", low=1, high=256, init=(4, 16)),
            Param("gradient_steps", kind="int", scale="log", low=1, high=128, init=(1, 4)),
            Param("target_update_interval", kind="int", scale="log", low=1, high=20000, init=(100, 5000)),
            Param("exploration_fraction", low=0.01, high=0.5, init=(0.05, 0.2)),
            Param("exploration_final_eps", low=0.0, high=0.2, init=(0.01, 0.1)),
        ]
    return Space(params={p.name: p for p in params})


def _ppo_space(rollout_size: int | None) -> Space:
    batch_choices: tuple[int, ...] = (32, 64, 128, 256, 512, 1024)
    if rollout_size is not None:
        batch_choices = tuple(b for b in batch_choices if rollout_size % b == 0 and b <= rollout_size)
        if not batch_choices:
            batch_choices = (rollout_size,)
    mid = [b for b in batch_choices if 64 <= b <= 256] or list(batch_choices)
    params = [
        Param("learning_rate", scale="log", low=1e-5, high=1e-2, init=(1e-4, 1e-3)),
        Param("clip_range", low=0.05, high=0.5, init=(0.1, 0.3)),
        Param("ent_coef", scale="log", low=1e-6, high=0.1, init=(1e-4, 1e-2)),
        Param("vf_coef", low=0.1, high=1.0, init=(0.25, 0.75)),
        Param("gamma", scale="one_minus", low=0.9, high=0.9999, init=(0.95, 0.999)),
        Param("gae_lambda", scale="one_minus", low=0.8, high=0.99, init=(0.9, 0.98)),
        Param("n_epochs", kind="int", low=1, high=20, init=(3, 10)),
        Param("batch_size", kind="categorical", choices=batch_choices, init=tuple(mid)),
    ]
    return Space(params={p.name: p for p in params})


_PARAM_KEYS = {"low", "high", "scale", "type", "kind", "init", "choices"}


def _num(name: str, key: str, value: Any) -> float:
    # PyYAML reads 1e-5 (no dot) as a string; accept it as the number the user meant.
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"hyperparameter {name!r}: {key} must be a number, got {value!r}") from None
    return out


def space_from_mapping(data: Mapping[str, Any], base: Space, algo: str = "ppo") -> Space:
    """Override ``base`` with a mapping as read from a ``--hyperparams`` YAML file.

    Each key is a hyperparameter name of ``algo``; its value is either a scalar (fix it, never
    explored; settings such as ``net_arch`` or ``buffer_size`` only take this form), or a mapping
    with any of ``low``, ``high``, ``scale``, ``type``, ``init``, ``choices`` that override the
    default for that parameter. The key ``explore`` may hold ``perturb_factors`` and
    ``resample_probability``.
    """
    if not isinstance(data, Mapping):
        raise ConfigError("hyperparameter file must hold a mapping of name -> settings")
    params = dict(base.params)
    constants = dict(base.constants)
    settings = base.explore_settings
    for name, spec in data.items():
        if name == "explore":
            if not isinstance(spec, Mapping) or set(spec) - {"perturb_factors", "resample_probability"}:
                raise ConfigError("'explore' takes only perturb_factors and resample_probability")
            factors = spec.get("perturb_factors", settings.perturb_factors)
            if not isinstance(factors, (list, tuple)):
                raise ConfigError("explore.perturb_factors must be a list of numbers")
            settings = ExploreSettings(
                perturb_factors=tuple(_num("explore", "perturb_factors", f) for f in factors),
                resample_probability=_num("explore", "resample_probability",
                                          spec.get("resample_probability", settings.resample_probability)),
            )
            continue
        if name not in known_names(algo):
            raise ConfigError(f"unknown hyperparameter {name!r} for --algo {algo} "
                              f"(known: {', '.join(known_names(algo))})")
        if not isinstance(spec, Mapping):
            params.pop(name, None)
            constants[name] = coerce_value(algo, name, spec)
            continue
        if name in SETTINGS[algo]:
            raise ConfigError(f"{name!r} is fixed when the model is built: give one value, not a search range")
        unknown = set(spec) - _PARAM_KEYS
        if unknown:
            raise ConfigError(f"hyperparameter {name!r}: unknown setting(s) {sorted(unknown)}")
        old = params.get(name) or Param(name, kind="int" if name in INT_NAMES else "float")
        constants.pop(name, None)
        kw: dict[str, Any] = {}
        if "type" in spec or "kind" in spec:
            kw["kind"] = str(spec.get("type", spec.get("kind")))
        if "scale" in spec:
            kw["scale"] = str(spec["scale"])
        for key in ("low", "high"):
            if key in spec:
                kw[key] = _num(name, key, spec[key])
        if "choices" in spec:
            if not isinstance(spec["choices"], (list, tuple)):
                raise ConfigError(f"hyperparameter {name!r}: choices must be a list")
            kw["choices"] = tuple(coerce_value(algo, name, c) for c in spec["choices"])
            kw.setdefault("kind", "categorical")
            kw.setdefault("init", None)
        if "init" in spec:
            init = spec["init"]
            kind = kw.get("kind", old.kind)
            if kind == "categorical":
                kw["init"] = tuple(coerce_value(algo, name, c) for c in init) if isinstance(init, (list, tuple)) \
                    else coerce_value(algo, name, init)
            elif isinstance(init, (list, tuple)):
                kw["init"] = tuple(_num(name, "init", v) for v in init)
            else:
                kw["init"] = _num(name, "init", init)
        elif "low" in kw or "high" in kw:
            kw["init"] = None  # new bounds without init: sample initial values from the bounds
        params[name] = replace(old, **kw)
    space = Space(params=params, constants=constants, explore_settings=settings)
    space.validate()
    return space


def read_space_file(path: str | Path | None) -> str | None:
    """The text of a ``--hyperparams`` file (``None`` for no file). Read it on one rank and
    broadcast it, so a file only some ranks can see fails the whole job the same way."""
    if path is None:
        return None
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read hyperparameter file {str(path)!r}: {exc.strerror}") from None


def parse_space(text: str | None, rollout_size: int | None = None, where: str = "--hyperparams",
                algo: str = "ppo") -> Space:
    """Default space of ``algo``, overridden by the YAML ``text`` of a ``--hyperparams`` file if given."""
    import yaml

    base = default_space(rollout_size, algo)
    if text is None:
        base.validate()
        return base
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(f"hyperparameter file {where!r} is not valid YAML{at}") from None
    return space_from_mapping(data or {}, base, algo)


def load_space(path: str | Path | None, rollout_size: int | None = None, algo: str = "ppo") -> Space:
    """Default space, overridden by the YAML file at ``path`` if given (single process)."""
    return parse_space(read_space_file(path), rollout_size, str(path), algo)


def check_batch_size(space: Space, rollout_size: int, algo: str = "ppo") -> None:
    """PPO: every batch size a member can take must divide the rollout (n_steps * n_envs).
    Off-policy algorithms sample batches from their replay buffer: any whole number > 0 will do.
    A2C trains on the whole rollout at once and has no batch size."""
    sizes: list[Any] = []
    if "batch_size" in space.params:
        p = space.params["batch_size"]
        if p.kind == "categorical":
            sizes = list(p.choices or ())
        elif algo in ON_POLICY:
            raise ConfigError("batch_size must be categorical (a list of choices that divide the rollout)")
        else:
            sizes = [p.low, p.high]
    elif "batch_size" in space.constants:
        sizes = [space.constants["batch_size"]]
    bad = [s for s in sizes if isinstance(s, bool) or not isinstance(s, (int, float)) or s != int(s) or s <= 0
           or (algo in ON_POLICY and rollout_size % int(s) != 0)]
    if bad and algo in ON_POLICY:
        raise ConfigError(
            f"batch_size {bad} does not divide the rollout size n_steps * n_envs = {rollout_size}"
        )
    if bad:
        raise ConfigError(f"batch_size {bad} must be whole numbers > 0")
