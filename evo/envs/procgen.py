"""ProcGen (Cobbe et al. 2020) as a stable-baselines3 VecEnv.

:class:`ProcgenVecEnv` drives the vectorised C++ engine (``procgen.ProcgenGym3Env``, a gym3 env)
directly, without gym3's baselines wrapper, and reports episodes like SB3's ``VecMonitor``.

Observations are ``uint8`` HWC images ``(n_envs, 64, 64, 3)`` in ``Box(0, 255, (64, 64, 3))``;
SB3 wraps the env in ``VecTransposeImage`` for CNN policies. Actions are ``Discrete(15)``.

Episode ends. gym3 resets finished episodes itself: after the action that ends an episode,
``observe()`` returns that step's reward together with ``first=True`` and the *first observation
of the next episode*. The adapter reports ``dones[i] = True`` on that step, with:

* ``infos[i]["episode"] = {"r": return, "l": length, "t": seconds since construction}``, exactly
  what ``VecMonitor`` writes (the return includes the final step's reward);
* ``infos[i]["terminal_observation"]``: ProcGen never exposes the frame after the final action
  (the engine renders the new level before returning), so this holds the *last observation of
  the finished episode the agent saw*, i.e. the one the final action was taken on. It belongs to
  the right episode, which is what matters for SB3: ``TimeLimit.truncated`` is always False (the
  engine's 1000-step timeout is an ordinary episode end in ProcGen, as in the Procgen paper), so
  SB3 never bootstraps from it;
* ``infos[i]["level_seed"]`` / ``infos[i]["level_complete"]``: the finished episode's level seed
  and whether it was completed (the engine's ``prev_level_seed`` / ``prev_level_complete``).

Other steps carry empty info dicts; :meth:`ProcgenVecEnv.level_seeds` gives the current levels.

Seeding. One ``rand_seed`` drives the whole engine (it derives each env's level-seed stream from
it), so the same seed and the same actions give identical observation streams. ``seed(s)`` takes
effect at the next ``reset()``, which rebuilds the engine with ``rand_seed = s mod 2**31``. A
``reset()`` without a pending seed rebuilds it with a seed drawn from a generator seeded by the
last explicit seed: new levels, yet the whole run stays reproducible.

Held-out levels. Training levels are the seeds ``[start_level, start_level + num_levels)``
(``num_levels = 0``: any seed in ``[0, 2**31 - 1)``, ``start_level`` ignored by the engine).
``test_levels=True`` builds the engine with the seeds just above the training range,
``[start_level + num_levels, 2**31 - 1)``; if that is empty, the seeds below it,
``[0, start_level)``. These are disjoint from the training levels yet follow the same distribution
(a level seed only seeds the level generator). With ``num_levels = 0`` every seed is a
training level, so held-out levels do not exist: :class:`~evo.errors.ConfigError`.

The engine steps in the calling thread (``num_threads=0``): fastest per core, and one MPI rank per
core does not oversubscribe the node.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices, VecEnvObs, VecEnvStepReturn

from evo.errors import ConfigError

INT32_MAX = 2**31 - 1
N_ACTIONS = 15
OBS_SHAPE = (64, 64, 3)

GAMES = (
    "bigfish", "bossfight", "caveflyer", "chaser", "climber", "coinrun", "dodgeball", "fruitbot",
    "heist", "jumper", "leaper", "maze", "miner", "ninja", "plunder", "starpilot",
)  # fmt: skip
# Games the engine accepts per distribution mode (procgen/src/game.cpp and procgen/env.py); any
# other combination kills the process with a C++ assertion, so it is rejected here first.
MODE_GAMES: dict[str, tuple[str, ...]] = {
    "easy": GAMES,
    "hard": GAMES,
    "extreme": ("chaser", "dodgeball", "leaper", "starpilot"),
    "memory": ("caveflyer", "dodgeball", "heist", "jumper", "maze", "miner"),
    "exploration": ("caveflyer", "climber", "coinrun", "heist", "jumper", "leaper", "maze", "ninja"),
}


def check_procgen_options(
    game: str, distribution_mode: str, num_levels: int, start_level: int, test_levels: bool = False
) -> None:
    """Raise :class:`ConfigError` (one line) if the engine would reject these options."""
    if game not in GAMES:
        raise ConfigError(f"unknown ProcGen game {game!r}; valid games: {', '.join(GAMES)}")
    if distribution_mode not in MODE_GAMES:
        raise ConfigError(f"unknown --distribution-mode {distribution_mode!r} (known: {', '.join(MODE_GAMES)})")
    if game not in MODE_GAMES[distribution_mode]:
        raise ConfigError(
            f"ProcGen game {game!r} has no {distribution_mode!r} mode "
            f"(games with it: {', '.join(MODE_GAMES[distribution_mode])})"
        )
    if num_levels < 0 or start_level < 0 or start_level + num_levels > INT32_MAX:
        raise ConfigError(f"--start-level and --num-levels must be >= 0 with a sum <= {INT32_MAX}")
    if test_levels:
        if distribution_mode == "exploration":
            raise ConfigError("--distribution-mode exploration plays one fixed level; it has no held-out levels")
        if num_levels == 0:
            raise ConfigError("held-out test levels need --num-levels > 0 (with 0, every level is a training level)")
        if start_level + num_levels >= INT32_MAX and start_level == 0:
            raise ConfigError("the training levels cover every ProcGen level; none are left to test on")


def held_out_levels(num_levels: int, start_level: int) -> tuple[int, int]:
    """``(start_level, num_levels)`` of the engine's held-out levels, disjoint from the training ones."""
    if num_levels <= 0:
        raise ConfigError("held-out test levels need --num-levels > 0 (with 0, every level is a training level)")
    above = start_level + num_levels
    if above < INT32_MAX:
        return above, INT32_MAX - above
    if start_level > 0:
        return 0, start_level
    raise ConfigError("the training levels cover every ProcGen level; none are left to test on")


class ProcgenVecEnv(VecEnv):
    """``n_envs`` ProcGen games of one kind, stepped by one engine, with VecMonitor-style episode infos.

    ``num_levels``/``start_level`` are passed to the engine as given (see
    :func:`make_procgen_vec_env` for held-out levels); ``exploration`` mode ignores them.
    """

    def __init__(
        self,
        game: str,
        n_envs: int,
        *,
        seed: int,
        num_levels: int = 0,
        start_level: int = 0,
        distribution_mode: str = "easy",
        num_threads: int = 0,
    ) -> None:
        if n_envs <= 0:
            raise ConfigError(f"n_envs must be > 0, got {n_envs}")
        check_procgen_options(game, distribution_mode, num_levels, start_level)
        self.game = game
        self.num_levels = num_levels
        self.start_level = start_level
        self.distribution_mode = distribution_mode
        self.num_threads = num_threads
        self.render_mode = "rgb_array"  # read by VecEnv.__init__ through get_attr
        super().__init__(
            n_envs,
            spaces.Box(0, 255, OBS_SHAPE, dtype=np.uint8),
            spaces.Discrete(N_ACTIONS),
        )
        self._engine: Any = None
        self._pending_seed: int | None = None
        self._fresh = False
        self._actions: np.ndarray | None = None
        self._ep_returns = np.zeros(n_envs, dtype=np.float64)
        self._ep_lengths = np.zeros(n_envs, dtype=np.int64)
        self._t_start = time.time()
        self._build_engine(seed)
        self._seed_rng = np.random.default_rng(self.rand_seed)

    # -- engine ---------------------------------------------------------------------------------

    def _build_engine(self, seed: int) -> None:
        """(Re)create the engine with ``rand_seed = seed mod 2**31``; its envs start new episodes."""
        import procgen

        if self._engine is not None:
            self._engine.close()
        rand_seed = int(seed) % 2**31
        kwargs: dict[str, Any] = {}
        if self.distribution_mode != "exploration":  # exploration fixes its own level
            kwargs = {"num_levels": self.num_levels, "start_level": self.start_level}
        self._engine = procgen.ProcgenGym3Env(
            num=self.num_envs,
            env_name=self.game,
            distribution_mode=self.distribution_mode,
            rand_seed=rand_seed,
            num_threads=self.num_threads,
            **kwargs,
        )
        self.rand_seed = rand_seed
        self._fresh = True
        self._actions = None
        _, ob, _ = self._engine.observe()
        self._obs: np.ndarray = ob["rgb"]
        self._ep_returns[:] = 0.0
        self._ep_lengths[:] = 0

    def level_seeds(self) -> np.ndarray:
        """The level seed each env is playing now, shape ``(n_envs,)``."""
        return np.array([info["level_seed"] for info in self._engine.get_info()], dtype=np.int64)

    # -- VecEnv API -----------------------------------------------------------------------------

    def seed(self, seed: int | None = None) -> Sequence[int | None]:
        """Use ``seed`` (random if None) as the engine's ``rand_seed`` from the next ``reset()``.

        The engine has one seed for all its envs, so every entry of the returned list is that seed.
        """
        if seed is None:
            seed = int(np.random.randint(0, 2**31 - 1))
        self._pending_seed = int(seed) % 2**31
        return [self._pending_seed] * self.num_envs

    def reset(self) -> VecEnvObs:
        if self._pending_seed is not None:
            self._build_engine(self._pending_seed)
            self._seed_rng = np.random.default_rng(self._pending_seed)
            self._pending_seed = None
        elif not self._fresh:
            self._build_engine(int(self._seed_rng.integers(0, 2**31 - 1)))
        self._fresh = False
        self.reset_infos = [{} for _ in range(self.num_envs)]
        self._reset_seeds()
        self._reset_options()
        return self._obs

    def step_async(self, actions: np.ndarray) -> None:
        acts = np.asarray(actions).reshape(-1)
        if acts.shape != (self.num_envs,):
            raise ValueError(f"expected {self.num_envs} actions, got shape {np.shape(actions)}")
        if np.any((acts < 0) | (acts >= N_ACTIONS)):
            raise ValueError(f"actions must be in [0, {N_ACTIONS}), got {acts}")
        self._fresh = False
        self._engine.act(acts.astype(np.int32))
        self._actions = acts

    def step_wait(self) -> VecEnvStepReturn:
        if self._actions is None:
            raise RuntimeError("step_wait() called without a pending step_async()")
        self._actions = None
        rewards, ob, first = self._engine.observe()
        obs: np.ndarray = ob["rgb"]
        rewards = rewards.astype(np.float32, copy=False)
        dones = first.astype(bool, copy=True)
        self._ep_returns += rewards
        self._ep_lengths += 1
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        if dones.any():
            ended = np.flatnonzero(dones)
            level_info = self._engine.get_info()  # prev_level_* describe the finished episodes
            elapsed = round(time.time() - self._t_start, 6)
            for i in ended:
                infos[i] = {
                    "terminal_observation": self._obs[i].copy(),
                    "TimeLimit.truncated": False,
                    "episode": {"r": float(self._ep_returns[i]), "l": int(self._ep_lengths[i]), "t": elapsed},
                    "level_seed": int(level_info[i]["prev_level_seed"]),
                    "level_complete": bool(level_info[i]["prev_level_complete"]),
                }
            self._ep_returns[ended] = 0.0
            self._ep_lengths[ended] = 0
        self._obs = obs
        return obs, rewards, dones, infos

    # -- snapshots ------------------------------------------------------------------------------

    def get_snapshot(self) -> dict[str, Any]:
        """The engine's full state (levels, RNGs, in-progress episodes) plus the adapter's own."""
        return {
            "engine": self._engine.get_state(), "obs": self._obs.copy(), "ep_returns": self._ep_returns.copy(),
            "ep_lengths": self._ep_lengths.copy(), "rand_seed": self.rand_seed, "pending_seed": self._pending_seed,
            "fresh": self._fresh, "seed_rng": self._seed_rng.bit_generator.state,
        }

    def set_snapshot(self, snap: dict[str, Any]) -> None:
        """Restore :meth:`get_snapshot` into this adapter (same game, options and n_envs)."""
        self._engine.set_state(list(snap["engine"]))
        self._obs = np.array(snap["obs"], copy=True)
        self._ep_returns[:] = snap["ep_returns"]
        self._ep_lengths[:] = snap["ep_lengths"]
        self.rand_seed = int(snap["rand_seed"])
        self._pending_seed = snap["pending_seed"]
        self._fresh = bool(snap["fresh"])
        self._seed_rng.bit_generator.state = snap["seed_rng"]
        self._actions = None

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
            self._engine = None

    def get_images(self) -> Sequence[np.ndarray | None]:
        """The current 64x64 observation of each env (what the agent sees)."""
        return list(self._obs)

    # The envs of one engine share this object, so attributes and methods are the adapter's own,
    # repeated once per requested index.

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        value = getattr(self, attr_name)
        return [value for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        if sorted(self._get_indices(indices)) != list(range(self.num_envs)):
            raise NotImplementedError("ProcgenVecEnv attributes are shared by all its envs; set them for all")
        setattr(self, attr_name, value)

    def env_method(
        self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **method_kwargs: Any
    ) -> list[Any]:
        """Call the adapter's method once and repeat its result for each requested index."""
        idx = list(self._get_indices(indices))
        result = getattr(self, method_name)(*method_args, **method_kwargs)
        return [result for _ in idx]

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        """True for ``Monitor``: episode infos are reported like ``Monitor``/``VecMonitor`` do."""
        from stable_baselines3.common.monitor import Monitor

        return [wrapper_class is Monitor for _ in self._get_indices(indices)]


def make_procgen_vec_env(
    game: str,
    n_envs: int,
    *,
    seed: int,
    num_levels: int,
    start_level: int,
    distribution_mode: str,
    test_levels: bool = False,
) -> VecEnv:
    """Build ``n_envs`` ProcGen ``game`` envs; ``test_levels=True``: only held-out levels (see module doc)."""
    check_procgen_options(game, distribution_mode, num_levels, start_level, test_levels)
    if test_levels:
        start_level, num_levels = held_out_levels(num_levels, start_level)
    return ProcgenVecEnv(
        game,
        n_envs,
        seed=seed,
        num_levels=num_levels,
        start_level=start_level,
        distribution_mode=distribution_mode,
    )
