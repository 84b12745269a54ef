"""Hand a trained agent to the RL Zoo: ``python -m evo.export RUN_DIR --zoo DIR``.

Writes the run's best model (or ``--member K``, ``--generation G``: the same choice as ``evo.enjoy``)
in the RL Zoo's folder layout, which ``python -m rl_zoo3.enjoy --algo ALGO --env ENV -f DIR`` plays
(rl-baselines3-zoo, ``rl_zoo3/utils.py``: ``get_model_path``, ``get_saved_hyperparams``, ``create_test_env``)::

    DIR/<algo>/<ENV>_<N>/<ENV>.zip                 the SB3 model
    DIR/<algo>/<ENV>_<N>/<ENV>/config.yml          the member's hyperparameters as a Zoo entry
    DIR/<algo>/<ENV>_<N>/<ENV>/args.yml            env id, algorithm, seed, env kwargs
    DIR/<algo>/<ENV>_<N>/<ENV>/vecnormalize.pkl    VecNormalize statistics (runs with --normalize-*)

``<ENV>`` is the env id without a ``module:`` prefix; ``<N>`` the next free experiment id (the Zoo plays
the latest by default) or ``--exp-id``. ``config.yml`` is an entry of a Zoo hyperparameter file: it
trains with the Zoo and reads back into evo (``--hyperparams``). ProcGen runs (not a Zoo env) and the
IMPALA policy (not an SB3 one) are refused with one line.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from evo.errors import ConfigError
from evo.zoo import POLICY_KWARGS

PROG = "python -m evo.export"
DESCRIPTION = "Write a trained agent of an evo run in the RL Zoo's folder layout (rl_zoo3.enjoy plays it)."


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=DESCRIPTION)
    p.add_argument("run_dir", metavar="RUN_DIR", help="the run (<log-dir>/<exp-name>)")
    p.add_argument("--zoo", metavar="DIR", required=True, help="the Zoo's log folder to write into (rl_zoo3 -f DIR)")
    p.add_argument("--member", type=int, default=None,
                   help="member K of the newest complete checkpoint (baseline runs: seed K's final model) instead "
                        "of best_model.zip")
    p.add_argument("--generation", type=int, default=None, help="with --member: the checkpoint after generation G")
    p.add_argument("--exp-id", type=int, default=None,
                   help="the Zoo's experiment id N (folder <ENV>_N; default: the next free one)")

    def error(message: str) -> Any:
        raise ConfigError(message)

    p.error = error  # type: ignore[method-assign]
    return p


# -- what the member is -------------------------------------------------------------------------------
def member_hparams(run_dir: Path, meta: Mapping[str, Any], model_path: Path, member: int | None) -> dict[str, Any]:
    """The hyperparameters the chosen model trained with: a checkpoint's own record, else the member's
    last row of ``members.csv`` (the best model: ``summary.json``'s best member)."""
    from evo.core.algos import coerce_value

    algo = str(meta["config"].get("algo") or "ppo")
    record = model_path.with_suffix(".json")
    if model_path.parent.name.startswith("gen_") and record.is_file():
        return dict(json.loads(record.read_text())["hparams"])
    if member is None:
        try:
            member = int(json.loads((run_dir / "summary.json").read_text())["best_member"])
        except (OSError, ValueError, KeyError, TypeError):
            raise ConfigError(f"{run_dir}/summary.json does not name the best member") from None
    from evo.records import read_csv

    rows = [r for r in read_csv(run_dir / "members.csv") if r.get("member") == str(member)] \
        if (run_dir / "members.csv").is_file() else []
    if not rows:
        raise ConfigError(f"{run_dir}/members.csv has no row of member {member}")
    last = max(rows, key=lambda r: int(r["generation"]))
    return {k[3:]: coerce_value(algo, k[3:], v) for k, v in last.items() if k.startswith("hp_") and v != ""}


def zoo_hyperparams(cfg: Mapping[str, Any], hparams: Mapping[str, Any], policy: str,
                    n_timesteps: int) -> dict[str, Any]:
    """A member as an entry of a Zoo hyperparameter file (the Zoo's ``config.yml``)."""
    from evo.core.algos import algo_spec
    from evo.core.cost import REPLAY_RATIO, replay_schedule

    algo = str(cfg.get("algo") or "ppo")
    hp = dict(hparams)
    out: dict[str, Any] = {"policy": policy, "n_envs": int(cfg["n_envs"]), "n_timesteps": int(n_timesteps)}
    if algo_spec(algo).on_policy:
        out["n_steps"] = int(cfg["n_steps"])
    ratio = hp.pop(REPLAY_RATIO, None)
    if isinstance(ratio, (int, float)) and not isinstance(ratio, bool):  # the pair SB3 ran with (evo.core.cost)
        hp["train_freq"], hp["gradient_steps"] = replay_schedule(float(ratio), int(hp["train_freq"]), out["n_envs"])
    obs, reward = bool(cfg.get("normalize_obs")), bool(cfg.get("normalize_reward"))
    out["normalize"] = obs if obs == reward else repr({"norm_obs": obs, "norm_reward": reward})
    kwargs = {k: hp.pop(k) for k in POLICY_KWARGS if k in hp}
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    if kwargs:
        out["policy_kwargs"] = "dict(" + ", ".join(f"{k}={v!r}" for k, v in kwargs.items()) + ")"
    noise = hp.pop("action_noise_std", None)
    if noise:
        out["noise_type"], out["noise_std"] = "normal", float(noise)
    if cfg.get("env_kwargs"):
        out["env_kwargs"] = dict(cfg["env_kwargs"])
    if cfg.get("env_wrapper"):
        out["env_wrapper"] = [_zoo_wrapper(w) for w in cfg["env_wrapper"]]
    return {**out, **hp}


def _zoo_wrapper(item: Any) -> Any:
    """evo's ``{pkg.mod:Class: kwargs}`` as the Zoo's ``pkg.mod.Class`` (with its kwargs, if any)."""
    path, kwargs = next(iter(item.items())) if isinstance(item, Mapping) else (item, {})
    path = str(path).replace(":", ".")
    return {path: dict(kwargs)} if kwargs else path


def policy_alias(model: Any) -> str:
    """The SB3 name (``MlpPolicy``...) of a loaded model's policy class."""
    names = {cls: name for name, cls in getattr(model, "policy_aliases", {}).items()}
    name = names.get(type(model.policy))
    if name is None:
        raise ConfigError(f"the model's policy {type(model.policy).__name__} is not one of SB3's named policies")
    return name


# -- writing ------------------------------------------------------------------------------------------
def zoo_env_name(env_id: str) -> str:
    """The Zoo's folder name of an env id (``huggingface_sb3.EnvironmentName``: no ``module:``, ``/`` -> ``-``)."""
    return env_id.rpartition(":")[2].replace("/", "-")


def next_exp_id(algo_dir: Path, env_name: str) -> int:
    """One more than the highest ``<env_name>_<N>`` in ``algo_dir`` (the Zoo's ``get_latest_run_id``)."""
    ids = [int(p.name[len(env_name) + 1:]) for p in algo_dir.glob(f"{env_name}_*")
           if p.name[len(env_name) + 1:].isdigit()] if algo_dir.is_dir() else []
    return max(ids, default=0) + 1


def export(args: argparse.Namespace) -> int:
    import yaml

    from evo.enjoy import algo_class, choose_model, read_run, vecnormalize_file
    from evo.envs import procgen_game

    if args.member is not None and args.member < 0:
        raise ConfigError(f"--member must be >= 0, got {args.member}")
    if args.generation is not None and args.member is None:
        raise ConfigError("--generation needs --member K (which member of that checkpoint to export)")
    if args.exp_id is not None and args.exp_id < 1:
        raise ConfigError(f"--exp-id must be >= 1, got {args.exp_id}")
    run_dir = Path(args.run_dir)
    meta = read_run(run_dir)
    cfg = meta["config"]
    env_id, algo = str(cfg["env_id"]), str(cfg.get("algo") or "ppo")
    if procgen_game(env_id) is not None:
        raise ConfigError(f"{env_id} is a ProcGen game, which the RL Zoo cannot build: nothing to export to")
    model_path, what = choose_model(run_dir, meta, args.member, args.generation)
    stats = vecnormalize_file(model_path)
    if (cfg.get("normalize_obs") or cfg.get("normalize_reward")) and not stats.is_file():
        raise ConfigError(f"{model_path} has no VecNormalize statistics beside it ({stats.name})")
    hparams = member_hparams(run_dir, meta, model_path, args.member)
    custom = {"learning_rate": 0.0, "lr_schedule": lambda _: 0.0, "clip_range": lambda _: 0.0}
    model = algo_class(cfg).load(str(model_path), device="cpu", custom_objects=custom)
    config = zoo_hyperparams(cfg, hparams, policy_alias(model), int(model.num_timesteps))

    name = zoo_env_name(env_id)
    algo_dir = Path(args.zoo) / algo
    exp_id = args.exp_id if args.exp_id is not None else next_exp_id(algo_dir, name)
    log_path = algo_dir / f"{name}_{exp_id}"
    if log_path.exists():
        raise ConfigError(f"{log_path} exists: pass another --exp-id, or leave it out for the next free one")
    params = log_path / name
    params.mkdir(parents=True)
    shutil.copyfile(model_path, log_path / f"{name}.zip")
    (params / "config.yml").write_text(yaml.safe_dump(config, sort_keys=True))
    args_yml = {"algo": algo, "env": env_id, "env_kwargs": dict(cfg.get("env_kwargs") or {}) or None,
                "seed": int(cfg.get("seed", 0)), "n_timesteps": int(model.num_timesteps),
                "evo_run": str(run_dir), "evo_model": f"{what} ({model_path.name})"}
    (params / "args.yml").write_text(yaml.safe_dump(args_yml, sort_keys=True))
    if stats.is_file():
        shutil.copyfile(stats, params / "vecnormalize.pkl")
    module = env_id.rpartition(":")[0]
    packages = f" --gym-packages {module}" if module else ""
    print(f"{what} of {run_dir} -> {log_path}", flush=True)
    print(f"play it: python -m rl_zoo3.enjoy --algo {algo} --env {name} -f {args.zoo} --exp-id {exp_id}{packages}",
          flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from evo.enjoy import guard

    return guard(lambda: export(build_parser().parse_args(argv)), PROG)


if __name__ == "__main__":
    sys.exit(main())
