"""One population member: a stable-baselines3 PPO agent with its envs.

Knows nothing of MPI or selection. It trains, evaluates, packs its weights and optimizer state
into one flat float32 buffer (and back, bit-exactly), and applies hyperparameters so that the
next ``train()`` really uses them.
"""

from __future__ import annotations

import math
import pickle
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.preprocessing import is_image_space
from stable_baselines3.common.utils import FloatSchedule, set_random_seed, update_learning_rate
from stable_baselines3.common.vec_env import VecEnv

from evo import seeds
from evo.config import CommonConfig
from evo.envs import env_snapshot, make_vec_env, restore_env_snapshot
from evo.errors import CheckpointError
from evo.space import HParams

# PPO constructor defaults for hyperparameters a space may leave out.
PPO_DEFAULTS: dict[str, Any] = {
    "learning_rate": 3e-4, "clip_range": 0.2, "ent_coef": 0.0, "vf_coef": 0.5, "gamma": 0.99,
    "gae_lambda": 0.95, "n_epochs": 10, "batch_size": 64, "max_grad_norm": 0.5,
}  # fmt: skip
FLOAT_HPARAMS = ("learning_rate", "clip_range", "ent_coef", "vf_coef", "gamma", "gae_lambda", "max_grad_norm")
INT_HPARAMS = ("n_epochs", "batch_size")


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


class Member:
    """A PPO agent plus its training, evaluation and (ProcGen) held-out-level envs."""

    def __init__(self, cfg: CommonConfig, hparams: Mapping[str, Any], index: int = 0) -> None:
        from evo.policies import init_conv_xavier, resolve_policy

        self.cfg = cfg
        self.index = index
        self.seed = cfg.seed + index
        spec = cfg.env_spec()
        self.env: VecEnv = make_vec_env(spec, cfg.n_envs, seed=self.seed)
        n_eval = max(1, min(cfg.n_envs, cfg.eval_episodes))
        self.eval_env: VecEnv = make_vec_env(spec, n_eval, seed=seeds.env_seed(cfg.seed, index, 1))
        self.test_env: VecEnv | None = None
        if cfg.eval_test_levels:
            self.test_env = make_vec_env(spec, n_eval, seed=seeds.env_seed(cfg.seed, index, 2), test_levels=True)
        image = is_image_space(self.env.observation_space)
        policy, policy_kwargs = resolve_policy(cfg.policy, image)
        hp = {**PPO_DEFAULTS, **hparams}
        self.model = PPO(
            policy,
            self.env,
            n_steps=cfg.n_steps,
            batch_size=int(hp["batch_size"]),
            n_epochs=int(hp["n_epochs"]),
            learning_rate=float(hp["learning_rate"]),
            gamma=float(hp["gamma"]),
            gae_lambda=float(hp["gae_lambda"]),
            clip_range=float(hp["clip_range"]),
            ent_coef=float(hp["ent_coef"]),
            vf_coef=float(hp["vf_coef"]),
            max_grad_norm=float(hp["max_grad_norm"]),
            policy_kwargs=policy_kwargs,
            seed=self.seed,
            device="cpu",
            verbose=0,
        )
        if image:
            init_conv_xavier(self.model.policy)
        self.model.set_logger(Logger(folder=None, output_formats=[]))
        self.hparams: HParams = {}
        self.apply_hparams(hp)
        self._params = list(self.model.policy.parameters())
        self.num_params = sum(p.numel() for p in self._params)
        self.failed = False

    # -- hyperparameters ------------------------------------------------------------------------
    def apply_hparams(self, hparams: Mapping[str, Any]) -> None:
        """Make the live model use ``hparams`` from its next ``train()`` on.

        SB3 builds the learning-rate and clip-range schedules once and the rollout buffer keeps
        its own gamma / gae_lambda, so setting ``model.learning_rate`` alone does nothing.
        """
        m = self.model
        for name, value in hparams.items():
            if name == "learning_rate":
                m.learning_rate = float(value)
                m.lr_schedule = FloatSchedule(float(value))
                update_learning_rate(m.policy.optimizer, float(value))
            elif name == "clip_range":
                m.clip_range = FloatSchedule(float(value))
            elif name in ("gamma", "gae_lambda"):
                setattr(m, name, float(value))
                setattr(m.rollout_buffer, name, float(value))
            elif name in ("ent_coef", "vf_coef", "max_grad_norm"):
                setattr(m, name, float(value))
            elif name in INT_HPARAMS:
                if name == "batch_size" and self.cfg.rollout_size % int(value) != 0:
                    raise ValueError(f"batch_size {value} does not divide the rollout {self.cfg.rollout_size}")
                setattr(m, name, int(value))
            else:
                raise KeyError(f"unknown hyperparameter {name!r}")
            self.hparams[name] = int(value) if name in INT_HPARAMS else float(value)

    def live_hparams(self) -> HParams:
        """The hyperparameters as SB3 will use them (read back from the model)."""
        m = self.model
        progress = m._current_progress_remaining
        return {
            "learning_rate": float(m.lr_schedule(progress)),
            "clip_range": float(m.clip_range(progress)),  # type: ignore[operator]
            "ent_coef": float(m.ent_coef),
            "vf_coef": float(m.vf_coef),
            "gamma": float(m.rollout_buffer.gamma),
            "gae_lambda": float(m.rollout_buffer.gae_lambda),
            "n_epochs": int(m.n_epochs),
            "batch_size": int(m.batch_size),
            "max_grad_norm": float(m.max_grad_norm),
        }

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
        set_random_seed(s)
        self.model.action_space.seed(s)

    # -- env state (continuing episodes across a checkpoint) --------------------------------
    def env_state(self) -> bytes | None:
        """The training envs' full state plus SB3's last observation, or ``None`` if the env
        cannot be snapshotted (then a resume starts fresh episodes)."""
        env = env_snapshot(self.env)
        if env is None:
            return None
        m = self.model
        return pickle.dumps({"env": env, "last_obs": m._last_obs, "last_episode_starts": m._last_episode_starts,
                             "last_original_obs": getattr(m, "_last_original_obs", None)})

    def load_env_state(self, blob: bytes | None) -> None:
        """Restore :meth:`env_state`; ``None`` makes the next ``train()`` reset the envs."""
        m = self.model
        if blob is None:
            m._last_obs = None  # type: ignore[assignment]
            return
        state = pickle.loads(blob)
        restore_env_snapshot(self.env, state["env"])
        m._last_obs = state["last_obs"]
        m._last_episode_starts = state["last_episode_starts"]
        if state.get("last_original_obs") is not None:
            m._last_original_obs = state["last_original_obs"]

    def train(self, steps: int, should_stop: Any = None) -> TrainStats:
        """Train for ``steps`` more env steps (counters and schedules continue)."""
        stats = TrainStats()
        cb = _GenerationCallback(stats, should_stop)
        t0 = time.perf_counter()
        self.model.learn(total_timesteps=steps, callback=cb, reset_num_timesteps=False,
                         log_interval=None)  # type: ignore[arg-type]
        stats.seconds = time.perf_counter() - t0
        values = self.model.logger.name_to_value
        stats.losses = {k.split("/", 1)[1]: float(v) for k, v in values.items() if k.startswith("train/")}
        if not self.weights_finite() or any(not math.isfinite(v) for v in stats.losses.values()):
            self.failed = True
        return stats

    def weights_finite(self) -> bool:
        return all(bool(torch.isfinite(p).all()) for p in self._params)

    def evaluate(self, n_episodes: int, deterministic: bool, seed: int, test_levels: bool = False) -> float:
        """Mean return over ``n_episodes`` on the evaluation (or held-out) env; NaN if failed."""
        if self.failed:
            return math.nan
        env = self.test_env if test_levels else self.eval_env
        assert env is not None, "held-out levels were not requested"
        env.seed(seed)
        set_random_seed(seed)  # stochastic evaluation samples actions from torch's global rng
        returns, _ = evaluate_policy(self.model, env, n_eval_episodes=n_episodes,
                                     deterministic=deterministic, return_episode_rewards=True, warn=False)
        return float(np.mean(returns))

    # -- flat state -------------------------------------------------------------------------
    def _optimizer_tensors(self) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
        opt = self.model.policy.optimizer
        avg, sq, steps = [], [], []
        for p in self._params:
            st = opt.state[p]
            if not st:  # Adam creates its state lazily: give it the state of step 0
                st["step"] = torch.tensor(0.0, dtype=torch.float32)
                st["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                st["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            avg.append(st["exp_avg"])
            sq.append(st["exp_avg_sq"])
            steps.append(st["step"])
        return avg, sq, steps

    @property
    def flat_size(self) -> int:
        """float32 elements of the flat state: weights, Adam's two moments, Adam's step counts."""
        return 3 * self.num_params + len(self._params)

    def pack(self, out: np.ndarray | None = None) -> np.ndarray:
        """Weights + optimizer state into one contiguous float32 buffer (no pickling)."""
        if out is None:
            out = np.empty(self.flat_size, dtype=np.float32)
        assert out.dtype == np.float32 and out.size == self.flat_size
        avg, sq, steps = self._optimizer_tensors()
        pos = 0
        with torch.no_grad():
            for group in (self._params, avg, sq):
                for t in group:
                    n = t.numel()
                    out[pos:pos + n] = t.detach().reshape(-1).numpy()
                    pos += n
            for s in steps:
                out[pos] = float(s)
                pos += 1
        return out

    def unpack(self, buf: np.ndarray) -> None:
        """Load weights + optimizer state from a buffer made by :meth:`pack` (bit-exact)."""
        if buf.dtype != np.float32 or buf.size != self.flat_size:
            raise ValueError(f"flat state has {buf.size} {buf.dtype} values, expected {self.flat_size} float32")
        avg, sq, steps = self._optimizer_tensors()
        pos = 0
        with torch.no_grad():
            for group in (self._params, avg, sq):
                for t in group:
                    n = t.numel()
                    t.copy_(torch.from_numpy(buf[pos:pos + n]).view_as(t))
                    pos += n
            for s in steps:
                s.fill_(float(buf[pos]))
                pos += 1
        self.failed = not self.weights_finite()

    # -- files ------------------------------------------------------------------------------
    def save_model(self, path: Path) -> None:
        """Write an SB3 zip loadable with ``PPO.load`` (atomically: temp file, then rename)."""
        from evo.records import atomic_replace

        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.tmp.zip")
        self.model.save(tmp)
        atomic_replace(tmp, path)

    def state_dict(self) -> dict[str, Any]:
        """Everything but the tensors that a checkpoint needs (JSON-serialisable)."""
        return {
            "index": self.index,
            "hparams": dict(self.hparams),
            "num_timesteps": self.num_timesteps,
            "n_updates": int(self.model._n_updates),
            "failed": self.failed,
        }

    def load_model_state(self, zip_path: Path, meta: Mapping[str, Any]) -> None:
        """Restore weights + optimizer from an SB3 zip and counters/hparams from ``meta``."""
        try:
            self.model.set_parameters(str(zip_path), exact_match=True, device="cpu")
        except Exception as exc:  # a truncated zip raises BadZipFile, a wrong net RuntimeError...
            raise CheckpointError(f"cannot load member checkpoint {zip_path}: {type(exc).__name__}: {exc}") from None
        self.apply_hparams(meta["hparams"])
        self.model.num_timesteps = int(meta["num_timesteps"])
        self.model._n_updates = int(meta["n_updates"])
        self.failed = bool(meta.get("failed", False))

    def close(self) -> None:
        for env in (self.env, self.eval_env, self.test_env):
            if env is not None:
                env.close()
