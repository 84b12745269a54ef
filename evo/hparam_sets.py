"""Named hyperparameter sets (``--param-name``) for the baseline runner and replay."""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from evo.core.space import check_algo, coerce_value
from evo.errors import ConfigError

RUN_KEYS = ("n_envs", "n_steps", "policy", "eval_deterministic", "algo", "normalize_obs", "normalize_reward")
"""Keys of a set that configure the run (config fields) rather than the algorithm's update. A set
without ``algo`` is a PPO set."""

ZOO_SETS = {
    ("ppo", "CartPole-v1"): "cartpole", ("ppo", "Pendulum-v1"): "zoo-ppo-pendulum",
    ("a2c", "CartPole-v1"): "zoo-a2c-cartpole", ("a2c", "Pendulum-v1"): "zoo-a2c-pendulum",
    ("dqn", "CartPole-v1"): "zoo-dqn-cartpole", ("sac", "Pendulum-v1"): "zoo-sac-pendulum",
    ("td3", "Pendulum-v1"): "zoo-td3-pendulum",
}
"""The shipped RL Zoo set for an (algorithm, env) pair."""


def read_sets_file(path: str | Path | None) -> str | None:
    """The text of a ``--param-file`` (``None``: the file shipped with evo). Read on one rank and
    broadcast, so a file only some ranks can see fails the whole job the same way."""
    if path is None:
        return None
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read hyperparameter sets {str(path)!r}: {exc.strerror}") from None


def load_sets(path: str | Path | None = None, text: str | None = None) -> dict[str, dict[str, Any]]:
    """All sets in ``text`` (the contents of ``path``; read here if not given; default: the file
    shipped with evo)."""
    import yaml

    if text is None and path is not None:
        text = read_sets_file(path)
    if text is None:
        text = resources.files("evo").joinpath("data/hyperparams.yaml").read_text()
        where = "evo/data/hyperparams.yaml"
    else:
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
    """The set ``--param-name auto`` picks: PPO keeps its choice (``baseline`` for ProcGen, ``cartpole``
    for CartPole-v1, else ``baseline3``); the other algorithms take the RL Zoo's tuned set for the env
    if evo ships one (``zoo-<algo>-<env>``), else SB3's defaults (``sb3-<algo>``)."""
    check_algo(algo)
    if algo == "ppo":
        return "baseline" if is_procgen else "cartpole" if env_id == "CartPole-v1" else "baseline3"
    return ZOO_SETS.get((algo, env_id), f"sb3-{algo}")


def split_set(values: Mapping[str, Any], rollout_size: int, algo: str = "ppo") -> tuple[dict[str, Any], dict[str, Any]]:
    """(hyperparameters of ``algo``, run settings) of a set; ``n_minibatches`` (PPO) becomes ``batch_size``.

    A key that does not belong to the algorithm, or a set written for another algorithm, is a
    one-line :class:`ConfigError`."""
    check_algo(algo)
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
        elif key == "n_minibatches" and algo == "ppo":
            if int(value) <= 0 or rollout_size % int(value):
                raise ConfigError(f"n_minibatches {value} does not divide the rollout size {rollout_size}")
            hp["batch_size"] = rollout_size // int(value)
        else:
            try:
                hp[key] = coerce_value(algo, key, value)
            except ConfigError as exc:
                raise ConfigError(f"hyperparameter set: {exc}") from None
    if algo == "ppo" and "batch_size" in hp and rollout_size % hp["batch_size"]:
        raise ConfigError(f"batch_size {hp['batch_size']} does not divide the rollout size {rollout_size}")
    return hp, run
