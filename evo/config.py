"""Run configuration: one dataclass per kind of run, parsed from the command line in one place.

Each field carries its help text in ``metadata["help"]``; :func:`parse` turns the dataclass into
an argparse parser (``--snake-case`` flags, ``--flag/--no-flag`` for booleans), then
:meth:`validate` checks everything that does not need MPI or an env, so every rank rejects bad
input with the same one-line :class:`~evo.errors.ConfigError`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evo.errors import ConfigError


def arg(default: Any, help: str, **kw: Any) -> Any:
    """A dataclass field with command-line help."""
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class CommonConfig:
    """Settings shared by PBT members and the baseline runner."""

    env_id: str = arg("CartPole-v1", "Gymnasium id (CartPole-v1, Pendulum-v1, ...), your own env as "
                                     "package.module:Name-v0 (the module registers it), or ProcGen game (bigfish, ...)")
    n_envs: int = arg(4, "parallel environments per member (one VecEnv)")
    n_steps: int = arg(256, "PPO rollout length per environment; a rollout is n_steps * n_envs env steps")
    eval_episodes: int = arg(10, "episodes per evaluation (score = mean return)")
    eval_envs: int = arg(0, "envs an evaluation plays side by side, one forward pass per step for all (0 = as many "
                            "as --eval-episodes; 1 = one episode after another); scores do not depend on it")
    eval_deterministic: bool | None = arg(
        None, "greedy actions when evaluating (default: on for Gymnasium, off for ProcGen as in the Procgen paper)"
    )
    eval_test_levels: bool = arg(False, "ProcGen: also evaluate on held-out levels (outside the training levels)")
    num_levels: int = arg(0, "ProcGen: number of training levels (0 = unlimited)")
    start_level: int = arg(0, "ProcGen: first training level seed")
    distribution_mode: str = arg("easy", "ProcGen: easy, hard, extreme, memory or exploration")
    env_kwargs: dict[str, Any] = field(default_factory=dict, metadata={"nargs": "+", "metavar": "KEY=VALUE", "help":
        "keyword arguments of the env (gymnasium.make), typed by YAML: size=5 name=foo; or env_kwargs: {...} in the "
        "hyperparameter file (the command line wins key by key)"})
    env_wrapper: list[Any] = field(default_factory=list, metadata={"nargs": "+", "metavar": ("PATH", "KEY=VALUE"),
        "flag": "--wrapper", "help": "a Gymnasium wrapper (package.module.Class or package.module:Class) and its "
        "kwargs; repeat for several, the first wraps the env; or env_wrapper: [...] in the hyperparameter file"})
    policy: str = arg("auto", "auto (MlpPolicy, CnnPolicy for images, MultiInputPolicy for Dict observations), "
                              "MlpPolicy, CnnPolicy, MultiInputPolicy or impala (IMPALA CNN of the Procgen paper)")
    seed: int = arg(0, "base seed; member i uses seed + i")
    log_dir: str = arg("logs", "root folder of all runs")
    exp_name: str | None = arg(None, "run name: outputs go to <log-dir>/<exp-name> (default: derived from the run)")
    paired_eval: bool = arg(True, "evaluate every member of a generation on the same episodes (common random "
                                  "numbers: same start states, same ProcGen levels); --no-paired-eval: each its own")
    tb_writer: bool = arg(True, "write TensorBoard event files")
    threads: int = arg(0, "torch threads per rank (0 = cores on this node / ranks on this node, at least 1)")
    checkpoint_every: int = arg(1, "checkpoint every this many generations (0 = never)")
    resume: bool = arg(False, "continue <log-dir>/<exp-name> from its newest complete checkpoint")
    overwrite: bool = arg(False, "delete an existing <log-dir>/<exp-name> and start again")
    verbose: int = arg(1, "0 = quiet, 1 = one line per generation on rank 0")
    # -- learner: algorithm, normalisation, device (validated in _validate_learner) --------------
    algo: str = arg("ppo", "stable-baselines3 algorithm of every member: ppo, a2c (on-policy), sac, td3 "
                           "(continuous actions), dqn (discrete actions)")
    normalize_obs: bool = arg(False, "normalise observations with running statistics (VecNormalize); the "
                                     "statistics move with the weights and are checkpointed")
    normalize_reward: bool = arg(False, "scale rewards by a running estimate of the return's std (VecNormalize); "
                                        "scores stay raw returns")
    device: str = arg("cpu", "torch device: cpu, cuda, cuda:N, or auto (the node's GPUs round-robin by local "
                             "rank if it has any, else cpu)")
    horizon_env_steps: int = arg(0, "env steps per member of the run as first planned: the horizon of schedules "
                                    "such as DQN's exploration, kept when a resume adds generations (set by evo)",
                                 cli=False)

    def validate(self) -> None:
        positive = ("n_envs", "n_steps", "eval_episodes")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be > 0, got {getattr(self, name)}")
        if self.eval_envs < 0:
            raise ConfigError(f"--eval-envs must be >= 0 (0 = as many as --eval-episodes), got {self.eval_envs}")
        if self.threads < 0:
            raise ConfigError(f"--threads must be >= 0, got {self.threads}")
        if self.checkpoint_every < 0:
            raise ConfigError(f"--checkpoint-every must be >= 0, got {self.checkpoint_every}")
        self.check_seed(getattr(self, "num_agents", None) or 1)  # the world size may raise it: check_seed again
        if self.resume and self.overwrite:
            raise ConfigError("--resume and --overwrite cannot be used together")
        if self.exp_name is not None and (not self.exp_name or "/" in self.exp_name or self.exp_name in (".", "..")):
            raise ConfigError(f"--exp-name must be a plain folder name, got {self.exp_name!r}")
        from evo.envs import check_env, env_kwargs, wrappers, wrappers_value

        self.env_kwargs = env_kwargs(self.env_kwargs)
        self.env_wrapper = wrappers_value(wrappers(self.env_wrapper))
        check_env(self.env_spec())
        if self.eval_test_levels and not self.env_spec().is_procgen:
            raise ConfigError("--eval-test-levels needs a ProcGen game as --env-id")
        if self.eval_test_levels and self.num_levels == 0:
            raise ConfigError("--eval-test-levels needs --num-levels > 0 (held-out levels are those outside it)")
        self._validate_learner()

    def check_seed(self, members: int) -> None:
        """``--seed`` for a population of ``members``: member i seeds numpy, torch and SB3 with seed + i,
        and numpy takes seeds in [0, 2**32 - 1] only (the streams of evo.core.seeds take any seed >= 0)."""
        top = 2**32 - members
        if not 0 <= self.seed <= top:
            raise ConfigError(f"--seed must be in [0, {top}] for {members} member(s) (member i seeds numpy with "
                              f"seed + i, below 2**32), got {self.seed}")

    def _validate_learner(self) -> None:
        """--algo against the env's action space, --normalize-obs against image observations, --device."""
        from evo.learners.compat import check_algo_env
        from evo.learners.device import check_device_spec

        if self.env_spec().plain:  # else evo.envs.verify_env checks the built env (its module, kwargs, wrappers)
            check_algo_env(self.algo, self.env_spec())
        if self.normalize_obs and self.env_spec().is_procgen:
            raise ConfigError("--normalize-obs is for vector observations; ProcGen images are only scaled to [0, 1]")
        check_device_spec(self.device)

    def apply_env_settings(self, settings: Mapping[str, Any]) -> None:
        """Take ``env_kwargs`` / ``env_wrapper`` of a hyperparameter file (``evo.envs.split_env_settings``):
        the command line's kwargs win key by key, its wrappers (if any) replace the file's."""
        from evo.envs import check_env, merge_env_settings

        self.env_kwargs, self.env_wrapper = merge_env_settings(self.env_kwargs, self.env_wrapper, settings)
        check_env(self.env_spec())

    def env_spec(self) -> Any:
        from evo.envs import EnvSpec

        return EnvSpec.from_config(vars(self))

    @property
    def rollout_size(self) -> int:
        return self.n_steps * self.n_envs

    @property
    def deterministic_eval(self) -> bool:
        if self.eval_deterministic is not None:
            return self.eval_deterministic
        return not self.env_spec().is_procgen

    @property
    def run_dir(self) -> Path:
        assert self.exp_name is not None
        return Path(self.log_dir) / self.exp_name

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class PBTConfig(CommonConfig):
    """A population-based training run (one member per MPI rank)."""

    strategy: str = arg("wta", "selection strategy (set by the entry point)", cli=False)
    num_agents: int | None = arg(None, "population size, at least the MPI world size: each rank hosts ceil(N/world) or "
                                              "floor(N/world) members and trains them in turn (default: world size)")
    generations: int = arg(10, "number of generations (train, evaluate, select, explore)")
    steps_per_generation: int = arg(4096, "env steps each member trains per generation (multiple of the rollout)")
    quantile: float = arg(0.25, "truncation: fraction of members replaced each generation, in (0, 0.5]")
    hyperparams: str | None = arg(None, "YAML file overriding the search space (bounds, init, explore), or an RL Zoo "
                                        "hyperparameter file (its entry for --env-id is the population's start)")
    select_on: str = arg("train", "score used for selection: train (training levels) or test (held-out levels)")
    exchange: bool = arg(True, "move weights between members (--no-exchange: train the same members without PBT)")
    explore: str = arg("perturb", "explore step of the receivers: perturb (x0.8/x1.2 or resample) or pb2 "
                                  "(PB2's GP bandit, Parker-Holder et al. 2020)")
    max_cost_ratio: float = arg(2.5, "explore never leaves a member with more gradient updates per env step than "
                                      "this many times the population's median (evo.core.cost; 0 = no cap, "
                                      "else >= 1)")
    async_mode: bool = arg(False, "asynchronous PBT: no generation barrier; each member trains, evaluates, publishes "
                                  "and copies a donor on its own schedule, comparing scores on one evaluation set",
                           flag="--async")
    rule: str | None = arg(None, "selection rule (default: the entry point's: wta for evo.wta, truncation for "
                                 "evo.truncation and evo.truncation_collective)")
    transport: str | None = arg(None, "how members' states move: broadcast, p2p or subcomm (synchronous), hub "
                                      "(--async; its default); default: the entry point's (evo.wta broadcast, "
                                      "evo.truncation p2p, evo.truncation_collective subcomm)")
    watchdog_s: float = arg(0.0, "end the job (exit 76: requeue and resume) when a rank completes no generation "
                                 "(interval) for this many seconds, naming the ranks it waits for; 0 = max(600, 5x "
                                 "the slowest so far), negative = off")

    def validate(self) -> None:
        super().validate()
        from evo.core.rules import PRESETS
        from evo.core.selection import validate_quantile

        if self.strategy not in (*PRESETS, "baseline"):
            raise ConfigError(f"unknown strategy {self.strategy!r}")
        if self.generations <= 0:
            raise ConfigError(f"--generations must be > 0, got {self.generations}")
        if self.steps_per_generation <= 0:
            raise ConfigError(f"--steps-per-generation must be > 0, got {self.steps_per_generation}")
        from evo.core.algos import algo_spec, generation_unit

        unit = generation_unit(self.algo, self.n_steps, self.n_envs)
        if self.steps_per_generation % unit != 0:
            what = (f"the rollout n_steps * n_envs = {self.n_steps} * {self.n_envs} = {unit}"
                    if algo_spec(self.algo).on_policy else f"--n-envs ({unit}) for --algo {self.algo}")
            raise ConfigError(f"--steps-per-generation ({self.steps_per_generation}) must be a multiple of {what}")
        if self.num_agents is not None and self.num_agents <= 0:
            raise ConfigError(f"--num-agents must be > 0, got {self.num_agents}")
        validate_quantile(self.quantile)
        if self.select_on not in ("train", "test"):
            raise ConfigError(f"--select-on must be train or test, got {self.select_on!r}")
        if self.select_on == "test" and not self.eval_test_levels:
            raise ConfigError("--select-on test needs --eval-test-levels")
        if self.explore not in ("perturb", "pb2"):
            raise ConfigError(f"--explore must be perturb or pb2, got {self.explore!r}")
        if self.max_cost_ratio != 0 and not self.max_cost_ratio >= 1:
            raise ConfigError(f"--max-cost-ratio must be 0 (no cap) or >= 1, got {self.max_cost_ratio}")
        self._resolve_rule_and_transport()

    def _resolve_rule_and_transport(self) -> None:
        """``rule`` and ``transport`` from the entry point's preset where not given, and checked
        against the schedule (the registries' names are argparse choices)."""
        from evo.core.rules import PRESETS, get_rule

        if self.strategy == "baseline":
            if self.async_mode:
                raise ConfigError("--async is for PBT populations; a baseline's members never exchange")
            return
        preset = PRESETS[self.strategy]
        self.rule = get_rule(self.rule or preset.rule).name
        if self.transport is None and self.async_mode and preset.transport == "subcomm":
            raise ConfigError(f"--async: evo.{self.strategy} means the collective sub-communicator transport, "
                              f"which needs every rank in every exchange; --async has no barrier "
                              f"(use evo.truncation --async)")
        if self.transport is None:
            self.transport = "hub" if self.async_mode else (preset.transport or get_rule(self.rule).default_transport)
        if self.async_mode and self.transport != "hub":
            raise ConfigError(f"--async moves snapshots through the hub (--transport hub): --transport "
                              f"{self.transport} needs every rank in every exchange, and --async has no barrier "
                              f"to gather them")
        if not self.async_mode and self.transport == "hub":
            raise ConfigError("--transport hub is the asynchronous hub: use it with --async")

    def default_exp_name(self) -> str:
        return f"{self.strategy}-{self.env_spec().name}-s{self.seed}"  # module:Name-v0 -> Name-v0 (no colon)


@dataclass
class BaselineConfig(PBTConfig):
    """A single-agent PPO run with the member code of PBT (K independent seeds under mpiexec -n K).

    Internally the same loop as PBT with strategy ``baseline``: a "generation" is one evaluation
    interval, and nothing moves between members.
    """

    strategy: str = arg("baseline", "", cli=False)
    param_name: str = arg("auto", "hyperparameter set: baseline (Procgen paper), baseline3 (SB3 defaults), "
                                  "cartpole, or one from --param-file (auto: baseline for ProcGen, cartpole "
                                  "for CartPole-v1, else baseline3)")
    param_file: str | None = arg(None, "YAML file of named hyperparameter sets (default: the one shipped with evo)")
    num_timesteps: int = arg(100_000, "env steps per agent")
    eval_every: int = arg(0, "evaluate every this many env steps, rounded up to whole rollouts "
                             "(0 = 10 evaluations per run)")
    save_every: int = arg(5, "also save an SB3 model zip every this many evaluations (0 = final only)")
    generations: int = arg(0, "", cli=False)
    steps_per_generation: int = arg(0, "", cli=False)
    quantile: float = arg(0.25, "", cli=False)
    hyperparams: str | None = arg(None, "an RL Zoo hyperparameter file (hyperparams/<algo>.yml): its entry for "
                                        "--env-id is the set (instead of --param-name)")
    select_on: str = arg("train", "", cli=False)
    exchange: bool = arg(False, "", cli=False)
    explore: str = arg("perturb", "", cli=False)
    max_cost_ratio: float = arg(0.0, "", cli=False)
    async_mode: bool = arg(False, "", cli=False)
    set_hparams: dict[str, Any] | None = field(default=None, metadata={"help": "", "cli": False})

    def resolve(self, explicit: set[str], sets_text: str | None = None) -> None:
        """Apply the named set (flags given on the command line win) and derive the schedule.

        ``sets_text``: the text of ``--param-file`` or ``--hyperparams`` (RL Zoo), read on one rank and broadcast."""
        from evo.core.space import check_algo, generation_unit
        from evo.hparam_sets import RUN_KEYS, default_set_name, get_set, split_set
        from evo.zoo import baseline_zoo_set

        check_algo(self.algo)
        zoo_set = baseline_zoo_set(self, explicit, sets_text)  # an RL Zoo file: its entry for --env-id
        name = self.param_name
        if name == "auto" and zoo_set is None:
            from evo.envs import procgen_game

            name = default_set_name(self.algo, self.env_id, procgen_game(self.env_id) is not None)
            self.param_name = name
        from evo.envs import split_env_settings

        env_settings, values = split_env_settings(zoo_set or get_set(name, self.param_file, sets_text))
        self.apply_env_settings(env_settings)
        for key in RUN_KEYS:
            if key in values and key not in explicit:
                setattr(self, key, values[key])
        if self.n_envs <= 0 or self.n_steps <= 0:
            raise ConfigError("--n-envs and --n-steps must be > 0")
        hp, _ = split_set(values, self.rollout_size, self.algo)
        self.set_hparams = hp
        if self.num_timesteps <= 0:
            raise ConfigError(f"--num-timesteps must be > 0, got {self.num_timesteps}")
        if self.eval_every < 0 or self.save_every < 0:
            raise ConfigError("--eval-every and --save-every must be >= 0")
        every = self.eval_every or max(self.num_timesteps // 10, 1)
        unit = generation_unit(self.algo, self.n_steps, self.n_envs)
        self.steps_per_generation = -(-every // unit) * unit
        self.generations = -(-self.num_timesteps // self.steps_per_generation)

    def default_exp_name(self) -> str:
        return f"baseline-{self.param_name}-s{self.seed}"

    @property
    def run_dir(self) -> Path:
        assert self.exp_name is not None
        return Path(self.log_dir) / self.exp_name
