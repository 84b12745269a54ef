"""The learner interface: one population member, whatever stable-baselines3 algorithm drives it.

Knows nothing of MPI or selection. A learner trains for a number of env steps, evaluates, packs its
whole trainable state into one flat float32 buffer (and back, bit-exactly), applies hyperparameters
so that SB3's next ``train()`` really uses them, and saves/restores itself for checkpoints.

What the algorithm-specific adapters (one module each) provide:

* ``spec`` (an :class:`~evo.core.algos.AlgoSpec`: names, domains, defaults, search space, sets) and
  ``sb3_class``;
* ``_build(policy, policy_kwargs, hp)``: the SB3 model;
* ``_apply(name, value)`` / ``live_hparams()``: setting and reading back live hyperparameters;
* ``_optimizers()``, ``_extra_weights()``, ``_extra_fields()``, ``_clock()``: what the flat state
  and a checkpoint hold besides the policy's own tensors;
* ``_learn(steps, callback)``: one generation of training.

The flat state (what an exploit moves; layout in :mod:`evo.learners.flat`): weights, optimizer state,
and float64 values (``n_updates``, algorithm counters and schedules such as DQN's exploration rate,
integer buffers, and the VecNormalize statistics when ``--normalize-obs`` / ``--normalize-reward`` is
on). It never holds the replay buffer (large; and off-policy data stays valid for the receiver, which
keeps learning from its own experience with the donor's networks), nor the env's state (the
receiver's episodes continue: VecNormalize's per-env discounted ``returns`` belong to them).

Build one with :func:`evo.learners.make_learner` (the adapter registered for ``cfg.algo``).
"""

from __future__ import annotations

import math
import pickle
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.preprocessing import is_image_space
from stable_baselines3.common.utils import FloatSchedule, set_random_seed, update_learning_rate

from evo.core import seeds
from evo.core.algos import AlgoSpec
from evo.core.params import HParams
from evo.envs import env_snapshot, restore_env_snapshot
from evo.errors import CheckpointError, ConfigError
from evo.learners.device import resolve_device
from evo.learners.envs import build_envs
from evo.learners.flat import ExtraField, FlatState, int_buffer_field, rms_fields
from evo.learners.training import GenerationCallback, TrainStats

if TYPE_CHECKING:
    from evo.config import CommonConfig

_MISSING = object()


class Learner:
    """One population member: an SB3 model plus its training, evaluation and held-out-level envs.

    An adapter subclass per algorithm sets ``spec`` and ``sb3_class`` and registers itself
    (:func:`evo.learners.registry.register`); :func:`evo.learners.make_learner` builds the one of
    ``cfg.algo``.
    """

    spec: ClassVar[AlgoSpec]
    """What the algorithm is (names, domains, SB3's defaults, default search space, named sets)."""
    sb3_class: ClassVar[type[BaseAlgorithm]]
    """The stable-baselines3 class it trains (and that loads its saved models)."""

    model: BaseAlgorithm

    def __init__(self, cfg: CommonConfig, hparams: Mapping[str, Any], index: int = 0,
                 local_rank: int | None = None) -> None:
        from evo.policies import init_conv_xavier, resolve_policy

        if not hasattr(self, "spec"):
            raise TypeError(f"{type(self).__name__} has no spec: build a member with "
                            f"evo.learners.make_learner(cfg, hparams, index)")
        self.cfg = cfg
        self.index = index
        self.seed = cfg.seed + index
        device = str(getattr(cfg, "device", "cpu"))
        gpus = torch.cuda.device_count() if device != "cpu" else 0
        self.device = resolve_device(device, index if local_rank is None else local_rank, gpus)
        domains = self.spec.domains
        unknown = [k for k in hparams if k not in domains]
        if unknown:
            raise ConfigError(f"hyperparameter(s) {unknown} do not belong to --algo {self.algo}")
        hp: dict[str, Any] = {**self.spec.defaults, **{k: domains[k].coerce(k, v) for k, v in hparams.items()}}

        envs = build_envs(cfg, index, self.seed, float(hp.get("gamma", 0.99)))
        self.raw_env, self.vecnorm, self.env = envs.raw, envs.vecnorm, envs.train
        self.eval_env, self.test_env = envs.evaluation, envs.test

        image = is_image_space(self.raw_env.observation_space)
        policy, policy_kwargs = resolve_policy(cfg.policy, self.raw_env.observation_space, self.algo)
        settings = {k: v for k, v in hp.items() if k in self.spec.settings}
        self._built_settings = {**self.spec.setting_defaults, **settings}
        for key in ("net_arch", "ortho_init", "log_std_init"):
            if self._built_settings.get(key) is not None:
                policy_kwargs[key] = self._built_settings[key]
        self.model = self._build(policy, policy_kwargs, hp)
        if image and init_conv_xavier(self.model.policy):
            self._sync_targets()
        self.model.set_logger(Logger(folder=None, output_formats=[]))
        self.hparams: HParams = {}
        self.apply_hparams(hp)

        policy_net = self.model.policy
        self._flat = FlatState([*policy_net.parameters(), *(b for b in policy_net.buffers() if b.is_floating_point()),
                                *self._extra_weights()], self._optimizers(), self._all_fields())
        self.num_params = self._flat.num_params
        self.failed = False

    @property
    def algo(self) -> str:
        """The ``--algo`` name of this learner."""
        return self.spec.name

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
        domains = self.spec.domains
        for name, raw in hparams.items():
            if name not in domains:
                raise KeyError(f"unknown hyperparameter {name!r} for --algo {self.algo}")
            try:
                value = domains[name].coerce(name, raw)
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
            if name in self.spec.settings:
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
        cb = GenerationCallback(stats, should_stop)
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
        return self._flat.finite()

    def evaluate(self, n_episodes: int, deterministic: bool, seed: int, test_levels: bool = False) -> float:
        """Mean raw return of evaluation set ``seed`` (``n_episodes`` episodes, :mod:`evo.learners.evaluation`)
        on the evaluation (or held-out) levels; NaN if failed."""
        returns = self.episode_returns(n_episodes, deterministic, seed, test_levels)
        return math.nan if returns is None else float(np.mean(returns))

    def episode_returns(self, n_episodes: int, deterministic: bool, seed: int, test_levels: bool = False,
                        slots: int | None = None) -> np.ndarray | None:
        """Raw return of each episode of evaluation set ``seed``, in order (``None`` if failed), ``slots``
        envs at once (default ``--eval-envs``). With ``--normalize-obs`` observations are normalised
        with a frozen copy of the training statistics (never updated there); rewards stay raw."""
        from evo.learners.evaluation import PolicyActor, play

        if self.failed:
            return None
        envs = self.test_env if test_levels else self.eval_env
        assert envs is not None, "held-out levels were not requested"
        if self.vecnorm is not None and self.vecnorm.norm_obs:
            envs.freeze(self.vecnorm)
        width = int(getattr(self.cfg, "eval_envs", 0)) if slots is None else slots
        return play(envs, PolicyActor(self.model, deterministic), n_episodes, seed, width)

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
    def _all_fields(self) -> list[ExtraField]:
        m = self.model
        fields = [ExtraField("n_updates", 1, lambda: np.array([m._n_updates], np.float64),
                             lambda a: setattr(m, "_n_updates", int(a[0])))]
        fields += self._extra_fields()
        for i, b in enumerate(t for t in m.policy.buffers() if not t.is_floating_point()):
            fields.append(int_buffer_field(f"int_buffer_{i}", b))
        v = self.vecnorm
        if v is not None:
            if v.norm_obs:
                if isinstance(v.obs_rms, dict):
                    raise NotImplementedError("--normalize-obs with Dict observations")
                fields += rms_fields("obs_rms", lambda: v.obs_rms)
            if v.norm_reward:
                fields += rms_fields("ret_rms", lambda: v.ret_rms)
        return fields

    @property
    def flat_size(self) -> int:
        """float32 elements of the flat state (layout: :mod:`evo.learners.flat`)."""
        return self._flat.size

    def pack(self, out: np.ndarray | None = None) -> np.ndarray:
        """The flat state into one contiguous CPU float32 buffer (no pickling)."""
        return self._flat.pack(out)

    def unpack(self, buf: np.ndarray) -> None:
        """Load the flat state from a buffer made by :meth:`pack` (bit-exact)."""
        self._flat.unpack(buf)
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
            "extras": self._flat.extras().tobytes().hex(),
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
            if extras.size != self._flat.n_extras:
                raise CheckpointError(f"checkpoint {zip_path}: {extras.size} float64 state values, this member "
                                      f"has {self._flat.n_extras} (different --normalize-* or env?)")
            self._flat.set_extras(extras.copy())
        self.model._n_updates = int(meta["n_updates"])
        self._set_clock(meta.get("clock") or {})
        self.failed = bool(meta.get("failed", False))

    def close(self) -> None:
        for env in (self.env, self.eval_env, self.test_env):
            if env is not None:
                env.close()
