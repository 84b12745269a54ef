"""Batched, paired evaluation: a set of episodes played side by side, each exactly as if played alone.

The evaluation set. Set ``s`` with ``n`` episodes is the episodes ``j = 0 .. n-1``; episode ``j`` is
fixed by ``(s, j)`` alone:

* its start state: a Gymnasium env is reset with ``seed = start_seed(s, j)``; a ProcGen episode
  plays level ``episode_level(s, j, ...)``, drawn uniformly from the training levels (or the
  held-out ones), on an engine of its own built for that one level (the engine's ``rand_seed``
  does not matter: a ProcGen episode is fixed by its level seed and the actions);
* its random actions (sampled evaluation, DQN's epsilon-greedy, gSDE's exploration matrix, the
  random-policy reference): drawn from a generator of its own (``action_rng(s, j)`` for a policy),
  never from a global one, so an episode's draws do not depend on the others'.

A score is the mean raw return of all ``n`` episodes, each played to its end (unlike SB3's
``evaluate_policy``, which counts the episodes that finish first and so favours short ones). Every
member of a generation is scored on the same set (paired), as before.

Slots. ``slots`` envs play at once (``--eval-envs``; 0 = ``n``): a free slot takes the next
episode not yet played, and one whose episode ended and finds none left stops (its env is no
longer stepped: episodes that end early stop costing env steps). ``slots = 1`` is the serial
evaluation, one episode after another.

Equal returns whatever the slots. A batched forward pass can round differently from a one-row
one: on CPU, SB3's MLP policies give a row different bits in a batch of 1 than of 2 (BLAS picks
another kernel) and, at some batch sizes, at another row of the same batch (edge kernels); the
CNNs measured here did not, but nothing promises it. So the computation never depends on the
slots: every forward pass of an evaluation has the same shape, ``rows`` rows, and episode ``j``
always sits in row ``j % rows`` of pass ``j // rows``; rows of episodes not running are zeros.
Dense and convolutional layers never mix rows, and a kernel is chosen by shape, so row ``j``'s
outputs depend on episode ``j``'s observation alone. What follows the forward pass is computed
either in torch on the same fixed-shape batch (noise, tanh) or per row, on rows of fixed length,
with exact operations (clip, rescale, a float64 cumulative sum). Hence ``slots = 1`` and
``slots = n`` give bit-identical returns (``tests/test_eval_batched.py``); bit for bit, a return
also depends on ``rows`` (on ``n`` below :data:`MAX_ROWS`), the same for every member of a run.

Rows per pass: ``min(n, MAX_ROWS)`` (10 by default), one pass per step for all the episodes. The
rows of episodes that ended are computed until every episode of their pass has ended, which costs
little: a pass costs mostly per call, not per row (one core: CartPole's MLP 0.11 ms for 1 row,
0.13 ms for 10; SB3's NatureCNN on 64x64 images 0.27 ms and 0.78 ms; evo's IMPALA CNN 2.2 ms and
5.7 ms, so ten bigfish episodes of unequal lengths took 1.5 s in passes of 10 rows against 2.7 s
in passes of one row per running episode).

Held-out levels use the same definition over the held-out level range, the final evaluation and
the random-policy reference (:mod:`evo.reference`) the same :func:`play`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch
from gymnasium import spaces

from evo.core import seeds

if TYPE_CHECKING:
    from evo.learners.envs import EvalEnvs

MAX_ROWS = 32
"""Rows of one forward pass at most (more episodes: several passes of this shape)."""
_START, _ACTIONS = 0, 1
"""Sub-streams of an evaluation seed (a top-level stream's second part is a purpose tag >= 101)."""


def forward_rows(n_episodes: int) -> int:
    """Rows of every forward pass of an ``n_episodes`` evaluation (fixed: returns never depend on the slots)."""
    return max(1, min(int(n_episodes), MAX_ROWS))


def start_seed(seed: int, episode: int) -> int:
    """Reset seed of a Gymnasium env for episode ``episode`` of evaluation set ``seed``."""
    return seeds.derive_seed(seed, _START, episode)


def episode_level(seed: int, episode: int, low: int, count: int) -> int:
    """ProcGen level seed of episode ``episode`` of set ``seed``: uniform in ``[low, low + count)``."""
    return int(seeds.rng(seed, _START, episode).integers(low, low + count))


def action_rng(seed: int, episode: int) -> np.random.Generator:
    """The generator of episode ``episode``'s random actions (evaluation set ``seed``)."""
    return seeds.rng(seed, _ACTIONS, episode)


@dataclass
class Episode:
    """One running episode: its index in the set, its current observation, return so far and noise."""

    index: int
    obs: Any
    rng: np.random.Generator
    ret: float = 0.0
    cache: dict[str, Any] = field(default_factory=dict)
    """What an actor keeps per episode (gSDE's exploration matrix)."""


class Actor(Protocol):
    """What plays: one action per running episode, the same for an episode whatever runs beside it."""

    def rows(self, n_episodes: int) -> int:
        """Rows of every forward pass (:func:`forward_rows`)."""

    def rng(self, seed: int, episode: int) -> np.random.Generator:
        """The generator of episode ``episode``'s random draws."""

    def act(self, episodes: Sequence[Episode], rows: int) -> list[Any]:
        """Actions for ``episodes`` (all in one group of ``rows``: ``e.index // rows`` equal)."""


def play(envs: EvalEnvs, actor: Actor, n_episodes: int, seed: int, slots: int = 0) -> np.ndarray:
    """Raw returns of episodes ``0 .. n_episodes-1`` of set ``seed``, in that order, ``slots`` at once (0: all)."""
    if n_episodes <= 0:
        raise ValueError(f"n_episodes must be > 0, got {n_episodes}")
    rows = actor.rows(n_episodes)
    slots = n_episodes if slots <= 0 else min(slots, n_episodes)
    returns = np.full(n_episodes, np.nan)
    pending = iter(range(n_episodes))
    running: dict[int, Episode] = {}

    def begin(slot: int) -> None:
        j = next(pending, None)
        if j is not None:
            running[slot] = Episode(j, envs.start(slot, seed, j), actor.rng(seed, j))

    for slot in range(slots):
        begin(slot)
    while running:
        groups: dict[int, list[int]] = {}
        for slot, ep in running.items():
            groups.setdefault(ep.index // rows, []).append(slot)
        actions: dict[int, Any] = {}
        for members in groups.values():
            actions.update(zip(members, actor.act([running[s] for s in members], rows), strict=True))
        for slot in sorted(running):
            ep = running[slot]
            ep.obs, reward, done = envs.step(slot, actions[slot])
            ep.ret += float(reward)
            if done:
                returns[ep.index] = ep.ret
                del running[slot]
                begin(slot)
    return returns


# -- a model's actions ---------------------------------------------------------------------------
def _batch(space: spaces.Space, episodes: Sequence[Episode], rows: int) -> Any:
    """The fixed-shape observation batch: episode ``j`` in row ``j % rows``, zeros elsewhere."""
    if isinstance(space, spaces.Dict):
        return {key: _batch(sub, [Episode(e.index, e.obs[key], e.rng) for e in episodes], rows)
                for key, sub in space.spaces.items()}
    first = np.asarray(episodes[0].obs)
    out = np.zeros((rows, *first.shape), dtype=first.dtype)
    for e in episodes:
        out[e.index % rows] = e.obs
    return out


def _noise(episodes: Sequence[Episode], rows: int, shape: tuple[int, ...], like: torch.Tensor,
           draw: Callable[[Episode], np.ndarray]) -> torch.Tensor:
    """A ``(rows, *shape)`` float32 tensor: each running episode's own draw in its row, zeros elsewhere."""
    out = np.zeros((rows, *shape), dtype=np.float32)
    for e in episodes:
        out[e.index % rows] = draw(e)
    return torch.as_tensor(out, device=like.device)


def _normal(episodes: Sequence[Episode], rows: int, like: torch.Tensor) -> torch.Tensor:
    """Standard normal noise shaped like ``like``, each running episode's own in its row."""
    shape = tuple(like.shape[1:])
    return _noise(episodes, rows, shape, like, lambda e: e.rng.standard_normal(shape))


class PolicyActor:
    """An SB3 model's actions: greedy (``deterministic``) or sampled with each episode's own generator.

    Sampled actions follow SB3's distributions: categorical by inverse CDF of one uniform draw,
    Bernoulli by one uniform per dimension, Gaussian ``mean + std * eps`` (then ``tanh`` if squashed),
    gSDE ``mean + latent @ M`` with ``M = std * E`` drawn once per episode (SB3 keeps the matrix
    it last sampled in training), DQN epsilon-greedy with the model's current exploration rate
    (one draw per step and episode; SB3 draws one coin for the whole batch). TD3 acts greedily.
    """

    def __init__(self, model: Any, deterministic: bool) -> None:
        self.model = model
        self.policy = model.policy
        self.deterministic = deterministic
        self.policy.set_training_mode(False)  # once: it walks every module (SB3's predict does it each call)

    def rows(self, n_episodes: int) -> int:
        return forward_rows(n_episodes)

    def rng(self, seed: int, episode: int) -> np.random.Generator:
        return action_rng(seed, episode)

    def act(self, episodes: Sequence[Episode], rows: int) -> list[Any]:
        from stable_baselines3.dqn.policies import DQNPolicy
        from stable_baselines3.td3.policies import TD3Policy

        policy = self.policy
        obs, _ = policy.obs_to_tensor(_batch(policy.observation_space, episodes, rows))
        with torch.no_grad():
            if self.deterministic or isinstance(policy, TD3Policy):  # TD3 has no sampled actions
                out = policy._predict(obs, deterministic=True)
            elif isinstance(policy, DQNPolicy):
                return self._epsilon_greedy(policy._predict(obs, deterministic=True), episodes, rows)
            else:
                out = self._sampled(obs, episodes, rows)
        actions = out.cpu().numpy().reshape((rows, *policy.action_space.shape))
        return [self._bound(actions[e.index % rows]) for e in episodes]

    def _bound(self, action: np.ndarray) -> np.ndarray:
        """What SB3's ``predict`` does to a Box action: rescale a squashed one, else clip it."""
        space = self.policy.action_space
        if isinstance(space, spaces.Box):
            return self.policy.unscale_action(action) if self.policy.squash_output else np.clip(
                action, space.low, space.high)
        return action

    def _epsilon_greedy(self, greedy: torch.Tensor, episodes: Sequence[Episode], rows: int) -> list[Any]:
        best = greedy.cpu().numpy().reshape((rows, *self.policy.action_space.shape))
        eps, space = float(self.model.exploration_rate), self.policy.action_space
        assert isinstance(space, spaces.Discrete)
        out = []
        for e in episodes:
            explore, random_action = e.rng.random() < eps, int(space.start) + int(e.rng.integers(int(space.n)))
            out.append(np.array(random_action, dtype=best.dtype) if explore else best[e.index % rows])
        return out

    def _sampled(self, obs: Any, episodes: Sequence[Episode], rows: int) -> torch.Tensor:
        from stable_baselines3.common import distributions as d

        policy = self.policy
        actor = getattr(policy, "actor", None)
        if actor is not None:  # SAC: a squashed Gaussian (gSDE or not)
            mean, log_std, extra = actor.get_action_dist_params(obs)
            if extra:
                return self._gsde(mean, extra["latent_sde"], actor.action_dist, log_std, episodes, rows)
            return torch.tanh(mean + log_std.exp() * _normal(episodes, rows, mean))
        dist = policy.get_distribution(obs)
        if isinstance(dist, d.StateDependentNoiseDistribution):
            return self._gsde(dist.distribution.mean, dist._latent_sde, dist, policy.log_std, episodes, rows)
        if isinstance(dist, d.DiagGaussianDistribution):
            mean, std = dist.distribution.mean, dist.distribution.stddev
            return mean + std * _normal(episodes, rows, mean)
        if isinstance(dist, d.CategoricalDistribution):
            return self._inverse_cdf([dist.distribution.probs], episodes, rows)
        if isinstance(dist, d.MultiCategoricalDistribution):
            return self._inverse_cdf([c.probs for c in dist.distribution], episodes, rows)
        if isinstance(dist, d.BernoulliDistribution):
            probs = dist.distribution.probs
            shape = tuple(probs.shape[1:])
            u = _noise(episodes, rows, shape, probs, lambda e: e.rng.random(shape))
            return (u < probs).to(torch.float32)
        raise NotImplementedError(f"sampled evaluation with a {type(dist).__name__}")

    @staticmethod
    def _inverse_cdf(probs: list[torch.Tensor], episodes: Sequence[Episode], rows: int) -> torch.Tensor:
        """One category per distribution and row: the first whose float64 cumulative mass exceeds ``u``."""
        p = [x.cpu().numpy().astype(np.float64) for x in probs]
        out = np.zeros((rows, len(p)), dtype=np.int64)
        for e in episodes:
            r = e.index % rows
            for k, pk in enumerate(p):
                cdf = np.cumsum(pk[r])
                out[r, k] = min(int(np.searchsorted(cdf, e.rng.random() * cdf[-1], side="right")), len(cdf) - 1)
        result = torch.as_tensor(out)
        return result[:, 0] if len(p) == 1 else result

    @staticmethod
    def _gsde(mean: torch.Tensor, latent: torch.Tensor, dist: Any, log_std: torch.Tensor,
              episodes: Sequence[Episode], rows: int) -> torch.Tensor:
        """gSDE: ``mean + latent @ M`` with each episode's exploration matrix ``M`` (then the bijector)."""
        std = dist.get_std(log_std).cpu().numpy()

        def matrix(e: Episode) -> np.ndarray:
            if "sde" not in e.cache:
                e.cache["sde"] = (std * e.rng.standard_normal(std.shape)).astype(np.float32)
            return np.asarray(e.cache["sde"])

        mats = _noise(episodes, rows, tuple(std.shape), mean, matrix)
        actions = mean + torch.bmm(latent.unsqueeze(1), mats).squeeze(1)
        return dist.bijector.forward(actions) if dist.bijector is not None else actions


__all__ = ["MAX_ROWS", "Actor", "Episode", "PolicyActor", "action_rng", "episode_level",
           "forward_rows", "play", "start_seed"]
