"""A member's hyperparameters really reach SB3's train(), and its flat state moves bit-exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from evo.config import CommonConfig
from evo.learners import Learner, make_learner
from evo.loop import checkpoints as ckpt

ROLLOUT = 2 * 64


def make(hp: dict | None = None, index: int = 0, tmp_path=None) -> Learner:
    cfg = CommonConfig(env_id="CartPole-v1", n_envs=2, n_steps=64, eval_episodes=2,
                       log_dir=str(tmp_path or "logs"), exp_name="t")
    base = {"learning_rate": 3e-4, "batch_size": 64, "n_epochs": 2}
    return make_learner(cfg, {**base, **(hp or {})}, index=index)


def logged(m: Learner) -> dict[str, float]:
    return {k.split("/", 1)[1]: float(v) for k, v in m.model.logger.name_to_value.items() if k.startswith("train/")}


def adam_steps(m: Learner) -> float:
    opt = m.model.policy.optimizer
    return float(opt.state[next(iter(m.model.policy.parameters()))]["step"])


def bits(a: np.ndarray) -> np.ndarray:
    return a.view(np.uint32)


def test_learning_rate_reaches_the_optimizer() -> None:
    m = make()
    m.train(ROLLOUT)
    m.apply_hparams({"learning_rate": 1.234e-3})
    # SB3 calls _update_learning_rate(lr_schedule(...)) inside train(): the old schedule would reset it.
    m.train(ROLLOUT)
    assert [g["lr"] for g in m.model.policy.optimizer.param_groups] == [pytest.approx(1.234e-3, rel=0, abs=0)]
    assert logged(m)["learning_rate"] == pytest.approx(1.234e-3)


def test_clip_range_reaches_train() -> None:
    m = make({"clip_range": 0.2})
    m.train(ROLLOUT)
    assert logged(m)["clip_range"] == pytest.approx(0.2)
    m.apply_hparams({"clip_range": 0.077})
    m.train(ROLLOUT)
    assert logged(m)["clip_range"] == pytest.approx(0.077)


def test_n_epochs_and_batch_size_change_the_number_of_gradient_steps() -> None:
    m = make({"n_epochs": 2, "batch_size": 64})
    m.train(ROLLOUT)
    before = adam_steps(m)
    m.apply_hparams({"n_epochs": 3, "batch_size": 32})
    m.train(ROLLOUT)
    # one optimizer step per minibatch: n_epochs * rollout / batch_size
    assert adam_steps(m) - before == 3 * ROLLOUT // 32
    assert logged(m)["n_updates"] == 2 + 3


def _snapshot_gae(m: Learner) -> dict[str, np.ndarray]:
    """Keep a copy of the buffer right after SB3 computes advantages (train() flattens it later)."""
    buf = m.model.rollout_buffer
    snap: dict[str, np.ndarray] = {}
    real = buf.compute_returns_and_advantage

    def wrapped(*args, **kwargs):  # type: ignore[no-untyped-def]
        real(*args, **kwargs)
        for name in ("rewards", "values", "episode_starts", "advantages"):
            snap[name] = getattr(buf, name).copy()

    buf.compute_returns_and_advantage = wrapped  # type: ignore[method-assign]
    return snap


def _gae_residual(snap: dict[str, np.ndarray], gamma: float, lam: float) -> float:
    """Largest violation of A_t = delta_t + gamma*lam*(1-start_{t+1})*A_{t+1} inside the rollout."""
    r, v, s, a = snap["rewards"], snap["values"], snap["episode_starts"], snap["advantages"]
    nonterm = 1.0 - s[1:]
    delta = r[:-1] + gamma * v[1:] * nonterm - v[:-1]
    expected = delta + gamma * lam * nonterm * a[1:]
    return float(np.max(np.abs(expected - a[:-1])))


def test_gamma_and_gae_lambda_reach_the_rollout_buffer() -> None:
    m = make({"gamma": 0.99, "gae_lambda": 0.95})
    snap = _snapshot_gae(m)
    m.train(ROLLOUT)
    assert _gae_residual(snap, 0.99, 0.95) < 1e-4
    m.apply_hparams({"gamma": 0.9, "gae_lambda": 0.8})
    m.train(ROLLOUT)
    assert _gae_residual(snap, 0.9, 0.8) < 1e-4
    assert _gae_residual(snap, 0.99, 0.95) > 1e-2  # the old values no longer describe the rollout
    assert m.model.rollout_buffer.gamma == 0.9 and m.model.gamma == 0.9


def test_ent_coef_and_vf_coef_weigh_the_loss() -> None:
    # one epoch over one minibatch: the logged means are exactly the terms of the last loss
    m = make({"n_epochs": 1, "batch_size": ROLLOUT, "ent_coef": 0.0, "vf_coef": 0.5})
    m.train(ROLLOUT)
    m.apply_hparams({"ent_coef": 0.3, "vf_coef": 0.125})
    m.train(ROLLOUT)
    v = logged(m)

    def loss(ent: float, vf: float) -> float:
        return v["policy_gradient_loss"] + ent * v["entropy_loss"] + vf * v["value_loss"]

    assert v["loss"] == pytest.approx(loss(0.3, 0.125), rel=1e-4, abs=1e-5)
    assert v["loss"] != pytest.approx(loss(0.0, 0.5), rel=1e-3)


def test_max_grad_norm_reaches_gradient_clipping(monkeypatch: pytest.MonkeyPatch) -> None:
    m = make()
    seen: list[float] = []
    real = torch.nn.utils.clip_grad_norm_

    def spy(params, max_norm, *a, **k):  # type: ignore[no-untyped-def]
        seen.append(float(max_norm))
        return real(params, max_norm, *a, **k)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", spy)
    m.apply_hparams({"max_grad_norm": 0.123})
    m.train(ROLLOUT)
    assert seen and set(seen) == {0.123}


def test_live_hparams_read_back_what_was_applied() -> None:
    m = make()
    hp = {"learning_rate": 2e-4, "clip_range": 0.15, "ent_coef": 0.01, "vf_coef": 0.7, "gamma": 0.97,
          "gae_lambda": 0.9, "n_epochs": 4, "batch_size": 32, "max_grad_norm": 0.9}
    m.apply_hparams(hp)
    assert m.live_hparams() == pytest.approx(hp)
    with pytest.raises(ValueError):
        m.apply_hparams({"batch_size": 48})  # does not divide the rollout of 128


def test_pack_unpack_is_bit_exact_and_continues_identically() -> None:
    a, b = make(index=0), make(index=0)
    a.reseed(0)
    a.train(ROLLOUT)
    b.reseed(5)
    b.train(2 * ROLLOUT)  # b's weights, moments and step counts now all differ from a's
    sa = a.pack()
    assert not np.array_equal(bits(sa), bits(b.pack()))
    b.unpack(sa)
    b.apply_hparams(a.hparams)
    assert np.array_equal(bits(b.pack()), bits(sa))
    for (ka, ta), (kb, tb) in zip(a.model.policy.state_dict().items(), b.model.policy.state_dict().items(),
                                  strict=True):
        assert ka == kb and torch.equal(ta, tb)
    oa, ob = a.model.policy.optimizer.state_dict()["state"], b.model.policy.optimizer.state_dict()["state"]
    for k in oa:
        for field in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(oa[k][field], ob[k][field])
    # An exploit moves weights, optimizer and hparams, never the env: b's episodes carry on.
    assert b.env_state() != a.env_state()
    # Same state + same env state + same generation seed => the next generation is identical.
    # (python/numpy/torch rngs are process-global: reseed each right before it trains)
    b.load_env_state(a.env_state())
    a.reseed(1)
    a.train(ROLLOUT)
    b.reseed(1)
    b.train(ROLLOUT)
    assert np.array_equal(bits(a.pack()), bits(b.pack()))


def test_episodes_continue_across_generations_and_env_state_round_trips() -> None:
    a = make(index=0)
    a.reseed(0)
    a.train(ROLLOUT)
    obs_before = np.array(a.model._last_obs, copy=True)
    a.reseed(1)  # a new generation must not reset the training envs
    assert a.model._last_obs is not None and np.array_equal(a.model._last_obs, obs_before)
    blob = a.env_state()
    assert blob is not None
    # A fresh member given a's weights, optimizer and env state continues exactly like a.
    b = make(index=0)
    b.reseed(7)
    b.train(ROLLOUT)  # b's own envs are elsewhere now
    b.unpack(a.pack())
    b.apply_hparams(a.hparams)
    b.load_env_state(blob)
    assert np.array_equal(b.model._last_obs, obs_before)
    a.reseed(1)
    a.train(ROLLOUT)
    b.reseed(1)
    b.train(ROLLOUT)
    assert np.array_equal(bits(a.pack()), bits(b.pack()))
    states_a = [e.unwrapped.state for e in a.env.envs]  # type: ignore[attr-defined]
    states_b = [e.unwrapped.state for e in b.env.envs]  # type: ignore[attr-defined]
    assert all(np.array_equal(x, y) for x, y in zip(states_a, states_b, strict=True))


def test_unpack_rejects_a_wrong_buffer() -> None:
    m = make()
    with pytest.raises(ValueError):
        m.unpack(np.zeros(m.flat_size + 1, dtype=np.float32))
    with pytest.raises(ValueError):
        m.unpack(np.zeros(m.flat_size, dtype=np.float64))


def test_non_finite_weights_mark_the_member_failed() -> None:
    m = make()
    m.train(ROLLOUT)
    buf = m.pack()
    buf[0] = np.nan
    m.unpack(buf)
    assert m.failed
    assert np.isnan(m.evaluate(2, True, seed=0))


def test_checkpoint_round_trip_is_bit_exact(tmp_path) -> None:
    a = make(tmp_path=tmp_path)
    a.train(ROLLOUT)
    a.apply_hparams({"learning_rate": 7e-4, "n_epochs": 3})
    size, seconds = ckpt.write_member(tmp_path / "c", a, 1, {}, {})
    assert size > 0 and seconds >= 0
    b = make(index=0, tmp_path=tmp_path)
    ckpt.load_member(tmp_path / "c", b)
    assert np.array_equal(bits(a.pack()), bits(b.pack()))
    assert b.hparams == a.hparams and b.live_hparams()["learning_rate"] == pytest.approx(7e-4)
    assert b.num_timesteps == a.num_timesteps


def test_evaluate_is_seeded() -> None:
    m = make()
    m.train(ROLLOUT)
    assert m.evaluate(3, False, seed=11) == m.evaluate(3, False, seed=11)
