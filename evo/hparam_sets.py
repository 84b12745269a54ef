"""Named hyperparameter sets (``--param-name``) for the baseline runner and replay."""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from evo.errors import ConfigError
from evo.space import SEARCHABLE

RUN_KEYS = ("n_envs", "n_steps", "policy", "eval_deterministic")
"""Keys of a set that configure the run rather than PPO's update."""


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


def split_set(values: Mapping[str, Any], rollout_size: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """(PPO hyperparameters, run settings) of a set; ``n_minibatches`` becomes ``batch_size``."""
    hp: dict[str, Any] = {}
    run: dict[str, Any] = {}
    for key, value in values.items():
        if key in RUN_KEYS:
            run[key] = value
        elif key == "n_minibatches":
            if int(value) <= 0 or rollout_size % int(value):
                raise ConfigError(f"n_minibatches {value} does not divide the rollout size {rollout_size}")
            hp["batch_size"] = rollout_size // int(value)
        elif key in SEARCHABLE:
            try:
                hp[key] = int(value) if key in ("n_epochs", "batch_size") else float(value)
            except (TypeError, ValueError):
                raise ConfigError(f"hyperparameter set: {key} must be a number, got {value!r}") from None
        else:
            raise ConfigError(f"hyperparameter set: unknown key {key!r}")
    if "batch_size" in hp and rollout_size % hp["batch_size"]:
        raise ConfigError(f"batch_size {hp['batch_size']} does not divide the rollout size {rollout_size}")
    return hp, run
