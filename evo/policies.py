"""Policy registry: ``--policy`` names to stable-baselines3 policies, plus the IMPALA CNN.

``auto`` picks from the observation space: ``MultiInputPolicy`` for Dict observations, ``CnnPolicy``
for images, else ``MlpPolicy``; a policy that cannot read the env's observations is a one-line error.

Images reach the networks scaled to [0, 1] by SB3 (``normalize_images``) and are not normalised
otherwise. SB3 initialises every Linear and Conv2d orthogonally; evo keeps that for the MLP and
the actor/critic heads but re-initialises convolutions with Xavier-uniform weights and zero
biases: after building the model, call :func:`init_conv_xavier` on ``model.policy`` (a no-op
for policies without convolutions, so it is safe to call for every policy).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import torch as th
from stable_baselines3.common.policies import ActorCriticCnnPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn
from torch.nn import functional as F

from evo.errors import ConfigError

POLICY_NAMES = ("auto", "MlpPolicy", "CnnPolicy", "MultiInputPolicy", "impala")
_FLAT = (gym.spaces.Box, gym.spaces.Discrete, gym.spaces.MultiDiscrete, gym.spaces.MultiBinary)
"""Spaces SB3's policies read directly (alone or as the values of a Dict)."""


class _ResidualBlock(nn.Module):
    """``x + conv(relu(conv(relu(x))))`` with 3x3 convolutions that keep the shape."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(channels, channels, kernel_size=3, padding=1)
        self.conv1 = nn.Conv2d(channels, channels, kernel_size=3, padding=1)

    def forward(self, x: th.Tensor) -> th.Tensor:
        out = self.conv0(F.relu(x))
        out = self.conv1(F.relu(out))
        return x + out


class _ConvSequence(nn.Module):
    """3x3 conv, 3x3 max-pool with stride 2 (halves height and width), two residual blocks."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
        self.pool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.res0 = _ResidualBlock(out_channels)
        self.res1 = _ResidualBlock(out_channels)

    def forward(self, x: th.Tensor) -> th.Tensor:
        return self.res1(self.res0(self.pool(self.conv(x))))


class ImpalaCNN(BaseFeaturesExtractor):
    """IMPALA CNN of the Procgen paper: 3 conv sequences (16, 32, 32 channels), ReLU, flatten,
    Linear to ``features_dim``, ReLU. Expects channel-first images (SB3 transposes HWC ones).
    """

    def __init__(
        self,
        observation_space: gym.spaces.Box,
        features_dim: int = 256,
        channels: tuple[int, ...] = (16, 32, 32),
    ) -> None:
        super().__init__(observation_space, features_dim)
        shape = observation_space.shape
        if shape is None or len(shape) != 3 or shape[0] > min(shape[1:]):
            raise ValueError(f"ImpalaCNN needs channel-first (C, H, W) images, got shape {shape}")
        stacks: list[nn.Module] = []
        in_channels = shape[0]
        for out_channels in channels:
            stacks.append(_ConvSequence(in_channels, out_channels))
            in_channels = out_channels
        self.stacks = nn.Sequential(*stacks)
        with th.no_grad():
            n_flatten = self.stacks(th.zeros(1, *shape)).numel()
        self.linear = nn.Sequential(nn.Linear(n_flatten, features_dim), nn.ReLU())

    def forward(self, observations: th.Tensor) -> th.Tensor:
        x = F.relu(self.stacks(observations))
        return self.linear(th.flatten(x, start_dim=1))


def observation_kind(observation: Any) -> str:
    """``"dict"``, ``"image"`` or ``"vector"``: what an observation space needs of a policy. A bool
    is read as "is an image" (``True``) or "is a vector" (``False``). One-line :class:`ConfigError` for
    spaces SB3's policies cannot read, saying which wrapper turns them into one they can."""
    if isinstance(observation, bool):
        return "image" if observation else "vector"
    from gymnasium import spaces
    from stable_baselines3.common.preprocessing import is_image_space

    flatten = "; pass --wrapper gymnasium.wrappers.FlattenObservation"
    if isinstance(observation, spaces.Dict):
        nested = [k for k, sub in observation.spaces.items() if not isinstance(sub, _FLAT)]
        if nested:
            raise ConfigError(f"SB3's MultiInputPolicy reads a Dict of Box/Discrete/MultiDiscrete/MultiBinary spaces, "
                              f"but key(s) {', '.join(map(repr, nested))} hold other spaces{flatten}")
        return "dict"
    if isinstance(observation, _FLAT):
        return "image" if is_image_space(observation) else "vector"
    how = flatten if isinstance(observation, spaces.Tuple) else \
        "; write a wrapper that turns them into a Box or a Dict of Boxes"
    raise ConfigError(f"SB3 policies cannot read {type(observation).__name__} observations{how}")


def resolve_policy(name: str, observation: Any, algo: str = "ppo") -> tuple[str | type, dict[str, Any]]:
    """``(policy, policy_kwargs)`` for the SB3 algorithm ``algo`` from a ``--policy`` name
    (case-insensitive) and the env's observation space (or a bool: are they images).

    ``auto`` is ``MultiInputPolicy`` for Dict observations, ``CnnPolicy`` for image observations
    (uint8 HxWxC or CxHxW, as SB3's ``is_image_space`` defines them), else ``MlpPolicy``. A policy
    that cannot read the observations is a one-line :class:`ConfigError` saying which to pass.
    ``impala`` feeds the IMPALA CNN's 256 features straight to the heads (``net_arch=[]``), as in the
    Procgen paper: actor and critic for PPO/A2C, the Q-network's output layer for DQN (SAC and TD3
    the same way). Call :func:`init_conv_xavier` on ``model.policy`` after building the model.
    """
    canonical = {n.lower(): n for n in POLICY_NAMES}.get(name.lower())
    if canonical is None:
        raise ConfigError(f"unknown --policy {name!r} (known: {', '.join(POLICY_NAMES)})")
    kind = observation_kind(observation)
    if canonical == "auto":
        canonical = {"dict": "MultiInputPolicy", "image": "CnnPolicy", "vector": "MlpPolicy"}[kind]
    if kind == "dict" and canonical != "MultiInputPolicy":
        raise ConfigError(f"--policy {name} cannot read Dict observations; pass --policy MultiInputPolicy (or auto)")
    if kind != "dict" and canonical == "MultiInputPolicy":
        raise ConfigError(f"--policy {name} is for Dict observations; pass --policy auto "
                          f"({'CnnPolicy' if kind == 'image' else 'MlpPolicy'} here)")
    if canonical in ("CnnPolicy", "impala") and kind != "image":
        raise ConfigError(f"--policy {name} needs image observations (uint8 images, e.g. a ProcGen game); "
                          f"pass --policy MlpPolicy or auto")
    if canonical == "impala":
        impala = {
            "features_extractor_class": ImpalaCNN,
            "features_extractor_kwargs": {"features_dim": 256},
            "net_arch": [],
        }
        return (ActorCriticCnnPolicy if algo in ("ppo", "a2c") else "CnnPolicy"), impala
    return canonical, {}


def init_conv_xavier(policy: nn.Module) -> int:
    """Re-initialise every ``nn.Conv2d`` in ``policy``: Xavier-uniform weights, zero biases.

    Returns the number of layers changed (0 for a policy without convolutions).
    """
    count = 0
    for module in policy.modules():  # each shared module once
        if isinstance(module, nn.Conv2d):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
            count += 1
    return count
