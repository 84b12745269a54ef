"""The learner interface: one population member, whatever stable-baselines3 algorithm drives it.

Knows nothing of MPI or selection. A learner trains for a number of env steps, evaluates, packs its
whole trainable state into one flat float32 buffer (and back, bit-exactly), applies hyperparameters
so that SB3's next ``train()`` really uses them, and saves/restores itself for checkpoints.

What the algorithm-specific adapters (one module each) provide:

* ``_build(policy, policy_kwargs, hp)``: the SB3 model;
* ``_apply(name, value)`` / ``live_hparams()``: setting and reading back live hyperparameters;
* ``_optimizers()``, ``_extra_weights()``, ``_extra_fields()``, ``_clock()``: what the flat state
  and a checkpoint hold besides the policy's own tensors;
* ``_learn(steps, callback)``: one generation of training.

The flat state (what an exploit moves), in this order:

1. weights: every parameter and floating-point buffer of ``model.policy`` (target networks
   included, as SB3 keeps them inside the policy), plus tensors outside it (SAC's ``log_ent_coef``);
2. optimizer state: per optimizer, each of its per-parameter moment buffers (Adam: ``exp_avg``,
   ``exp_avg_sq``; RMSprop: ``square_avg``...), then its per-parameter step counts;
3. float64 values, each stored as two float32 words (bit patterns, not values): ``n_updates``,
   algorithm counters and schedules (DQN's exploration rate and progress), integer buffers, and the
   VecNormalize statistics (obs_rms and ret_rms mean, var, count) when ``--normalize-obs`` /
   ``--normalize-reward`` is on.

It never holds the replay buffer (large; and off-policy data stays valid for the receiver, which
keeps learning from its own experience with the donor's networks), nor the env's state (the
receiver's episodes continue: VecNormalize's per-env discounted ``returns`` belong to them).
Buffers are always CPU float32 (``pack``/``unpack`` copy to/from the device), so members on
different devices exchange bit-exactly.
"""

from __future__ import annotations

import math
import pickle
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.preprocessing import is_image_space, is_image_space_channels_first
from stable_baselines3.common.utils import FloatSchedule, set_random_seed, update_learning_rate
from stable_baselines3.common.vec_env import VecEnv, VecNormalize, VecTransposeImage

from evo.config import CommonConfig
from evo.core import seeds
from evo.core.space import SETTINGS, HParams, coerce_value, known_names
from evo.envs import env_snapshot, make_vec_env, restore_env_snapshot
from evo.errors import CheckpointError, ConfigError
from evo.learners.device import resolve_device

_MISSING = object()


@dataclass
class TrainStats:
    """What one generation of training did."""

    seconds: float = 0.0
    rollout_seconds: float = 0.0
    episodes: list[tuple[int, float, int]] = field(default_factory=list)
    """(env step, return, length) of every episode that ended during training."""
    losses: dict[str, float] = field(default_factory=dict)
    stopped: bool = False
    """Training was cut short by a stop request (preemption)."""

    @property
    def learn_seconds(self) -> float:
        return max(self.seconds - self.rollout_seconds, 0.0)


class _GenerationCallback(BaseCallback):
    """Times rollouts, collects finished episodes, and stops early on request."""

    def __init__(self, stats: TrainStats, should_stop: Any = None) -> None:
        super().__init__()
        self.stats = stats
        self.should_stop = should_stop
        self._t_rollout = 0.0

    def _on_rollout_start(self) -> None:
        self._t_rollout = time.perf_counter()

    def _on_rollout_end(self) -> None:
        self.stats.rollout_seconds += time.perf_counter() - self._t_rollout

    def _on_step(self) -> bool:
        for info in self.locals.get("infos", ()):
            ep = info.get("episode")
            if ep is not None:
                self.stats.episodes.append((int(self.num_timesteps), float(ep["r"]), int(ep["l"])))
        if self.should_stop is not None and self.should_stop():
            self.stats.stopped = True
            return False
        return True


@dataclass(frozen=True)
class ExtraField:
    """A float64 part of the flat state: ``size`` values read by ``get`` and written by ``set``."""

    name: str
    size: int
    get: Callable[[], np.ndarray]
    set: Callable[[np.ndarray], None]


def _optimizer_slots(opt: torch.optim.Optimizer) -> tuple[str, ...]:
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


def planned_env_steps(cfg: Any, default: int = 1_000_000) -> int:
    """Env steps a member trains in its whole run (generations x steps per generation), the horizon
    of schedules such as DQN's exploration; ``default`` when the config does not say."""
    generations = int(getattr(cfg, "generations", 0) or 0)
    per_generation = int(getattr(cfg, "steps_per_generation", 0) or 0)
    if generations > 0 and per_generation > 0:
        return generations * per_generation
    total = int(getattr(cfg, "num_timesteps", 0) or 0)
    return total if total > 0 else default


class Learner:
    """One population member: an SB3 model plus its training, evaluation and held-out-level envs.

    ``Learner(cfg, hparams, index=i)`` (also spelled ``evo.member.Member(...)``) builds the adapter
    for ``cfg.algo``: the base class dispatches to the registered subclass.
    """

    algo: ClassVar[str] = ""
    DEFAULTS: ClassVar[dict[str, Any]] = {}
    """SB3's constructor defaults of every live hyperparameter of the algorithm."""
    SETTING_DEFAULTS: ClassVar[dict[str, Any]] = {}
    """Settings (fixed at build) with the value SB3 uses when a set does not give them."""

    model: BaseAlgorithm

    def __new__(cls, *args: Any, **kwargs: Any) -> Learner:
        if cls is Learner:  # the factory: Learner(cfg, hparams, index=...) builds cfg.algo's adapter
            from evo.learners import learner_class

            cfg = args[0] if args else kwargs["cfg"]
            cls = learner_class(str(getattr(cfg, "algo", "ppo")))
        return super().__new__(cls)

    def __init__(self, cfg: CommonConfig, hparams: Mapping[str, Any], index: int = 0,
                 local_rank: int | None = None) -> None:
        from evo.policies import init_conv_xavier, resolve_policy

        self.cfg = cfg
        self.index = index
        self.seed = cfg.seed + index
        spec = str(getattr(cfg, "device", "cpu"))
        gpus = torch.cuda.device_count() if spec != "cpu" else 0
        self.device = resolve_device(spec, index if local_rank is None else local_rank, gpus)
        unknown = [k for k in hparams if k not in known_names(self.algo)]
        if unknown:
            raise ConfigError(f"hyperparameter(s) {unknown} do not belong to --algo {self.algo}")
        hp: dict[str, Any] = {**self.DEFAULTS, **{k: coerce_value(self.algo, k, v) for k, v in hparams.items()}}

        env_spec = cfg.env_spec()
        self.raw_env: VecEnv = make_vec_env(env_spec, cfg.n_envs, seed=self.seed)
        norm_obs = bool(getattr(cfg, "normalize_obs", False))
        norm_reward = bool(getattr(cfg, "normalize_reward", False))
        self.vecnorm: VecNormalize | None = None
        if norm_obs or norm_reward:
            inner = self.raw_env
            space = inner.observation_space
            if is_image_space(space) and not is_image_space_channels_first(space):  # type: ignore[arg-type]
                # SB3 would put its transposing wrapper outside VecNormalize, whose raw observations
                # (stored by off-policy algorithms) would then keep the wrong layout
                inner = VecTransposeImage(inner)
            self.vecnorm = VecNormalize(inner, training=True, norm_obs=norm_obs, norm_reward=norm_reward,
                                        gamma=float(hp.get("gamma", 0.99)))
        self.env: VecEnv = self.vecnorm if self.vecnorm is not None else self.raw_env
        n_eval = max(1, min(cfg.n_envs, cfg.eval_episodes))
        self.eval_env: VecEnv = self._frozen(make_vec_env(env_spec, n_eval, seed=seeds.env_seed(cfg.seed, index, 1)))
        self.test_env: VecEnv | None = None
        if cfg.eval_test_levels:
            self.test_env = self._frozen(make_vec_env(env_spec, n_eval, seed=seeds.env_seed(cfg.seed, index, 2),
                                                      test_levels=True))

        image = is_image_space(self.raw_env.observation_space)
        policy, policy_kwargs = resolve_policy(cfg.policy, image, self.algo)
        self._built_settings = {**self.SETTING_DEFAULTS, **{k: v for k, v in hp.items() if k in SETTINGS[self.algo]}}
        for key in ("net_arch", "ortho_init", "log_std_init"):
            if self._built_settings.get(key) is not None:
                policy_kwargs[key] = self._built_settings[key]
        self.model = self._build(policy, policy_kwargs, hp)
        if image and init_conv_xavier(self.model.policy):
            self._sync_targets()
        self.model.set_logger(Logger(folder=None, output_formats=[]))
        self.hparams: HParams = {}
        self.apply_hparams(hp)

        self._weights = self._unique([*self.model.policy.parameters(),
                                      *(b for b in self.model.policy.buffers() if b.is_floating_point()),
                                      *self._extra_weights()])
        self.num_params = sum(t.numel() for t in self._weights)
        self._opt_layout = [(opt, [p for g in opt.param_groups for p in g["params"]], _optimizer_slots(opt))
                            for opt in self._optimizers()]
        self._fields = self._all_fields()
        self._n_extras = sum(f.size for f in self._fields)
        self.failed = False

    # -- adapter hooks ------------------------------------------------------------------------
    def _build(self, policy: Any, policy_kwargs: dict[str, Any], hp: Mapping[str, Any]) -> BaseAlgorithm:
        raise NotImplementedError

    def _apply(self, name: str, value: Any) -> None:
        """Set one live hyperparameter (already type-checked)."""
        if name == "learning_rate":
            m = self.model
            m.learning_rate = float(value)
            m.lr_schedule = FloatSchedule(float(value))
            for opt in self._optimizers():
                update_learning_rate(opt, float(value))
        else:
            raise KeyError(f"unknown hyperparameter {name!r}")

    def live_hparams(self) -> HParams:
        """The hyperparameters as SB3 will use them (read back from the model)."""
        m = self.model
        return {"learning_rate": float(m.lr_schedule(m._current_progress_remaining)),
                **{k: v for k, v in self._built_settings.items() if k in self.hparams}}

    def _optimizers(self) -> list[torch.optim.Optimizer]:
        return [self.model.policy.optimizer]

    def _extra_weights(self) -> list[torch.Tensor]:
        """float32 tensors outside ``model.policy`` that belong to the weights."""
        return []

    def _extra_fields(self) -> list[ExtraField]:
        """Algorithm counters and schedule state (float64) that move with the weights."""
        return []

    def _clock(self) -> dict[str, int]:
        """The member's own counters a checkpoint keeps but an exploit does not move."""
        return {}

    def _set_clock(self, clock: Mapping[str, int]) -> None:
        pass

    def _sync_targets(self) -> None:
        """Copy online networks into their targets (after re-initialising convolutions)."""

    def _learn(self, steps: int, callback: BaseCallback) -> None:
        raise NotImplementedError

    # -- hyperparameters ------------------------------------------------------------------------
    def apply_hparams(self, hparams: Mapping[str, Any]) -> None:
        """Make the live model use ``hparams`` from its next ``train()`` on.

        Settings fixed at build (``net_arch``, ``buffer_size``...) are accepted only with the value
        the model was built with. SB3 builds schedules once and caches some values elsewhere (the
        rollout buffer's gamma, the optimizers' learning rate...): the adapters set every copy.
        """
        for name, raw in hparams.items():
            if name not in known_names(self.algo):
                raise KeyError(f"unknown hyperparameter {name!r} for --algo {self.algo}")
            try:
                value = coerce_value(self.algo, name, raw)
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
            if name in SETTINGS[self.algo]:
                built = self._built_settings.get(name, _MISSING)
                if built != value:
                    raise ValueError(f"{name} is fixed when the model is built ({built!r}), cannot become {value!r}")
            else:
                self._apply(name, value)
                if name == "gamma" and self.vecnorm is not None:
                    self.vecnorm.gamma = float(value)
            self.hparams[name] = value

    # -- training and evaluation ------------------------------------------------------------
    @property
    def num_timesteps(self) -> int:
        return int(self.model.num_timesteps)

    def reseed(self, generation: int) -> None:
        """Seed python / numpy / torch and the action space for ``generation``.

        The training envs are *not* touched: episodes continue across generations (as in one long
        SB3 run), so late-episode states are trained on however short a generation is. Resume stays
        exact because checkpoints hold the envs' state (:meth:`env_state`).
        """
        s = seeds.train_seed(self.cfg.seed, self.index, generation)
        set_random_seed(s, using_cuda=self.device.startswith("cuda"))
        self.model.action_space.seed(s)

    def train(self, steps: int, should_stop: Any = None) -> TrainStats:
        """Train for ``steps`` more env steps (counters and schedules continue)."""
        stats = TrainStats()
        cb = _GenerationCallback(stats, should_stop)
        logger = self.model.logger
        for d in (logger.name_to_value, logger.name_to_count, logger.name_to_excluded):
            d.clear()  # losses of this generation only
        t0 = time.perf_counter()
        self._learn(steps, cb)
        stats.seconds = time.perf_counter() - t0
        values = logger.name_to_value
        stats.losses = {k.split("/", 1)[1]: float(v) for k, v in values.items() if k.startswith("train/")}
        if not self.weights_finite() or any(not math.isfinite(v) for v in stats.losses.values()):
            self.failed = True
        return stats

    def weights_finite(self) -> bool:
        return all(bool(torch.isfinite(t).all()) for t in self._weights)

    def evaluate(self, n_episodes: int, deterministic: bool, seed: int, test_levels: bool = False) -> float:
        """Mean raw return over ``n_episodes`` on the evaluation (or held-out) env; NaN if failed.

        With ``--normalize-obs`` the evaluation env normalises observations with a frozen copy of
        the training statistics (it never updates them); rewards are never normalised there."""
        if self.failed:
            return math.nan
        env = self.test_env if test_levels else self.eval_env
        assert env is not None, "held-out levels were not requested"
        if isinstance(env, VecNormalize) and self.vecnorm is not None:
            env.obs_rms = self.vecnorm.obs_rms.copy()
            env.ret_rms = self.vecnorm.ret_rms.copy()
        env.seed(seed)
        set_random_seed(seed)  # stochastic evaluation samples actions from torch's global rng
        self.model.action_space.seed(seed)  # DQN's epsilon-greedy draws from the action space
        returns, _ = evaluate_policy(self.model, env, n_eval_episodes=n_episodes,
                                     deterministic=deterministic, return_episode_rewards=True, warn=False)
        return float(np.mean(returns))

    def _frozen(self, venv: VecEnv) -> VecEnv:
        """An evaluation env: observations normalised with frozen statistics when training
        normalises them, raw rewards always."""
        if self.vecnorm is None or not self.vecnorm.norm_obs:
            return venv
        return VecNormalize(venv, training=False, norm_obs=True, norm_reward=False)

    # -- env state (continuing episodes across a checkpoint) --------------------------------
    def env_state(self) -> bytes | None:
        """The training envs' full state plus SB3's last observation, or ``None`` if the env
        cannot be snapshotted (then a resume starts fresh episodes)."""
        env = env_snapshot(self.raw_env)
        if env is None:
            return None
        m = self.model
        state: dict[str, Any] = {"env": env, "last_obs": m._last_obs, "last_episode_starts": m._last_episode_starts,
                                 "last_original_obs": getattr(m, "_last_original_obs", None)}
        if self.vecnorm is not None:
            v = self.vecnorm
            state["vecnormalize"] = {"returns": v.returns, "old_obs": getattr(v, "old_obs", None),
                                     "old_reward": v.old_reward}
        return pickle.dumps(state)

    def load_env_state(self, blob: bytes | None) -> None:
        """Restore :meth:`env_state`; ``None`` makes the next ``train()`` reset the envs."""
        m = self.model
        if blob is None:
            m._last_obs = None
            return
        state = pickle.loads(blob)
        restore_env_snapshot(self.raw_env, state["env"])
        m._last_obs = state["last_obs"]
        m._last_episode_starts = state["last_episode_starts"]
        if state.get("last_original_obs") is not None:
            m._last_original_obs = state["last_original_obs"]
        norm = state.get("vecnormalize")
        if norm is not None and self.vecnorm is not None:
            self.vecnorm.returns = norm["returns"]
            if norm["old_obs"] is not None:
                self.vecnorm.old_obs = norm["old_obs"]
            self.vecnorm.old_reward = norm["old_reward"]

    # -- replay buffer (off-policy; checkpointed so that a resume continues exactly) ---------
    def replay_state(self) -> bytes | None:
        """The filled part of the replay buffer, or ``None`` for algorithms without one. Never part
        of an exploit (the receiver keeps its own); a checkpoint keeps it so a resume is exact."""
        return None

    def load_replay_state(self, blob: bytes | None) -> None:
        """Restore :meth:`replay_state` (``None``: keep the buffer as it is)."""

    # -- flat state -------------------------------------------------------------------------
    @staticmethod
    def _unique(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        seen: set[int] = set()
        out = []
        for t in tensors:
            if id(t) not in seen:
                seen.add(id(t))
                out.append(t)
        return out

    def _all_fields(self) -> list[ExtraField]:
        m = self.model
        fields = [ExtraField("n_updates", 1, lambda: np.array([m._n_updates], np.float64),
                             lambda a: setattr(m, "_n_updates", int(a[0])))]
        fields += self._extra_fields()
        for i, b in enumerate(t for t in m.policy.buffers() if not t.is_floating_point()):
            fields.append(ExtraField(f"int_buffer_{i}", b.numel(), *self._int_buffer_access(b)))
        v = self.vecnorm
        if v is not None:
            if v.norm_obs:
                if isinstance(v.obs_rms, dict):
                    raise NotImplementedError("--normalize-obs with Dict observations")
                fields += self._rms_fields("obs_rms", lambda: v.obs_rms)
            if v.norm_reward:
                fields += self._rms_fields("ret_rms", lambda: v.ret_rms)
        return fields

    @staticmethod
    def _int_buffer_access(b: torch.Tensor) -> tuple[Callable[[], np.ndarray], Callable[[np.ndarray], None]]:
        def get() -> np.ndarray:
            return b.detach().cpu().reshape(-1).numpy().astype(np.float64)

        def put(a: np.ndarray) -> None:
            with torch.no_grad():
                b.copy_(torch.from_numpy(a.astype(np.int64)).view_as(b))

        return get, put

    @staticmethod
    def _rms_fields(name: str, rms: Callable[[], Any]) -> list[ExtraField]:
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

    def _extras(self) -> np.ndarray:
        if not self._fields:
            return np.zeros(0, np.float64)
        return np.concatenate([np.asarray(f.get(), np.float64).reshape(-1) for f in self._fields])

    def _set_extras(self, values: np.ndarray) -> None:
        pos = 0
        for f in self._fields:
            f.set(values[pos:pos + f.size].copy())
            pos += f.size

    def _opt_states(self, opt: torch.optim.Optimizer, params: list[torch.Tensor],
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

    @property
    def flat_size(self) -> int:
        """float32 elements of the flat state (see the module docstring for its layout)."""
        n = self.num_params + 2 * self._n_extras
        for _, params, slots in self._opt_layout:
            n += sum(p.numel() for p in params) * len(slots) + len(params)
        return n

    def pack(self, out: np.ndarray | None = None) -> np.ndarray:
        """The flat state into one contiguous CPU float32 buffer (no pickling)."""
        if out is None:
            out = np.empty(self.flat_size, dtype=np.float32)
        assert out.dtype == np.float32 and out.size == self.flat_size
        pos = 0

        def put(t: torch.Tensor) -> None:
            nonlocal pos
            n = t.numel()
            out[pos:pos + n] = t.detach().reshape(-1).cpu().numpy()
            pos += n

        with torch.no_grad():
            for t in self._weights:
                put(t)
            for opt, params, slots in self._opt_layout:
                states = self._opt_states(opt, params, slots)
                for slot in slots:
                    for st in states:
                        put(st[slot])
                for st in states:
                    out[pos] = float(st["step"])
                    pos += 1
        extras = self._extras()
        out[pos:pos + 2 * extras.size] = extras.view(np.float32)
        return out

    def unpack(self, buf: np.ndarray) -> None:
        """Load the flat state from a buffer made by :meth:`pack` (bit-exact)."""
        if buf.dtype != np.float32 or buf.size != self.flat_size:
            raise ValueError(f"flat state has {buf.size} {buf.dtype} values, expected {self.flat_size} float32")
        pos = 0

        def take(t: torch.Tensor) -> None:
            nonlocal pos
            n = t.numel()
            t.copy_(torch.from_numpy(buf[pos:pos + n]).view_as(t))
            pos += n

        with torch.no_grad():
            for t in self._weights:
                take(t)
            for opt, params, slots in self._opt_layout:
                states = self._opt_states(opt, params, slots)
                for slot in slots:
                    for st in states:
                        take(st[slot])
                for st in states:
                    st["step"].fill_(float(buf[pos]))
                    pos += 1
        self._set_extras(buf[pos:pos + 2 * self._n_extras].copy().view(np.float64))
        self._renormalize_last_obs()
        self.failed = not self.weights_finite()

    def _renormalize_last_obs(self) -> None:
        """After new observation statistics arrived, the pending observation the policy acts on
        next is normalised with them (from the raw observation VecNormalize keeps)."""
        v, m = self.vecnorm, self.model
        if v is not None and v.norm_obs and m._last_obs is not None and getattr(v, "old_obs", None) is not None:
            m._last_obs = v.normalize_obs(v.old_obs)

    # -- files ------------------------------------------------------------------------------
    def save_model(self, path: Path) -> None:
        """Write an SB3 zip loadable with ``<Algo>.load`` (atomically: temp file, then rename).

        With normalisation on, the statistics go beside it as ``<name>.vecnormalize.pkl``
        (``VecNormalize.load(path, venv)`` reads it)."""
        from evo.records import atomic_replace

        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.tmp.zip")
        self.model.save(tmp)
        atomic_replace(tmp, path)
        if self.vecnorm is not None:
            side = path.with_name(f"{path.stem}.vecnormalize.pkl")
            tmp_side = path.with_name(f".{path.stem}.vecnormalize.tmp")
            self.vecnorm.save(str(tmp_side))
            atomic_replace(tmp_side, side)

    def state_dict(self) -> dict[str, Any]:
        """Everything but the tensors that a checkpoint needs (JSON-serialisable): counters,
        hyperparameters and the float64 part of the flat state (as hex, bit-exact)."""
        return {
            "index": self.index,
            "algo": self.algo,
            "hparams": dict(self.hparams),
            "num_timesteps": self.num_timesteps,
            "n_updates": int(self.model._n_updates),
            "failed": self.failed,
            "clock": self._clock(),
            "extras": self._extras().tobytes().hex(),
        }

    def load_model_state(self, zip_path: Path, meta: Mapping[str, Any]) -> None:
        """Restore weights + optimizers from an SB3 zip and the rest from ``meta`` (bit-exact)."""
        from stable_baselines3.common.save_util import load_from_zip_file

        if meta.get("algo", "ppo") != self.algo:
            raise CheckpointError(f"checkpoint {zip_path} holds a {meta.get('algo', 'ppo')} member, "
                                  f"this run uses --algo {self.algo}")
        try:
            _, params, variables = load_from_zip_file(str(zip_path), device=self.device, load_data=False)
            if params is None:
                raise ValueError("no parameters in the zip")
            self.model.set_parameters(params, exact_match=True, device=self.device)
            with torch.no_grad():
                for name, value in (variables or {}).items():
                    getattr(self.model, name).copy_(value)  # in place: optimizers keep their tensors
        except Exception as exc:  # a truncated zip raises BadZipFile, a wrong net RuntimeError...
            raise CheckpointError(f"cannot load member checkpoint {zip_path}: {type(exc).__name__}: {exc}") from None
        self.apply_hparams(meta["hparams"])
        self.model.num_timesteps = int(meta["num_timesteps"])
        if "extras" in meta:
            extras = np.frombuffer(bytes.fromhex(meta["extras"]), dtype=np.float64)
            if extras.size != self._n_extras:
                raise CheckpointError(f"checkpoint {zip_path}: {extras.size} float64 state values, this member "
                                      f"has {self._n_extras} (different --normalize-* or env?)")
            self._set_extras(extras.copy())
        self.model._n_updates = int(meta["n_updates"])
        self._set_clock(meta.get("clock") or {})
        self.failed = bool(meta.get("failed", False))

    def close(self) -> None:
        for env in (self.env, self.eval_env, self.test_env):
            if env is not None:
                env.close()
