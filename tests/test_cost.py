"""A member's cost (gradient updates per env step, evo.core.cost): the figure is what SB3 really runs,
the replay ratio reaches SB3's train(), and explore never gives a receiver more than the cap
(``--max-cost-ratio`` x the population's median), in both schedules' decide."""

from __future__ import annotations

import itertools
import math
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from evo.cmdline import parse
from evo.config import PBTConfig
from evo.core.cost import CAP_OP, CostLimit, cost, cost_limit, replay_schedule
from evo.core.decide import decide, explore_from
from evo.core.space import default_space, parse_space, space_from_mapping
from evo.errors import ConfigError

ALL = ("ppo", "a2c", "sac", "td3", "dqn")
N_ENVS, N_STEPS = 2, 128  # rollout 256


# -- the figure ------------------------------------------------------------------------------------
@pytest.mark.parametrize("ratio,freq,n_envs,expected", [
    (1.0, 1, 1, (1, 1)), (4.0, 1, 1, (1, 4)), (2.5, 1, 2, (1, 5)), (1.5, 1, 2, (1, 3)),
    (0.25, 1, 1, (4, 1)), (0.25, 1, 2, (2, 1)), (0.3, 1, 1, (4, 1)), (0.25, 4, 1, (4, 1)), (1.0, 4, 4, (4, 16)),
    (0.125, 4, 1, (8, 1)), (1.9, 1, 1, (1, 1)),
])
def test_replay_schedule(ratio: float, freq: int, n_envs: int, expected: tuple[int, int]) -> None:
    assert replay_schedule(ratio, freq, n_envs) == expected


def test_replay_schedule_never_exceeds_the_ratio_and_never_decreases() -> None:
    for freq in (1, 3, 4):
        for n_envs in (1, 2, 4, 8):
            ratios = np.geomspace(0.05, 8, 400)
            runs = []
            for r in ratios:
                t, g = replay_schedule(float(r), freq, n_envs)
                assert t >= freq and g >= 1
                runs.append(g / (t * n_envs))
                assert runs[-1] <= r * (1 + 1e-12)
            assert all(b >= a for a, b in itertools.pairwise(runs))
            exact = [k / (freq * n_envs) for k in range(1, 4 * freq * n_envs)]  # representable: exactly that
            for r in exact:
                t, g = replay_schedule(r, freq, n_envs)
                assert g / (t * n_envs) == pytest.approx(r)


def test_cost_figures() -> None:
    # PPO: n_epochs x minibatches per epoch (the last one partial) per env step of the rollout
    assert cost("ppo", {"n_epochs": 10, "batch_size": 64}, 2, 128) == 10 * 4 / 256
    assert cost("ppo", {"n_epochs": 3, "batch_size": 100}, 2, 128) == 3 * 3 / 256
    assert cost("ppo", {}, 2, 128) == 10 * 4 / 256  # SB3's defaults: 10 epochs of 64
    # A2C: one update per rollout, whatever its hyperparameters
    assert cost("a2c", {"learning_rate": 1e-3}, 4, 5) == 1 / 20
    # off-policy: gradient_steps per train_freq steps of every env; -1 = one per env step
    assert cost("sac", {"train_freq": 4, "gradient_steps": 2}, 2, 1) == 2 / 8
    assert cost("dqn", {}, 1, 1) == 1 / 4  # SB3's DQN: 1 update every 4 steps
    assert cost("td3", {"train_freq": 200, "gradient_steps": -1}, 1, 1) == 1.0
    assert cost("sac", {"replay_ratio": 1.5, "train_freq": 1, "gradient_steps": 99}, 2, 1) == 1.5
    assert cost("sac", {"replay_ratio": 0.3}, 1, 1) == 0.25  # what SB3 runs: 1 update every 4 steps


# -- the cap ---------------------------------------------------------------------------------------
def evolve(algo: str, limit: CostLimit | None, space: Any = None, generations: int = 40,
           members: int = 6, seed: int = 0) -> tuple[list[Any], list[list[dict[str, Any]]]]:
    """A population explored for ``generations`` under ``limit`` (random scores, truncation): every
    decision, and the population its receiver joined (receivers of a round take their places in turn)."""
    space = space or default_space(N_ENVS * N_STEPS, algo)
    rng = np.random.default_rng(seed)
    pop = [space.sample(rng) for _ in range(members)]
    made: list[Any] = []
    joined = []
    for gen in range(generations):
        decisions = decide("truncation", gen, list(rng.normal(size=members)), pop, space, 0.34, seed, limit=limit)
        pop = list(pop)
        for d in decisions:
            pop[d.receiver] = d.hparams_after
            made.append(d)
            joined.append(list(pop))
    return made, joined


@pytest.mark.parametrize("algo", ALL)
@pytest.mark.parametrize("ratio", [1.0, 1.5, 2.5, 4.0])
def test_explore_never_exceeds_the_cap(algo: str, ratio: float) -> None:
    limit = CostLimit(algo, N_ENVS, N_STEPS, ratio)
    decisions, pops = evolve(algo, limit, seed=int(ratio * 10))
    assert decisions
    for d, pop in zip(decisions, pops, strict=True):
        assert limit.cost(d.hparams_after) <= limit.cap(pop) * (1 + 1e-12), (d.hparams_after, limit.cap(pop))


@pytest.mark.parametrize("algo", ["ppo", "sac", "td3", "dqn"])
def test_no_member_exceeds_the_cap_after_the_first_exploit(algo: str) -> None:
    # four members, one receiver a round: from generation 1 on, no member costs more than 2.5 x the median
    limit = CostLimit(algo, N_ENVS, N_STEPS, 2.5)
    for seed in range(30):
        _, pops = evolve(algo, limit, generations=10, members=4, seed=seed)
        assert all(limit.holds(pop) for pop in pops), seed


@pytest.mark.parametrize("algo", ["ppo", "sac", "dqn"])
def test_the_cap_binds_and_moves_only_cost_driving_parameters(algo: str) -> None:
    limit = CostLimit(algo, N_ENVS, N_STEPS, 1.5)
    capped, _ = evolve(algo, limit)
    free, pops = evolve(algo, None)
    broken = [i for i, pop in enumerate(pops) if not limit.holds(pop)]
    assert broken, "without a cap, explore must break the bound at times (else this test proves nothing)"
    # up to the first explore that broke it: the same decisions; then only the cost drivers moved
    first = broken[0]
    assert capped[:first] == free[:first]
    a, b = capped[first], free[first]
    moved = {k for k in a.hparams_after if a.hparams_after[k] != b.hparams_after[k]}
    drivers = {"ppo": {"n_epochs", "batch_size"}, "sac": {"replay_ratio"}, "dqn": {"replay_ratio"}}[algo]
    assert moved and moved <= drivers
    assert all(a.changes[k]["op"].endswith(CAP_OP) for k in moved)
    assert all(a.changes[k]["new"] == a.hparams_after[k] for k in moved)
    assert {k: v for k, v in a.hparams_after.items() if k not in moved} == \
        {k: v for k, v in b.hparams_after.items() if k not in moved}  # the cap draws no random number


def test_ppo_lowers_epochs_first_then_raises_the_batch() -> None:
    space = default_space(256, "ppo")
    limit = CostLimit("ppo", 2, 128, 2.0)
    cheap = {"n_epochs": 5, "batch_size": 256}  # 5 / 256: the median of the population joined below
    donor = {**space.sample(np.random.default_rng(0)), "n_epochs": 20, "batch_size": 64}
    new, changes = limit.clamp(donor, space, [cheap, cheap, cheap], {})
    assert (new["n_epochs"], new["batch_size"]) == (2, 64) and changes["n_epochs"]["op"] == CAP_OP
    one = {"n_epochs": 1, "batch_size": 256}
    new, _ = limit.clamp({**donor, "batch_size": 32}, space, [one, one, one], {})
    assert (new["n_epochs"], new["batch_size"]) == (1, 128)  # 1 epoch of 32 is 8 updates: the batch must grow
    assert limit.holds([one, one, one, new])


def test_a_receiver_whose_drop_leaves_another_member_above_the_cap_is_raised() -> None:
    space = default_space(None, "sac")
    limit = CostLimit("sac", 4, 1, 2.5)
    others = [{"replay_ratio": r} for r in (1.0, 1.0, 3.0)]
    explored = {**space.sample(np.random.default_rng(0)), "replay_ratio": 0.3}  # median 0.5 + 1 -> 3 > 2.5 x 0.65
    assert not limit.holds([*others, explored])
    new, changes = limit.clamp(explored, space, others, {"replay_ratio": {"old": 1.0, "new": 0.3, "op": "resample"}})
    assert limit.holds([*others, new]) and new["replay_ratio"] == 0.25 * 6  # the least that restores it
    assert changes["replay_ratio"] == {"old": 1.0, "new": 1.5, "op": "resample+cap"}
    # no value of the space restores it: left as explored
    far = [{"replay_ratio": r} for r in (0.25, 0.25, 0.25, 4.0)]  # the median stays 0.25 whatever it does
    assert limit.clamp(explored, space, far, {})[0] == explored


def test_searched_train_freq_and_gradient_steps_are_capped_too() -> None:
    space = parse_space("gradient_steps: {type: int, scale: log, low: 1, high: 64, init: [1, 8]}\n"
                        "train_freq: {type: int, scale: log, low: 1, high: 64, init: [1, 8]}\n", algo="sac")
    assert "replay_ratio" not in space.params and space.constants["replay_ratio"] == "none"
    limit = CostLimit("sac", 1, 1, 1.5)
    decisions, pops = evolve("sac", limit, space=space, generations=60)
    assert any(CAP_OP in str(c["op"]) for d in decisions for c in d.changes.values())
    for d, pop in zip(decisions, pops, strict=True):
        assert limit.cost(d.hparams_after) <= limit.cap(pop) * (1 + 1e-12)


def test_no_limit_or_zero_ratio_changes_nothing() -> None:
    space = default_space(256, "ppo")
    pop = [space.sample(np.random.default_rng(i)) for i in range(4)]
    plain = explore_from(pop[0], space, 3, 1, 2)
    assert explore_from(pop[0], space, 3, 1, 2, limit=None, population=pop) == plain
    assert explore_from(pop[0], space, 3, 1, 2, limit=CostLimit("ppo", 2, 128, 0.0), population=pop) == plain
    assert cost_limit(SimpleNamespace(algo="ppo", n_envs=2, n_steps=128, max_cost_ratio=0)) is None
    assert cost_limit(SimpleNamespace(algo="sac", n_envs=2, n_steps=8, max_cost_ratio=3)) == CostLimit("sac", 2, 8, 3)


def test_the_async_coordinator_caps_explore_against_every_members_latest_hparams() -> None:
    from evo.loop.coordinator import Board, Coordinator, Entry

    space = default_space(None, "sac")
    cfg = SimpleNamespace(seed=5, explore="perturb", algo="sac", n_envs=1, n_steps=1, max_cost_ratio=1.0,
                          generations=10, select_on="train")
    r = SimpleNamespace(cfg=cfg, space=space, pb2_history=[], pb2_start={}, n=4)
    board = Board(4)
    pop = [{**space.sample(np.random.default_rng(i)), "replay_ratio": x} for i, x in enumerate((0.5, 0.5, 1, 4))]
    for i, hp in enumerate(pop):
        board.add(i, Entry(0.0, None, 0.0, 100, 2, 2, hp))
    coordinator = Coordinator(r, board, {}, 0)  # type: ignore[arg-type]
    reply = coordinator({"kind": "explore", "member": 0, "interval": 2, "donor_hparams": pop[3],
                         "donor_selection": 1.0})
    limit = CostLimit("sac", 1, 1, 1.0)
    joined = [reply["hparams"], *pop[1:]]
    assert limit.cost(reply["hparams"]) <= limit.cap(joined)
    assert reply["changes"]["replay_ratio"]["op"].endswith(CAP_OP)
    assert reply["hparams"] == explore_from(pop[3], space, 5, 2, 0, limit=limit, population=pop)[0]


# -- the option and the space ----------------------------------------------------------------------
def test_max_cost_ratio_option() -> None:
    cfg = parse(PBTConfig, ["--max-cost-ratio", "2.5"], "evo", "")
    assert cfg.max_cost_ratio == 2.5
    assert parse(PBTConfig, [], "evo", "").max_cost_ratio == 2.5
    for bad in ("0.5", "-1"):
        with pytest.raises(ConfigError, match="--max-cost-ratio must be 0") as exc:
            parse(PBTConfig, ["--max-cost-ratio", bad], "evo", "").validate()
        assert "\n" not in str(exc.value)


@pytest.mark.parametrize("algo", ["sac", "td3", "dqn"])
def test_off_policy_defaults_search_the_replay_ratio(algo: str) -> None:
    space = default_space(None, algo)
    p = space.params["replay_ratio"]
    assert p.scale == "log" and p.low is not None and p.high is not None and p.high / p.low <= 16
    assert not {"train_freq", "gradient_steps"} & set(space.params)
    # naming gradient_steps searches SB3's pair instead; naming both is a one-line error
    fixed = space_from_mapping({"gradient_steps": 2}, space, algo)
    assert fixed.constants == {"gradient_steps": 2, "replay_ratio": "none"}
    with pytest.raises(ConfigError, match="gradient_steps is derived from replay_ratio"):
        space_from_mapping({"gradient_steps": 2, "replay_ratio": {"low": 0.5, "high": 2}}, space, algo)
    kept = space_from_mapping({"gradient_steps": 2, "replay_ratio": "none"}, space, algo)
    assert kept.constants["replay_ratio"] == "none"


def test_default_spaces_start_where_tuned_settings_are() -> None:
    # the RL Zoo's tuned Pendulum-v1 PPO / A2C use gamma 0.9, CartPole-v1 PPO gae_lambda 0.8
    for algo in ("ppo", "a2c"):
        space = default_space(None, algo)
        assert space.params["gamma"].init_range()[0] == pytest.approx(0.9)
        assert space.params["gae_lambda"].init_range()[0] == pytest.approx(0.8)


# -- the replay ratio reaches SB3's train() ---------------------------------------------------------
@pytest.mark.parametrize("algo,env", [("sac", "Pendulum-v1"), ("td3", "Pendulum-v1"), ("dqn", "CartPole-v1")])
@pytest.mark.parametrize("ratio", [0.125, 0.25, 1.5, 3.0])
def test_the_replay_ratio_is_the_number_of_updates_sb3_runs(algo: str, env: str, ratio: float) -> None:
    from evo.config import CommonConfig
    from evo.learners import make_learner

    cfg = CommonConfig(env_id=env, n_envs=2, n_steps=16, eval_episodes=1, algo=algo)
    m = make_learner(cfg, {"net_arch": [8], "buffer_size": 2000, "batch_size": 8, "learning_starts": 0,
                           "replay_ratio": ratio})
    freq, steps = replay_schedule(ratio, int(m.spec.defaults["train_freq"]), 2)
    model: Any = m.model
    assert (model.train_freq.frequency, model.gradient_steps) == (freq, steps)
    assert m.hparams["gradient_steps"] == steps and m.live_hparams()["replay_ratio"] == ratio
    m.reseed(0)
    m.train(64)  # 32 VecEnv steps, a multiple of every period above
    assert m.model._n_updates == 64 * cost(algo, m.hparams, 2, 16)
    assert cost(algo, m.hparams, 2, 16) == pytest.approx(ratio)  # each ratio here is exactly representable
    # an explored replay ratio takes effect from the next generation
    m.apply_hparams({**m.hparams, "replay_ratio": 2 * ratio})
    n0 = m.model._n_updates
    m.train(64)
    assert m.model._n_updates - n0 == 64 * 2 * ratio
    m.close()


def test_replay_ratio_none_leaves_sb3s_pair() -> None:
    from evo.config import CommonConfig
    from evo.learners import make_learner

    cfg = CommonConfig(env_id="Pendulum-v1", n_envs=1, n_steps=16, eval_episodes=1, algo="sac")
    m = make_learner(cfg, {"net_arch": [8], "buffer_size": 2000, "batch_size": 8, "learning_starts": 0,
                           "train_freq": 4, "gradient_steps": 3})
    assert m.hparams["replay_ratio"] == "none"
    m.reseed(0)
    m.train(16)
    assert m.model._n_updates == 4 * 3 and cost("sac", m.hparams, 1, 16) == 0.75
    assert math.isfinite(cost("sac", m.live_hparams(), 1, 16))
    m.close()


# -- the benchmark ----------------------------------------------------------------------------------
@pytest.mark.mpi
@pytest.mark.timeout(150)
def test_cost_benchmark_prints_the_worst_ratio_of_the_members_own_times(tmp_path: Any) -> None:
    import re
    import statistics

    from conftest import run_module

    from evo.records import read_csv

    res = run_module("evo.bench", "cost", "--algo", "dqn", "--generations", "3", "--steps-per-generation", "64",
                     "--out", str(tmp_path), "--timeout", "120", timeout=140)
    assert res.returncode == 0, res.stderr[-3000:]
    last = res.stdout.strip().splitlines()[-1]
    match = re.fullmatch(r"max/median member training time per generation: (\S+)", last)
    assert match, last
    members = read_csv(tmp_path / "cost-dqn" / "members.csv")
    assert len(members) == 4 * 3
    ratios = {}
    for gen in (1, 2):  # generation 0 is warm-up
        times = [float(m["time_train_s"]) for m in members if int(m["generation"]) == gen]
        ratios[gen] = max(times) / statistics.median(times)
    assert float(match.group(1)) == pytest.approx(max(ratios.values()), rel=1e-2)
    rows = read_csv(tmp_path / "cost_dqn.csv")
    assert [int(r["generation"]) for r in rows] == [0, 1, 2]
    for r in rows:
        hps = [{k[3:]: v for k, v in m.items() if k.startswith("hp_")} for m in members
               if int(m["generation"]) == int(r["generation"])]
        costs = [cost("dqn", {k: float(v) for k, v in hp.items() if k in ("replay_ratio", "train_freq")}, 1, 128)
                 for hp in hps]
        assert float(r["cost_max"]) == pytest.approx(max(costs))
        assert float(r["cost_ratio"]) <= 2.5 + 1e-9 or int(r["generation"]) == 0
