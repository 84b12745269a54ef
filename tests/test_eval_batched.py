"""Batched, paired evaluation (evo.learners.evaluation): the episodes of a set played side by side give
exactly the returns they give played one at a time, for every kind of member."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import TINY, run_mpi
from gymnasium import spaces

from evo.cmdline import parse
from evo.config import PBTConfig
from evo.errors import ConfigError
from evo.learners import make_learner
from evo.learners.envs import make_eval_envs
from evo.learners.evaluation import MAX_ROWS, Episode, episode_level, forward_rows, play, start_seed


def member(algo: str = "ppo", env_id: str = "CartPole-v1", train: int = 256, **kw: Any) -> Any:
    cfg = PBTConfig(env_id=env_id, n_envs=2, n_steps=64, eval_episodes=6, algo=algo, tb_writer=False, **kw)
    m = make_learner(cfg, {}, 0)
    if train:
        m.train(train)
    return m


def assert_serial_equals_batched(m: Any, n: int, deterministic: bool, seed: int, test_levels: bool = False) -> None:
    serial = m.episode_returns(n, deterministic, seed, test_levels, slots=1)
    assert serial is not None and not np.isnan(serial).any()
    for slots in (None, 2, n):  # None: --eval-envs (0: all at once)
        batched = m.episode_returns(n, deterministic, seed, test_levels, slots=slots)
        assert np.array_equal(serial, batched), (slots, serial, batched)
    assert m.evaluate(n, deterministic, seed, test_levels) == float(np.mean(serial))


# -- the episode runner, on a fake env ----------------------------------------------------------
class Lengths:
    """Fake evaluation envs: episode ``j`` lasts ``j % 3 + 1`` steps, reward ``j + 1`` per step. Fails
    if a slot is stepped when no episode runs in it (a finished episode must stop costing)."""

    observation_space = spaces.Box(-1.0, 1.0, (2,))
    action_space = spaces.Discrete(2)

    def __init__(self) -> None:
        self.left: dict[int, int] = {}
        self.episode: dict[int, int] = {}
        self.steps = 0
        self.started: list[int] = []

    def start(self, slot: int, seed: int, episode: int) -> Any:
        self.left[slot], self.episode[slot] = episode % 3 + 1, episode
        self.started.append(episode)
        return np.full(2, episode, np.float32)

    def step(self, slot: int, action: Any) -> tuple[Any, float, bool]:
        assert self.left.get(slot, 0) > 0, f"slot {slot} stepped with no episode running"
        self.left[slot] -= 1
        self.steps += 1
        return np.zeros(2, np.float32), float(self.episode[slot] + 1), self.left[slot] == 0

    def close(self) -> None:
        pass


class Greedy:
    def rows(self, n_episodes: int) -> int:
        return 3

    def rng(self, seed: int, episode: int) -> np.random.Generator:
        return np.random.default_rng(episode)

    def act(self, episodes: list[Episode], rows: int) -> list[Any]:
        assert len({e.index // rows for e in episodes}) == 1  # one forward group per call
        return [0 for _ in episodes]


@pytest.mark.parametrize("slots", [1, 2, 3, 7, 0])
def test_every_episode_is_played_once_to_its_end_whatever_the_slots(slots: int) -> None:
    envs = Lengths()
    returns = play(envs, Greedy(), 7, seed=5, slots=slots)
    lengths = np.arange(7) % 3 + 1
    # unequal lengths bias nothing: every episode's own full return, in order
    assert returns.tolist() == (lengths * (np.arange(7) + 1)).astype(float).tolist()
    assert sorted(envs.started) == list(range(7)) and envs.steps == lengths.sum()


def test_forward_passes_have_one_shape() -> None:
    assert [forward_rows(n) for n in (1, 10, MAX_ROWS, MAX_ROWS + 1, 100)] == [1, 10, MAX_ROWS, MAX_ROWS, MAX_ROWS]
    with pytest.raises(ValueError):
        play(Lengths(), Greedy(), 0, seed=0)


# -- the evaluation set: episode j is fixed by (seed, j) ------------------------------------------
def test_gymnasium_episode_starts_from_its_own_seed() -> None:
    cfg = PBTConfig(env_id="CartPole-v1")
    envs = make_eval_envs(cfg.env_spec())
    import gymnasium as gym

    ref = gym.make("CartPole-v1")
    for slot, j in ((0, 3), (4, 3), (1, 0)):
        assert np.array_equal(envs.start(slot, 9, j), ref.reset(seed=start_seed(9, j))[0])
    assert start_seed(9, 3) != start_seed(9, 4) and start_seed(9, 3) != start_seed(10, 3)
    envs.close()


@pytest.mark.timeout(120)
def test_procgen_episode_plays_its_own_level_from_the_right_range() -> None:
    cfg = PBTConfig(env_id="bigfish", num_levels=50, start_level=100)
    train, test = make_eval_envs(cfg.env_spec()), make_eval_envs(cfg.env_spec(), test_levels=True)
    for j in range(6):
        train.start(j, 4, j)
        test.start(j, 4, j)
        level = int(train.envs[j].level_seeds()[0])
        assert level == episode_level(4, j, 100, 50) and 100 <= level < 150
        assert int(test.envs[j].level_seeds()[0]) >= 150  # held out: above the training range
    train.close()
    test.close()


# -- serial == batched, per kind of member -------------------------------------------------------
@pytest.mark.timeout(120)
@pytest.mark.parametrize("deterministic", [True, False])
def test_gymnasium_on_policy_member(deterministic: bool) -> None:
    assert_serial_equals_batched(member("ppo"), 6, deterministic, seed=123)


@pytest.mark.timeout(120)
def test_procgen_member_sampled_on_training_and_held_out_levels() -> None:
    m = member("ppo", "bigfish", train=0, num_levels=20, eval_test_levels=True, policy="impala")
    assert_serial_equals_batched(m, 3, False, seed=7)  # ProcGen evaluates with sampled actions by default
    assert_serial_equals_batched(m, 3, False, seed=7, test_levels=True)
    m.close()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("algo", ["sac", "td3"])
def test_off_policy_continuous_member(algo: str) -> None:
    m = member(algo, "Pendulum-v1", train=128)
    assert_serial_equals_batched(m, 4, False, seed=11)
    assert_serial_equals_batched(m, 4, True, seed=11)


@pytest.mark.timeout(120)
def test_gsde_member_samples_each_episodes_own_exploration_matrix() -> None:
    cfg = PBTConfig(env_id="Pendulum-v1", n_envs=2, n_steps=64, eval_episodes=4, algo="ppo", tb_writer=False)
    m = make_learner(cfg, {"use_sde": True}, 0)
    assert_serial_equals_batched(m, 4, False, seed=2)
    assert not np.array_equal(m.episode_returns(4, False, 2), m.episode_returns(4, True, 2))


@pytest.mark.timeout(120)
def test_dqn_epsilon_greedy() -> None:
    m = member("dqn", train=512)
    m.model.exploration_rate = 0.5  # the epsilon-greedy draws matter
    assert_serial_equals_batched(m, 6, False, seed=3)
    assert_serial_equals_batched(m, 6, True, seed=3)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("deterministic", [True, False])
def test_vecnormalize_member_uses_frozen_statistics(deterministic: bool) -> None:
    m = member("ppo", normalize_obs=True)
    stats = m.vecnorm.obs_rms.mean.copy(), m.vecnorm.obs_rms.count
    assert_serial_equals_batched(m, 6, deterministic, seed=3)
    assert np.array_equal(m.vecnorm.obs_rms.mean, stats[0]) and m.vecnorm.obs_rms.count == stats[1]
    assert np.array_equal(m.eval_env.obs_rms.mean, stats[0])  # a frozen copy of the training statistics
    before = m.episode_returns(6, deterministic, 3)
    m.vecnorm.obs_rms.mean += 5.0  # the normalisation reaches the policy's inputs
    assert not np.array_equal(m.episode_returns(6, deterministic, 3), before)


@pytest.mark.timeout(120)
def test_members_with_equal_weights_score_equal_episodes() -> None:
    a, b = member("ppo"), member("ppo", train=0)
    b.unpack(a.pack())
    one, other = a.episode_returns(6, False, 40), b.episode_returns(6, False, 40, slots=1)
    assert np.array_equal(one, other)  # paired, whatever each member's slots
    assert not np.array_equal(one, a.episode_returns(6, False, 41))


# -- the option ------------------------------------------------------------------------------------
def test_eval_envs_option() -> None:
    cfg = parse(PBTConfig, ["--eval-envs", "3"], "evo.test", "")
    assert cfg.eval_envs == 3 and PBTConfig().eval_envs == 0
    with pytest.raises(ConfigError, match="--eval-envs must be >= 0"):
        PBTConfig(eval_envs=-1, num_agents=2).validate()


@pytest.mark.mpi
@pytest.mark.timeout(240)
def test_a_run_scores_the_same_serial_and_batched(tmp_path: Path) -> None:
    """The whole loop: every score of a fixed-seed run with --eval-envs 1 equals the batched one's."""
    import csv

    args = [*TINY, "--generations", "2", "--num-agents", "2", "--seed", "5", "--no-tb-writer",
            "--log-dir", str(tmp_path)]
    scores = {}
    for width in ("1", "0"):
        res = run_mpi(2, "evo.truncation", *args, "--exp-name", f"w{width}", "--eval-envs", width, timeout=110)
        assert res.returncode == 0, res.stderr[-3000:]
        with open(tmp_path / f"w{width}" / "members.csv", newline="") as fh:
            scores[width] = [(r["generation"], r["member"], r["score"]) for r in csv.DictReader(fh)]
    assert scores["1"] == scores["0"] and len(scores["0"]) == 4
