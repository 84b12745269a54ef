"""Named hyperparameter sets (``--param-name``) for the baseline runner and replay.

The built-in sets are declared by the algorithms' adapters (``AlgoSpec.sets``, e.g. ``baseline3`` and
``cartpole`` in :mod:`evo.learners.ppo`, ``zoo-dqn-cartpole`` in :mod:`evo.learners.dqn`); a
``--param-file`` holds sets of the same form (YAML: set name -> keys).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from evo.core.algos import algo_names, algo_spec, coerce_value
from evo.errors import ConfigError

RUN_KEYS = ("n_envs", "n_steps", "policy", "eval_deterministic", "algo", "normalize_obs", "normalize_reward")
"""Keys of a set that configure the run (config fields) rather than the algorithm's update. A set
without ``algo`` is a PPO set."""


def read_sets_file(path: str | Path | None) -> str | None:
    """The text of a ``--param-file`` (``None``: none, the built-in sets). Read on one rank and
    broadcast, so a file only some ranks can see fails the whole job the same way."""
    if path is None:
        return None
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read hyperparameter sets {str(path)!r}: {exc.strerror}") from None


def builtin_sets() -> dict[str, dict[str, Any]]:
    """Every registered algorithm's sets, each with its ``algo``."""
    out: dict[str, dict[str, Any]] = {}
    for algo in algo_names():
        for name, values in algo_spec(algo).sets.items():
            if name in out:
                raise ValueError(f"hyperparameter set {name!r} is declared by two algorithms")
            out[name] = {"algo": algo, **values}
    return out


def load_sets(path: str | Path | None = None, text: str | None = None) -> dict[str, dict[str, Any]]:
    """All sets in ``text`` (the contents of ``path``; read here if not given; default: the sets the
    algorithms declare, :func:`builtin_sets`)."""
    import yaml

    if text is None and path is not None:
        text = read_sets_file(path)
    if text is None:
        return builtin_sets()
    where = str(path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        raise ConfigError(f"hyperparameter sets file {where!r} is not valid YAML") from None
    if not isinstance(data, Mapping) or not all(isinstance(v, Mapping) for v in data.values()):
        raise ConfigError(f"hyperparameter sets file {where!r} must map set names to mappings")
    return {str(k): dict(v) for k, v in data.items()}


def get_set(name: str, path: str | Path | None = None, text: str | None = None) -> dict[str, Any]:
    sets = load_sets(path, text)
    if name not in sets:
        raise ConfigError(f"unknown --param-name {name!r} (known: {', '.join(sorted(sets))})")
    return sets[name]


def default_set_name(algo: str, env_id: str, is_procgen: bool) -> str:
    """The set ``--param-name auto`` picks, as the algorithm declares: its ProcGen set for a ProcGen
    game (PPO: ``baseline``), else its set for the env (the RL Zoo's tuned ``zoo-<algo>-<env>``; PPO:
    ``cartpole`` for CartPole-v1), else its default (SB3's defaults: ``sb3-<algo>``; PPO: ``baseline3``)."""
    spec = algo_spec(algo)
    name = spec.procgen_set if is_procgen and spec.procgen_set else spec.auto_sets.get(env_id, spec.default_set)
    if name is None:
        raise ConfigError(f"--param-name auto: --algo {algo} has no set for {env_id}; name one with --param-name")
    return name


def split_set(values: Mapping[str, Any], rollout_size: int, algo: str = "ppo") -> tuple[dict[str, Any], dict[str, Any]]:
    """(hyperparameters of ``algo``, run settings) of a set; ``n_minibatches`` (PPO) becomes ``batch_size``.

    A key that does not belong to the algorithm, or a set written for another algorithm, is a
    one-line :class:`ConfigError`."""
    divides = algo_spec(algo).rollout_batches
    set_algo = values.get("algo", "ppo")
    if set_algo != algo:
        raise ConfigError(f"hyperparameter set is for --algo {set_algo}, not --algo {algo}")
    hp: dict[str, Any] = {}
    run: dict[str, Any] = {}
    for key, value in values.items():
        if key in RUN_KEYS:
            if key in ("normalize_obs", "normalize_reward") and not isinstance(value, bool):
                raise ConfigError(f"hyperparameter set: {key} must be true or false, got {value!r}")
            run[key] = value
        elif key == "n_minibatches" and divides:
            if int(value) <= 0 or rollout_size % int(value):
                raise ConfigError(f"n_minibatches {value} does not divide the rollout size {rollout_size}")
            hp["batch_size"] = rollout_size // int(value)
        else:
            try:
                hp[key] = coerce_value(algo, key, value)
            except ConfigError as exc:
                raise ConfigError(f"hyperparameter set: {exc}") from None
    if divides and "batch_size" in hp and rollout_size % hp["batch_size"]:
        raise ConfigError(f"batch_size {hp['batch_size']} does not divide the rollout size {rollout_size}")
    return hp, run
