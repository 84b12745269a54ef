"""The RL Zoo's hyperparameter files (rl-baselines3-zoo ``hyperparams/<algo>.yml``) read as evo's.

A Zoo file maps env ids to entries (``CartPole-v1: {n_envs: 8, n_timesteps: 1e5, policy: MlpPolicy,
learning_rate: lin_0.001, ...}``); :func:`is_zoo` tells one from evo's own files (a search space, a
``--param-file`` of named sets) by those entries: every value is a mapping and some entry has a key only
the Zoo uses (:data:`ZOO_MARKERS`). :func:`load_zoo` picks the entry of ``--env-id`` and turns it into an
evo named set (:class:`ZooEntry`), the form the baseline takes; :func:`zoo_space` turns it into a
``--hyperparams`` mapping for a PBT population; :func:`apply_zoo_run` sets a PBT config's run settings.

How each Zoo key is read (the rest are the algorithm's own hyperparameters, checked against ``--algo``):

* ``n_envs`` (default 1, as in the Zoo), ``n_steps`` (on-policy; default SB3's), ``policy``: run settings;
  a flag given on the command line wins.
* ``n_timesteps``: the baseline's ``--num-timesteps`` unless given; ignored by PBT, whose budget is
  ``--generations x --steps-per-generation``.
* ``normalize``: ``true`` (observations and rewards), ``false``, or ``{norm_obs: .., norm_reward: ..}``
  (also as the Zoo's Python string) -> ``--normalize-obs`` / ``--normalize-reward``.
* ``policy_kwargs`` (a mapping or the Zoo's ``"dict(net_arch=[64, 64])"`` string, read with :mod:`ast`,
  never evaluated): ``net_arch`` (a list, or ``dict(pi=L, vf=L)`` / ``dict(pi=L, qf=L)`` with equal
  lists), ``ortho_init``, ``log_std_init``, where the algorithm takes them.
* ``lin_<x>`` schedules (``learning_rate``, ``clip_range``): the constant ``x``. evo's hyperparameters are
  values a member holds for a generation; PBT changes them between generations instead.
* ``env_wrapper``, ``env_kwargs``: the env's (same forms as evo's).
* ``noise_type: normal`` with ``noise_std``: ``action_noise_std``; ``train_freq: [n, step]``: ``n``.
* Anything evo cannot do as the Zoo does (``frame_stack``, ``activation_fn``, Ornstein-Uhlenbeck noise,
  ``train_freq`` in episodes, callbacks...) is a one-line :class:`ConfigError` naming it.

Pure: no SB3, no MPI.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from evo.core.algos import algo_spec
from evo.core.params import Param, Space
from evo.errors import ConfigError

ZOO_MARKERS = frozenset({"n_timesteps", "normalize", "frame_stack", "policy_kwargs", "noise_type", "noise_std"})
"""Keys of an entry that only the Zoo's files use: one of them makes a file a Zoo file."""
SB3_N_STEPS = {"ppo": 2048, "a2c": 5}
"""SB3's default rollout length per env (``PPO(n_steps=2048)``, ``A2C(n_steps=5)``): what the Zoo trains
with when an entry does not say."""
POLICY_KWARGS = ("net_arch", "ortho_init", "log_std_init")
"""The ``policy_kwargs`` evo builds policies with (where the algorithm lists them as settings)."""
SCHEDULED = ("learning_rate", "clip_range")
UNSUPPORTED = {
    "frame_stack": "evo stacks no frames: add a frame-stacking wrapper to env_wrapper instead",
    "vec_env_wrapper": "evo wraps no VecEnv",
    "callback": "evo runs no SB3 callbacks of a file",
    "replay_buffer_class": "evo uses SB3's default replay buffer",
    "replay_buffer_kwargs": "evo uses SB3's default replay buffer",
    "monitor_kwargs": "evo's Monitor takes no settings",
    "optimize_memory_usage": "evo keeps SB3's default replay buffer",
    "use_sde_at_warmup": "evo does not set it",
    "clip_range_vf": "evo does not clip the value function",
}
"""Zoo keys evo has no equivalent for, with why."""


@dataclass(frozen=True)
class ZooEntry:
    """One env's entry of a Zoo file, as an evo named set."""

    env_id: str
    """The entry's key."""
    values: dict[str, Any]
    """An evo named set: ``algo``, run keys (``n_envs``, ``n_steps``, ``policy``, ``normalize_obs``,
    ``normalize_reward``), env settings (``env_kwargs``, ``env_wrapper``) and hyperparameters."""
    n_timesteps: int | None
    """The entry's training budget (env steps), if it has one."""


def is_zoo(data: Any) -> bool:
    """Is ``data`` (a parsed YAML file) in the RL Zoo's format: env ids mapped to entries?"""
    return (isinstance(data, Mapping) and bool(data) and all(isinstance(v, Mapping) for v in data.values())
            and any(ZOO_MARKERS & set(v) for v in data.values()))


def read_yaml(text: str | None) -> Any:
    """``text`` parsed (``None`` for no text or YAML that does not parse: its reader reports that)."""
    import yaml

    if text is None:
        return None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return None


def load_zoo(text: str | None, env_id: str, algo: str, where: str = "--hyperparams") -> ZooEntry | None:
    """The entry for ``env_id`` of the Zoo file ``text`` as an evo set for ``algo``; ``None`` if ``text``
    is not a Zoo file. An env id without an entry is a :class:`ConfigError` naming those there are."""
    data = read_yaml(text)
    return zoo_entry(data, env_id, algo, where) if is_zoo(data) else None


def zoo_entry(data: Mapping[str, Any], env_id: str, algo: str, where: str = "--hyperparams") -> ZooEntry:
    """The entry of ``env_id`` in the parsed Zoo file ``data`` (``module:Name-v0``: also ``Name-v0``)."""
    keys = [env_id, env_id.rpartition(":")[2]]
    key = next((k for k in keys if k in data), None)
    if key is None:
        ids = ", ".join(map(str, data))
        raise ConfigError(f"{where}: the RL Zoo file has no entry for --env-id {env_id} (it has: {ids})")
    try:
        values, n_timesteps = convert_entry(data[key], algo)
    except ConfigError as exc:
        raise ConfigError(f"{where}: RL Zoo entry {key}: {exc}") from None
    return ZooEntry(str(key), values, n_timesteps)


def convert_entry(entry: Mapping[str, Any], algo: str) -> tuple[dict[str, Any], int | None]:
    """``(evo set, n_timesteps)`` of one Zoo entry for ``algo``."""
    spec = algo_spec(algo)
    out: dict[str, Any] = {"algo": algo, "n_envs": _whole("n_envs", entry.get("n_envs", 1))}
    if spec.on_policy and algo in SB3_N_STEPS:
        out["n_steps"] = SB3_N_STEPS[algo]
    out["normalize_obs"], out["normalize_reward"] = normalize_flags(entry.get("normalize", False))
    n_timesteps = _whole("n_timesteps", entry["n_timesteps"]) if "n_timesteps" in entry else None
    noise = (entry.get("noise_type"), entry.get("noise_std"))
    for key, value in entry.items():
        key = str(key)
        if key in ("n_envs", "normalize", "n_timesteps", "noise_type", "noise_std"):
            continue
        if key in UNSUPPORTED:
            raise ConfigError(f"{key} is not supported: {UNSUPPORTED[key]}")
        if key == "n_steps":
            if not spec.on_policy:
                raise ConfigError(f"n_steps is not a setting of --algo {algo}")
            out["n_steps"] = _whole("n_steps", value)
        elif key == "policy":
            out["policy"] = _policy(value)
        elif key == "policy_kwargs":
            out.update(policy_kwargs(value, algo))
        elif key in SCHEDULED:
            out[key] = schedule_start(key, value)
        elif key == "train_freq":
            out[key] = _train_freq(value)
        else:  # env_kwargs, env_wrapper and the algorithm's own names (checked by the set or space reader)
            out[key] = value
    if noise != (None, None):
        out["action_noise_std"] = _action_noise(*noise, algo)
    return out, n_timesteps


def _whole(key: str, value: Any) -> int:
    try:
        number = float(value)  # the Zoo writes !!float 1e5
    except (TypeError, ValueError):
        raise ConfigError(f"{key} must be a whole number, got {value!r}") from None
    if isinstance(value, bool) or not number.is_integer() or number <= 0:
        raise ConfigError(f"{key} must be a whole number > 0, got {value!r}")
    return int(number)


def _policy(value: Any) -> str:
    if not isinstance(value, str) or "." in value:
        raise ConfigError(f"policy {value!r}: evo builds MlpPolicy, CnnPolicy or MultiInputPolicy, not a custom class")
    return value


def _train_freq(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        if len(value) != 2 or str(value[1]) != "step":
            raise ConfigError(f"train_freq {list(value)}: evo trains every n env steps ([n, step] or n), "
                              f"not per episode")
        return value[0]
    return value


def _action_noise(kind: Any, std: Any, algo: str) -> Any:
    if "action_noise_std" not in algo_spec(algo).domains:
        raise ConfigError(f"noise_type/noise_std: --algo {algo} takes no action noise")
    if kind != "normal" or std is None:
        raise ConfigError(f"noise_type {kind!r} with noise_std {std!r}: evo's action noise is Gaussian "
                          f"(noise_type: normal, with noise_std)")
    return std


def schedule_start(key: str, value: Any) -> Any:
    """A Zoo schedule ``lin_<x>`` as its start value ``x`` (a number stays as it is)."""
    if not isinstance(value, str):
        return value
    kind, _, start = value.partition("_")
    try:
        if kind == "lin" and start:
            return float(start)
    except ValueError:
        pass
    raise ConfigError(f"{key} {value!r}: a number or a linear schedule lin_<start> expected")


# -- the Zoo's Python-literal strings ---------------------------------------------------------------
@dataclass(frozen=True)
class Named:
    """A name in a Zoo literal that evo cannot evaluate (``nn.ReLU``, ``RMSpropTFLike``)."""

    text: str

    def __repr__(self) -> str:
        return self.text


def literal(text: str, what: str) -> Any:
    """A Zoo Python-literal string (``"dict(net_arch=[64, 64])"``, ``"{'norm_obs': True}"``) read with
    :mod:`ast`, never evaluated: numbers, strings, booleans, None, lists, tuples, ``{...}`` and
    ``dict(...)``; a dotted name becomes :class:`Named`. Anything else is a :class:`ConfigError`."""
    try:
        tree = ast.parse(text.strip(), mode="eval")
        return _value(tree.body)
    except (SyntaxError, ValueError) as exc:
        raise ConfigError(f"{what} {text!r} cannot be read ({exc})") from None


def _value(node: ast.AST) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        inner = _value(node.operand)
        if isinstance(inner, (int, float)) and not isinstance(inner, bool):
            return -inner if isinstance(node.op, ast.USub) else inner
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_value(e) for e in node.elts]
    if isinstance(node, ast.Dict) and all(k is not None for k in node.keys):
        return {_value(k): _value(v) for k, v in zip(node.keys, node.values, strict=True) if k is not None}
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict" and not node.args:
        return {kw.arg: _value(kw.value) for kw in node.keywords if kw.arg is not None}
    if isinstance(node, (ast.Name, ast.Attribute)):
        return Named(ast.unparse(node))
    raise ValueError(f"unsupported expression {ast.unparse(node)!r}")


def _mapping(value: Any, what: str) -> dict[str, Any]:
    data = literal(value, what) if isinstance(value, str) else value
    if not isinstance(data, Mapping):
        raise ConfigError(f"{what} must be a mapping, got {value!r}")
    return {str(k): v for k, v in data.items()}


def normalize_flags(value: Any) -> tuple[bool, bool]:
    """``(normalize_obs, normalize_reward)`` of the Zoo's ``normalize`` (VecNormalize's defaults: both on)."""
    if isinstance(value, bool):
        return value, value
    kwargs = _mapping(value, "normalize")
    extra = sorted(set(kwargs) - {"norm_obs", "norm_reward"})
    if extra:
        raise ConfigError(f"normalize: evo takes norm_obs and norm_reward only, not {', '.join(extra)}")
    flags = (kwargs.get("norm_obs", True), kwargs.get("norm_reward", True))
    if not all(isinstance(f, bool) for f in flags):
        raise ConfigError(f"normalize: norm_obs and norm_reward must be True or False, got {value!r}")
    return flags


def policy_kwargs(value: Any, algo: str) -> dict[str, Any]:
    """evo's settings from the Zoo's ``policy_kwargs`` (see the module's docstring)."""
    kwargs = _mapping(value, "policy_kwargs")
    takes = [k for k in POLICY_KWARGS if k in algo_spec(algo).settings]
    other = [f"{k}={v!r}" for k, v in kwargs.items() if k not in takes]
    if other:
        raise ConfigError(f"policy_kwargs {', '.join(other)}: evo builds --algo {algo} policies with "
                          f"{', '.join(takes) or 'no policy_kwargs'} only")
    if "net_arch" in kwargs:
        kwargs["net_arch"] = _net_arch(kwargs["net_arch"])
    return kwargs


def _net_arch(value: Any) -> Any:
    if isinstance(value, Mapping):
        layers = list(value.values())
        if set(value) in ({"pi", "vf"}, {"pi", "qf"}) and all(v == layers[0] for v in layers):
            return layers[0]  # SB3 gives the actor and the critic a net_arch list each
        raise ConfigError(f"policy_kwargs net_arch {dict(value)}: evo gives actor and critic the same layers "
                          f"(a list, or pi and vf/qf equal)")
    return value


# -- as evo's inputs ---------------------------------------------------------------------------------
def apply_zoo_file(cfg: Any, text: str | None, explicit: set[str]) -> None:
    """(PBT) If ``text`` (``--hyperparams``) is a Zoo file, give ``cfg`` its entry's run settings (except
    flags on the command line) and env settings; the entry's hyperparameters are :func:`zoo_space`'s."""
    entry = load_zoo(text, cfg.env_id, cfg.algo, f"--hyperparams {cfg.hyperparams}")
    if entry is not None:
        apply_zoo_run(cfg, entry, explicit)


def apply_zoo_run(cfg: Any, entry: ZooEntry, explicit: set[str]) -> None:
    """Give a config the entry's run settings (except flags in ``explicit``) and env settings."""
    from evo.envs import split_env_settings
    from evo.hparam_sets import RUN_KEYS

    for key in RUN_KEYS:
        if key in entry.values and key != "algo" and key not in explicit:
            setattr(cfg, key, entry.values[key])
    cfg.apply_env_settings(split_env_settings(entry.values)[0])


def zoo_space(entry: ZooEntry, base: Space, algo: str) -> dict[str, Any]:
    """A ``--hyperparams`` mapping that starts a population at the entry.

    The parameters ``base`` searches (the algorithm's default space) stay searched: each starts in one
    explore step either side of the entry's value (SB3's default where the entry has none), as
    ``base``'s perturbation factors move it (a categorical: the neighbouring choices), within bounds
    widened to hold the value. A value the scale cannot hold (0 on a log scale, an extra word such as
    ``-1`` or ``"auto"``) fixes the parameter at it. Every other entry of the Zoo's is fixed."""
    from evo.core.cost import REPLAY_RATIO
    from evo.hparam_sets import RUN_KEYS

    spec = algo_spec(algo)
    hp = {k: v for k, v in entry.values.items() if k not in RUN_KEYS}  # env settings: space_from_mapping skips
    if REPLAY_RATIO in base.params and REPLAY_RATIO not in hp:
        hp = _as_replay_ratio(hp, spec, int(entry.values["n_envs"]), REPLAY_RATIO)
    out: dict[str, Any] = {k: v for k, v in hp.items() if k not in base.params}
    factors = base.explore_settings.perturb_factors
    for name, p in base.params.items():
        value = hp.get(name, spec.defaults.get(name))
        if value is None:
            continue
        value = spec.domains[name].coerce(name, value) if name in spec.domains else value
        out[name] = _centred(p, value, factors, spec.domains.get(name))
    return out


def _as_replay_ratio(hp: dict[str, Any], spec: Any, n_envs: int, name: str) -> dict[str, Any]:
    """The Zoo's ``train_freq`` / ``gradient_steps`` as the replay ratio a default space searches (gradient
    updates per env step, :mod:`evo.core.cost`), ``train_freq`` staying its base period; ``gradient_steps``
    -1 (as many as env steps collected) is a ratio of 1."""
    hp = dict(hp)
    freq = int(_train_freq(hp.get("train_freq", spec.defaults.get("train_freq", 1))))
    steps = int(hp.pop("gradient_steps", spec.defaults.get("gradient_steps", 1)))
    hp[name] = 1.0 if steps == -1 else steps / (freq * n_envs)
    return hp


def _centred(p: Param, value: Any, factors: tuple[float, ...], domain: Any) -> Any:
    """The ``--hyperparams`` entry that starts ``p`` around ``value`` (or fixes it there)."""
    lo_f, hi_f = min(factors), max(factors)
    if p.kind == "categorical":
        choices = tuple(p.choices or ())
        if value not in choices:
            choices = tuple(sorted((*choices, value)))
        q = replace(p, choices=choices)
        return {"choices": list(choices), "init": sorted({q.perturb(value, lo_f), value, q.perturb(value, hi_f)})}
    number = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    fits = number is not None and (domain is None or domain.in_interval(number)) and \
        not (p.scale == "log" and number <= 0) and not (p.scale == "one_minus" and number >= 1)
    if not fits or number is None or p.low is None or p.high is None:
        return value
    q = replace(p, low=min(p.low, number), high=max(p.high, number), init=None)
    ends = sorted(float(f"{q.perturb(number, f):.12g}") for f in (lo_f, hi_f))  # 0.16, not 0.16000000000000003
    return {"low": q.low, "high": q.high, "init": ends}


def as_space_mapping(data: Any, base: Space, algo: str, env_id: str | None, where: str) -> Any:
    """A parsed ``--hyperparams`` file as evo's search-space mapping: a Zoo file becomes :func:`zoo_space`
    of the entry for ``env_id``; evo's own form stays as it is."""
    if not is_zoo(data):
        return data
    if env_id is None:
        raise ConfigError(f"--hyperparams {where}: an RL Zoo file needs --env-id to pick its entry")
    return zoo_space(zoo_entry(data, env_id, algo, f"--hyperparams {where}"), base, algo)


def baseline_zoo_set(cfg: Any, explicit: set[str], text: str | None) -> dict[str, Any] | None:
    """(evo.baseline) The set of a Zoo file given as ``--hyperparams`` (or ``--param-file``): its entry for
    ``--env-id``, with ``n_timesteps`` as ``--num-timesteps`` unless given; ``None`` for evo's own sets."""
    where = f"--hyperparams {cfg.hyperparams}" if cfg.hyperparams else f"--param-file {cfg.param_file}"
    if cfg.hyperparams and cfg.param_file:
        raise ConfigError("give --hyperparams (an RL Zoo file) or --param-file (evo's named sets), not both")
    entry = load_zoo(text, cfg.env_id, cfg.algo, where)
    if entry is None:
        if cfg.hyperparams:
            raise ConfigError(f"{where} is not an RL Zoo hyperparameter file (env ids mapped to entries with "
                              f"n_timesteps, policy...); evo's named sets go to --param-file")
        return None
    if "param_name" in explicit:
        raise ConfigError(f"{where} is an RL Zoo file: --env-id picks its entry, not --param-name")
    cfg.param_name = "zoo"
    if entry.n_timesteps is not None and "num_timesteps" not in explicit:
        cfg.num_timesteps = entry.n_timesteps
    return entry.values
