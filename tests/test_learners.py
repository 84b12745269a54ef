"""Learners other than PPO (A2C, SAC, TD3, DQN) and what all learners share: the flat state moves and
checkpoints bit-exactly (target networks, every optimizer, normalisation statistics, counters), and
every hyperparameter reaches SB3's own ``train()``. (PPO's own take-effect tests: test_member.py.)"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
import torch
from stable_baselines3.common.utils import LinearSchedule

from evo.config import CommonConfig, PBTConfig
from evo.core.algos import algo_spec
from evo.core.space import default_space
from evo.learners import (
    LEARNERS,
    A2CLearner,
    DQNLearner,
    Learner,
    PPOLearner,
    SACLearner,
    TD3Learner,
    make_learner,
    planned_env_steps,
)
from evo.loop import checkpoints as ckpt

torch.set_num_threads(1)

ENV = {"ppo": "CartPole-v1", "a2c": "CartPole-v1", "dqn": "CartPole-v1", "sac": "Pendulum-v1", "td3": "Pendulum-v1"}
OFF = ("sac", "td3", "dqn")
ALL = ("ppo", "a2c", "sac", "td3", "dqn")
SMALL = {"net_arch": [16, 16]}
OFF_SMALL = {**SMALL, "buffer_size": 4000, "learning_starts": 16, "batch_size": 16}
GEN = 64  # env steps per "generation" in these tests (2 envs, so 32 VecEnv steps)


def cfg_for(algo: str, norm: bool = False, **kw: Any) -> CommonConfig:
    return CommonConfig(env_id=ENV[algo], n_envs=2, n_steps=16, eval_episodes=2, algo=algo, normalize_obs=norm,
                        normalize_reward=norm, **kw)


def make(algo: str, norm: bool = False, index: int = 0, cfg: CommonConfig | None = None, **hp: Any) -> Learner:
    base = dict(OFF_SMALL if algo in OFF else SMALL)
    if algo == "ppo":
        base["batch_size"] = 16
    return make_learner(cfg or cfg_for(algo, norm), {**base, **hp}, index=index)


def bits(a: np.ndarray) -> np.ndarray:
    return a.view(np.uint32)


def same_state(a: Learner, b: Learner) -> None:
    """Every SB3 component the flat state covers is equal, tensor by tensor (not just the buffer)."""
    for (ka, ta), (kb, tb) in zip(a.model.policy.state_dict().items(), b.model.policy.state_dict().items(),
                                  strict=True):
        assert ka == kb and torch.equal(ta, tb), ka  # includes target networks (critic_target, q_net_target...)
    for oa, ob in zip(a._optimizers(), b._optimizers(), strict=True):
        sa, sb = oa.state_dict()["state"], ob.state_dict()["state"]
        assert sa.keys() == sb.keys()
        for k in sa:
            for name, value in sa[k].items():
                assert torch.equal(value, sb[k][name]), (type(oa).__name__, k, name)
    assert a.model._n_updates == b.model._n_updates
    if isinstance(a, SACLearner):
        assert torch.equal(a.model.log_ent_coef, b.model.log_ent_coef)
    if isinstance(a, DQNLearner):
        assert a.model.exploration_rate == b.model.exploration_rate
        assert a.model._current_progress_remaining == b.model._current_progress_remaining
    if a.vecnorm is not None:
        assert b.vecnorm is not None
        for rms in ("obs_rms", "ret_rms"):
            ra, rb = getattr(a.vecnorm, rms), getattr(b.vecnorm, rms)
            assert np.array_equal(ra.mean, rb.mean) and np.array_equal(ra.var, rb.var) and ra.count == rb.count


# -- the factory ----------------------------------------------------------------------------------
@pytest.mark.parametrize("algo", ALL)
def test_member_builds_the_adapter_of_the_algorithm(algo: str) -> None:
    m = make(algo)
    assert type(m) is LEARNERS[algo] and isinstance(m, Learner) and m.algo == algo
    assert set(m.hparams) >= set(algo_spec(algo).live)  # every live hyperparameter has a value from the start
    m.close()


def test_factory_rejects_foreign_hyperparameters() -> None:
    from evo.errors import ConfigError

    with pytest.raises(ConfigError, match="clip_range"):
        make_learner(cfg_for("sac"), {"clip_range": 0.2})
    m = make("dqn")
    with pytest.raises(KeyError):
        m.apply_hparams({"gae_lambda": 0.9})
    with pytest.raises(ValueError, match="net_arch is fixed"):
        m.apply_hparams({"net_arch": [8]})
    m.apply_hparams({"net_arch": [16, 16]})  # the value it was built with is fine (a set's constants)


@pytest.mark.parametrize("algo", ALL)
def test_every_live_hyperparameter_is_applied_and_read_back(algo: str) -> None:
    m = make(algo)
    hp = default_space(32, algo).sample(np.random.default_rng(3))
    m.apply_hparams(hp)
    live = m.live_hparams()
    for name, value in hp.items():
        assert live[name] == pytest.approx(value), name
    assert set(algo_spec(algo).live) <= set(live)


# -- flat state: exploits and checkpoints ---------------------------------------------------------
@pytest.mark.parametrize("algo,norm", [(a, False) for a in ALL] + [(a, True) for a in ALL])
def test_pack_unpack_is_bit_exact_and_continues_identically(algo: str, norm: bool) -> None:
    a, b = make(algo, norm), make(algo, norm, learning_rate=5e-4)  # same index: same seed streams
    a.reseed(0)
    a.train(GEN)
    b.reseed(7)
    b.train(GEN)  # same clocks, different everything else
    sa = a.pack()
    assert sa.size == a.flat_size == b.flat_size
    assert not np.array_equal(bits(sa), bits(b.pack()))
    b.unpack(sa)
    b.apply_hparams(a.hparams)
    assert np.array_equal(bits(b.pack()), bits(sa))
    same_state(a, b)
    # An exploit moves no env state and no replay buffer: give b a's, then both continue identically.
    b.load_env_state(a.env_state())
    if algo in OFF:
        b.model.replay_buffer = copy.deepcopy(a.model.replay_buffer)
    a.reseed(1)
    a.train(GEN)
    b.reseed(1)
    b.train(GEN)
    assert np.array_equal(bits(a.pack()), bits(b.pack()))


@pytest.mark.parametrize("algo", ALL)
def test_checkpoint_round_trip_is_bit_exact_and_resumes_exactly(algo: str, tmp_path) -> None:
    a = make(algo, norm=True)
    a.reseed(0)
    a.train(GEN)
    ckpt.write_member(tmp_path / "c", a, 1, {}, {})
    (tmp_path / "replay").write_bytes(a.replay_state() or b"")
    b = make(algo, norm=True)
    ckpt.load_member(tmp_path / "c", b)
    b.load_replay_state((tmp_path / "replay").read_bytes() or None)
    assert np.array_equal(bits(a.pack()), bits(b.pack()))
    same_state(a, b)
    assert b.hparams == a.hparams and b.num_timesteps == a.num_timesteps and b._clock() == a._clock()
    a.reseed(1)
    a.train(GEN)
    b.reseed(1)
    b.train(GEN)
    assert np.array_equal(bits(a.pack()), bits(b.pack()))


def test_off_policy_checkpoint_keeps_only_the_filled_replay_buffer() -> None:
    a = make("sac")
    a.train(GEN)
    blob = a.replay_state()
    assert blob is not None and len(blob) < 20_000  # 32 rows x 2 envs, not 2000 x 2
    assert make("ppo").replay_state() is None


def test_flat_state_is_a_cpu_float32_buffer() -> None:
    # Buffers are CPU float32 whatever the device: pack copies to, unpack from, the CPU.
    a = make("td3")
    a.train(GEN)
    buf = a.pack()
    assert buf.dtype == np.float32 and isinstance(buf, np.ndarray)
    b = make("td3", index=1)
    b.unpack(buf.copy())
    assert np.array_equal(bits(b.pack()), bits(buf))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("algo", ALL)
def test_a_gpu_member_and_a_cpu_member_exchange_bit_exactly(algo: str) -> None:
    gpu = make(algo, True, cfg=cfg_for(algo, True, device="cuda"))
    cpu = make(algo, True)
    assert gpu.device == "cuda:0" and next(gpu.model.policy.parameters()).is_cuda
    gpu.train(GEN)
    cpu.train(GEN)
    g, c = gpu.pack().copy(), cpu.pack().copy()
    cpu.unpack(g)
    gpu.unpack(c)
    assert np.array_equal(bits(cpu.pack()), bits(g)) and np.array_equal(bits(gpu.pack()), bits(c))
    gpu.train(GEN)  # and it trains on after receiving CPU state


def test_sac_fixed_and_auto_entropy_share_one_layout() -> None:
    fixed, auto = make("sac", ent_coef=0.05), make("sac")
    assert fixed.flat_size == auto.flat_size
    fixed.train(GEN)
    auto.unpack(fixed.pack())
    auto.apply_hparams(fixed.hparams)
    assert auto.live_hparams()["ent_coef"] == pytest.approx(0.05)
    assert np.array_equal(bits(auto.pack()), bits(fixed.pack()))


def test_normalisation_statistics_travel_with_the_weights_but_not_the_returns() -> None:
    a, b = make("a2c", norm=True), make("a2c", norm=True, index=1)
    a.train(GEN)
    b.train(GEN)
    assert a.vecnorm is not None and b.vecnorm is not None
    returns_b = b.vecnorm.returns.copy()
    b.unpack(a.pack())
    assert np.array_equal(b.vecnorm.obs_rms.mean, a.vecnorm.obs_rms.mean)
    assert b.vecnorm.ret_rms.count == a.vecnorm.ret_rms.count
    assert np.array_equal(b.vecnorm.returns, returns_b)  # the receiver's own episodes' discounted returns
    # b acts next on its own pending observation, normalised with the statistics it received
    assert np.array_equal(b.model._last_obs, b.vecnorm.normalize_obs(b.vecnorm.old_obs))


def test_evaluation_uses_frozen_statistics_and_reports_raw_returns() -> None:
    m = make("dqn", norm=True)
    stats = m.train(GEN)
    assert stats.episodes and all(r == float(length) for _, r, length in stats.episodes)  # CartPole: raw
    assert m.vecnorm is not None
    before = (m.vecnorm.obs_rms.mean.copy(), m.vecnorm.obs_rms.count)
    score = m.evaluate(2, True, seed=3)
    assert score >= 8 and 2 * score == int(2 * score)  # raw CartPole returns, not normalised rewards
    assert np.array_equal(m.vecnorm.obs_rms.mean, before[0]) and m.vecnorm.obs_rms.count == before[1]
    assert np.array_equal(m.eval_env.obs_rms.mean, before[0])  # type: ignore[attr-defined]
    assert m.evaluate(2, False, seed=3) == m.evaluate(2, False, seed=3)


# -- hyperparameters reach SB3's train() ----------------------------------------------------------
class Spy:
    """Wraps ``obj.name``; records every call's arguments (and the result)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, obj: Any, name: str) -> None:
        self.calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
        self.results: list[Any] = []
        real = getattr(obj, name)

        def spy(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((args, kwargs))
            out = real(*args, **kwargs)
            self.results.append(out)
            return out

        monkeypatch.setattr(obj, name, spy)


def warm(algo: str, **hp: Any) -> Learner:
    m = make(algo, **hp)
    m.reseed(0)
    m.train(GEN)  # past learning_starts, replay buffer filled
    return m


@pytest.mark.parametrize("algo", ALL)
def test_learning_rate_reaches_every_optimizer(algo: str) -> None:
    m = warm(algo)
    m.apply_hparams({"learning_rate": 1.234e-3})
    m.train(GEN)
    for opt in m._optimizers():
        assert [g["lr"] for g in opt.param_groups] == [1.234e-3] * len(opt.param_groups)
    assert m.model.logger.name_to_value["train/learning_rate"] == pytest.approx(1.234e-3)


def _td_targets(monkeypatch: pytest.MonkeyPatch, m: Learner, gamma: float, snap: np.ndarray) -> tuple[Any, Any]:
    """(rewards, dones, TD targets) of one gradient step of SB3's train() with ``gamma``, from ``snap``."""
    m.unpack(snap)
    m.apply_hparams({"gamma": gamma})
    m.reseed(5)
    loss_name = "smooth_l1_loss" if m.algo == "dqn" else "mse_loss"
    losses = Spy(monkeypatch, torch.nn.functional, loss_name)
    samples = Spy(monkeypatch, m.model.replay_buffer, "sample")
    m.model.train(gradient_steps=1, batch_size=16)
    monkeypatch.undo()
    batch = samples.results[0]
    return batch, losses.calls[0][0][1]


@pytest.mark.parametrize("algo", OFF)
def test_gamma_and_batch_size_reach_the_td_target(algo: str, monkeypatch: pytest.MonkeyPatch) -> None:
    m = warm(algo)
    snap = m.pack()
    b1, t1 = _td_targets(monkeypatch, m, 0.9, snap)
    b2, t2 = _td_targets(monkeypatch, m, 0.5, snap)
    assert torch.equal(b1.rewards, b2.rewards) and len(b1.rewards) == 16  # the same batch, of batch_size
    nonterminal = (1 - b1.dones).bool().flatten()
    assert nonterminal.any()
    x1 = (t1 - b1.rewards).flatten()[nonterminal] / 0.9  # the next-state value, whatever gamma
    x2 = (t2 - b2.rewards).flatten()[nonterminal] / 0.5
    assert torch.allclose(x1, x2, rtol=1e-4, atol=1e-5) and x1.abs().max() > 1e-4
    m.apply_hparams({"batch_size": 24})
    samples = Spy(monkeypatch, m.model.replay_buffer, "sample")
    m.train(GEN)
    assert samples.calls and {c[0][0] for c in samples.calls} == {24}


@pytest.mark.parametrize("algo", OFF)
def test_tau_reaches_the_target_update(algo: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    m = warm(algo, policy_delay=1) if algo == "td3" else warm(algo, target_update_interval=2) if algo == "dqn" \
        else warm(algo)
    module = importlib.import_module(f"stable_baselines3.{algo}.{algo}")
    m.apply_hparams({"tau": 0.0123})
    spy = Spy(monkeypatch, module, "polyak_update")
    m.train(GEN)
    taus = {c[0][2] for c in spy.calls if c[0][2] != 1.0}  # 1.0: SB3 copies batch-norm statistics
    assert taus == {0.0123}


def test_off_policy_generations_train_exactly_like_one_long_run(monkeypatch: pytest.MonkeyPatch) -> None:
    # 2 envs, train_freq 3 VecEnv steps, generations of 10 env steps (5 VecEnv steps): SB3's learn()
    # would overshoot every generation; evo collects exactly and carries the count over.
    m = make("td3", train_freq=3, gradient_steps=2, learning_starts=0)
    rounds = Spy(monkeypatch, m.model, "train")
    for _ in range(4):
        m.train(10)
    assert m.num_timesteps == 40
    assert len(rounds.calls) == 20 // 3 and {c[1]["gradient_steps"] for c in rounds.calls} == {2}
    assert m.model._n_updates == 2 * (20 // 3) and m._since_train == 20 % 3
    m.apply_hparams({"train_freq": 1, "gradient_steps": -1})  # -1: as many as env steps collected
    before = len(rounds.calls)
    m.train(10)
    assert rounds.calls[before][1]["gradient_steps"] == 2 * (20 % 3)  # the 2 carried-over steps first
    assert [c[1]["gradient_steps"] for c in rounds.calls[before + 1:]] == [2] * 5


def test_sac_ent_coef_fixed_or_learned_towards_target_entropy() -> None:
    m = warm("sac", ent_coef="auto_0.5")
    log_before = m.model.log_ent_coef.detach().clone()
    m.apply_hparams({"ent_coef": 0.07})
    m.train(GEN)
    v = m.model.logger.name_to_value
    assert v["train/ent_coef"] == pytest.approx(0.07) and "train/ent_coef_loss" not in v
    assert torch.equal(m.model.log_ent_coef, log_before)  # not learned while fixed
    assert m.model.ent_coef_optimizer is not None  # the layout stays
    snap = m.pack()
    losses = []
    for target in (-1.0, 2.0):
        m.unpack(snap)
        m.apply_hparams({"ent_coef": "auto", "target_entropy": target})
        m.reseed(4)
        m.model.train(gradient_steps=1, batch_size=16)
        losses.append(m.model.logger.name_to_value["train/ent_coef_loss"])
    # ent_coef_loss = -log_ent_coef * (mean log_prob + target_entropy): same batch, so the difference
    # is -log_ent_coef * (target1 - target2)
    assert losses[0] - losses[1] == pytest.approx(-float(log_before) * (-1.0 - 2.0), rel=1e-4)
    m.apply_hparams({"target_entropy": "auto"})
    assert m.model.target_entropy == -1.0  # -dim(action) for Pendulum


def test_td3_policy_delay_and_target_policy_noise(monkeypatch: pytest.MonkeyPatch) -> None:
    m = warm("td3")
    m.apply_hparams({"policy_delay": 3})
    actor_steps = Spy(monkeypatch, m.model.actor.optimizer, "step")
    critic_steps = Spy(monkeypatch, m.model.critic.optimizer, "step")
    n0 = m.model._n_updates
    m.model.train(gradient_steps=9, batch_size=16)
    assert len(critic_steps.calls) == 9
    assert len(actor_steps.calls) == sum(1 for k in range(n0 + 1, n0 + 10) if k % 3 == 0)
    monkeypatch.undo()
    # Noise on the target action: none (noise 0, or clipped to 0) gives the noise-free TD target.
    m.apply_hparams({"policy_delay": 1000})  # no policy update: target networks stay put
    snap = m.pack()

    def target(noise: float, clip: float) -> torch.Tensor:
        m.unpack(snap)
        m.apply_hparams({"target_policy_noise": noise, "target_noise_clip": clip})
        m.reseed(9)
        _, t = _td_targets(monkeypatch, m, 0.98, m.pack())
        return t

    clean = target(0.0, 0.5)
    assert torch.equal(target(0.3, 0.0), clean)
    assert not torch.allclose(target(0.3, 0.5), clean)
    m.unpack(snap)
    m.apply_hparams({"target_policy_noise": 0.0, "target_noise_clip": 0.5, "gamma": 0.98})
    m.reseed(5)
    samples = Spy(monkeypatch, m.model.replay_buffer, "sample")
    m.model.train(gradient_steps=1, batch_size=16)
    monkeypatch.undo()
    d = samples.results[0]
    m.unpack(snap)
    with torch.no_grad():
        nxt = m.model.actor_target(d.next_observations).clamp(-1, 1)
        q = torch.min(torch.cat(m.model.critic_target(d.next_observations, nxt), dim=1), dim=1, keepdim=True)[0]
    assert torch.allclose(clean, d.rewards + (1 - d.dones) * 0.98 * q, atol=1e-5)


def test_dqn_exploration_follows_the_whole_run_and_explored_schedules(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = PBTConfig(env_id="CartPole-v1", n_envs=2, n_steps=16, eval_episodes=2, algo="dqn", generations=4,
                    steps_per_generation=GEN)
    assert planned_env_steps(cfg) == 4 * GEN
    m = make("dqn", cfg=cfg, exploration_fraction=0.5, exploration_initial_eps=1.0, exploration_final_eps=0.05)
    m.train(GEN)
    # SB3 alone would measure progress within this learn() call (and be at its end: eps = final)
    assert m.model._current_progress_remaining == pytest.approx(0.75)
    assert m.model.exploration_rate == pytest.approx(LinearSchedule(1.0, 0.05, 0.5)(0.75))
    m.apply_hparams({"exploration_final_eps": 0.2, "exploration_fraction": 0.25})
    assert m.model.exploration_rate == pytest.approx(0.2)  # past the new fraction: the new final value
    obs = np.stack([m.env.observation_space.sample() for _ in range(64)])
    greedy, _ = m.model.predict(obs, deterministic=True)
    m.apply_hparams({"exploration_initial_eps": 0.0, "exploration_final_eps": 0.0})
    m.reseed(2)
    assert np.array_equal(m.model.predict(obs, deterministic=False)[0], greedy)
    m.apply_hparams({"exploration_initial_eps": 1.0, "exploration_final_eps": 1.0})
    m.reseed(2)
    assert not np.array_equal(m.model.predict(obs, deterministic=False)[0], greedy)


def test_dqn_target_update_interval_and_max_grad_norm(monkeypatch: pytest.MonkeyPatch) -> None:
    import stable_baselines3.dqn.dqn as dqn_module

    m = warm("dqn")
    m.apply_hparams({"target_update_interval": 8, "max_grad_norm": 0.321, "tau": 0.5})
    updates = Spy(monkeypatch, dqn_module, "polyak_update")
    clips = Spy(monkeypatch, torch.nn.utils, "clip_grad_norm_")
    m.train(GEN)  # 32 VecEnv steps of 2 envs: a target update every 8 // 2 = 4 calls
    assert len([c for c in updates.calls if c[0][2] != 1.0]) == 32 // 4
    assert clips.calls and {c[0][1] for c in clips.calls} == {0.321}


def test_a2c_coefficients_weigh_the_loss_and_gae_reaches_the_buffer(monkeypatch: pytest.MonkeyPatch) -> None:
    m = make("a2c")
    m.train(32)
    m.apply_hparams({"ent_coef": 0.3, "vf_coef": 0.125, "max_grad_norm": 0.77, "gamma": 0.9, "gae_lambda": 0.8})
    seen: list[float] = []
    real_backward = torch.Tensor.backward

    def backward(self: torch.Tensor, *a: Any, **k: Any) -> Any:
        seen.append(float(self.detach()))
        return real_backward(self, *a, **k)

    monkeypatch.setattr(torch.Tensor, "backward", backward)
    clips = Spy(monkeypatch, torch.nn.utils, "clip_grad_norm_")
    buf = m.model.rollout_buffer
    snap: dict[str, np.ndarray] = {}
    real_gae = buf.compute_returns_and_advantage

    def gae(*args: Any, **kwargs: Any) -> None:
        real_gae(*args, **kwargs)
        for name in ("rewards", "values", "episode_starts", "advantages"):
            snap[name] = getattr(buf, name).copy()

    monkeypatch.setattr(buf, "compute_returns_and_advantage", gae)
    m.train(32)
    v = {k.split("/", 1)[1]: float(x) for k, x in m.model.logger.name_to_value.items()}
    assert seen[-1] == pytest.approx(v["policy_loss"] + 0.3 * v["entropy_loss"] + 0.125 * v["value_loss"],
                                     rel=1e-4, abs=1e-5)
    assert {c[0][1] for c in clips.calls} == {0.77}
    r, val, s, adv = snap["rewards"], snap["values"], snap["episode_starts"], snap["advantages"]
    nonterm = 1.0 - s[1:]
    expected = r[:-1] + 0.9 * val[1:] * nonterm - val[:-1] + 0.9 * 0.8 * nonterm * adv[1:]
    assert float(np.max(np.abs(expected - adv[:-1]))) < 1e-4


# -- devices ----------------------------------------------------------------------------------------
def test_device_mapping_without_a_gpu() -> None:
    from evo.errors import ConfigError
    from evo.learners import check_device_spec, resolve_device

    assert resolve_device("cpu", 3, 4) == "cpu"
    assert resolve_device("auto", 0, 0) == "cpu" and resolve_device("auto", 5, 0) == "cpu"
    assert [resolve_device("auto", r, 2) for r in range(5)] == ["cuda:0", "cuda:1", "cuda:0", "cuda:1", "cuda:0"]
    assert [resolve_device("cuda", r, 3) for r in range(4)] == ["cuda:0", "cuda:1", "cuda:2", "cuda:0"]
    assert resolve_device("cuda:1", 0, 2) == "cuda:1"
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        resolve_device("cuda", 0, 0)
    with pytest.raises(ConfigError, match="2 visible GPU"):
        resolve_device("cuda:2", 0, 2)
    for bad in ("gpu", "cuda:", "cuda:x", "CPU", ""):
        with pytest.raises(ConfigError, match="--device"):
            check_device_spec(bad)


def test_members_default_to_the_cpu() -> None:
    m = make("dqn")
    assert m.device == "cpu" and all(p.device.type == "cpu" for p in m.model.policy.parameters())


def test_adapter_classes() -> None:
    classes = (PPOLearner, A2CLearner, SACLearner, TD3Learner, DQNLearner)
    assert {cls.spec.name for cls in classes} == set(LEARNERS) == {"ppo", "a2c", "sac", "td3", "dqn"}
    assert all(LEARNERS[cls.spec.name] is cls and algo_spec(cls.spec.name) is cls.spec for cls in classes)
