"""evo.reference: the random-policy score a run's evaluation env gives uniformly random actions."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium import spaces

from evo.errors import ConfigError
from evo.reference import RandomActor, random_policy_score, sample_actions

CARTPOLE = {"env_id": "CartPole-v1", "num_levels": 0, "start_level": 0, "distribution_mode": "easy", "n_envs": 4,
            "eval_episodes": 10, "seed": 0}


@pytest.mark.timeout(120)
def test_same_seed_same_score_other_seed_other_score() -> None:
    a = random_policy_score(CARTPOLE, 20, 3)
    assert random_policy_score(CARTPOLE, 20, 3) == a
    assert random_policy_score(dict(CARTPOLE), 20, 3) == a
    assert random_policy_score(CARTPOLE, 20, 4) != a  # 20 random CartPole episodes never tie by chance


@pytest.mark.timeout(120)
def test_cartpole_random_policy_is_near_its_known_return() -> None:
    # Uniformly random actions keep CartPole-v1 up for about 22 steps on average (std about 12).
    score = random_policy_score(CARTPOLE, 200, 0)
    assert 18.0 < score < 26.0, score
    # the same episodes and actions whatever the envs side by side (evo.learners.evaluation.play)
    assert random_policy_score({**CARTPOLE, "eval_envs": 1}, 200, 0) == score
    assert random_policy_score({**CARTPOLE, "eval_envs": 7, "n_envs": 1}, 200, 0) == score


@pytest.mark.timeout(120)
def test_reference_plays_the_members_episodes() -> None:
    """The floor is measured on generation 0's paired evaluation set: episode j starts where a
    member's episode j starts, and its actions are episode j's own."""
    from evo.core import seeds
    from evo.envs import EnvSpec
    from evo.learners.envs import make_eval_envs
    from evo.learners.evaluation import play

    envs = make_eval_envs(EnvSpec.from_config(CARTPOLE))
    actor = RandomActor(3, envs.action_space)
    returns = play(envs, actor, 12, seeds.eval_seed(3, 0, 0, paired=True))
    assert float(np.mean(returns)) == random_policy_score(CARTPOLE, 12, 3)
    alone = play(envs, actor, 1, seeds.eval_seed(3, 0, 0, paired=True))  # episode 0 on its own
    assert alone[0] == returns[0]
    envs.close()


def test_sample_actions_stay_in_their_space() -> None:
    rng = np.random.default_rng(0)
    d = sample_actions(spaces.Discrete(3, start=1), rng, 500)
    assert d.shape == (500,) and set(d.tolist()) == {1, 2, 3}
    box = spaces.Box(low=np.array([-2.0, 0.0], np.float32), high=np.array([2.0, 0.5], np.float32), dtype=np.float32)
    b = sample_actions(box, rng, 500)
    assert b.shape == (500, 2) and b.dtype == np.float32
    assert np.all(b >= box.low) and np.all(b <= box.high) and b[:, 0].std() > 0.5
    md = sample_actions(spaces.MultiDiscrete([2, 5]), rng, 400)
    assert md.shape == (400, 2) and set(md[:, 0].tolist()) == {0, 1} and set(md[:, 1].tolist()) == set(range(5))


def test_bad_episode_count_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        random_policy_score(CARTPOLE, 0, 0)


@pytest.mark.timeout(120)
def test_reference_plays_the_runs_own_env_kwargs_and_wrappers(monkeypatch: pytest.MonkeyPatch) -> None:
    """A custom env named as module:id, with its kwargs and wrapper chain, as config.json holds them:
    with a StepPenalty of p every random episode returns 1{goal} - p * length, so on the same episodes
    (same seeds, same actions) the floor drops by p times the mean length, at least p."""
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "examples" / "custom_env"))
    reach = {"env_id": "evo_reach.envs:Reach-v0", "env_kwargs": {"size": 5}, "n_envs": 2, "seed": 0}
    bare = random_policy_score(reach, 30, 1)
    penalised = random_policy_score({**reach, "env_wrapper": [{"evo_reach.wrappers:StepPenalty": {"penalty": 0.5}}]},
                                    30, 1)
    longer = random_policy_score({**reach, "env_kwargs": {"size": 9},
                                  "env_wrapper": [{"evo_reach.wrappers:StepPenalty": {"penalty": 0.5}}]}, 30, 1)
    assert 0.0 < bare < 1.0 and penalised < bare - 0.5  # every episode lasts at least one step
    assert longer < penalised - 1.0  # the kwargs reach the env: random walks on a longer line take longer
    with pytest.raises(ConfigError, match="cannot import 'nowhere_pkg'"):
        random_policy_score({**reach, "env_id": "nowhere_pkg:Reach-v0"}, 4, 0)
