"""The actor-critic networks of `nanovla rl`: an MLP (or a small CNN for image observations) with
a policy head and a value head, and the observation normalizer inside the module.

The face every algorithm here drives (and what a VLA policy wrapped for RL fine-tuning must
offer, `ActorCriticLike`):

- `dist(obs)`: the action distribution (`nanovla.rl.distributions`) of a batch of *normalized*
  observations (a tensor, or a dict of tensors for images);
- `value(obs)`: (B,) state values of the same batch;
- `env_action(raw)`: the raw samples mapped to what the env takes (int indices; a Gaussian
  sample clipped to the action box, or tanh-squashed and scaled to it);
- `prepare(obs)`: numpy observations from the env -> the normalized tensors `dist` takes
  (`update_stats=True` also merges them into the running statistics, during training only);
- `act(obs, deterministic)`: `prepare` + `dist` + sample (or mode) + `env_action`: deployment;
- optionally `dist_value(obs)`: `dist` and `value` in one call (the rollout uses it when an
  actor-critic has it).

With vector observations `dist` and `value` run the MLPs as `addmm` + activation calls on the
layers' own parameters (`mlp_layers`), skipping `nn.Module` dispatch: the rollout calls them
once per env step on a handful of rows, where the dispatch costs more than the arithmetic.

Architecture as CleanRL's and SB3's defaults: separate actor and critic MLPs (64, 64) with tanh,
orthogonal initialization (gain sqrt 2 for hidden layers, 0.01 for the policy head, 1 for the
value head: Andrychowicz et al. 2021, https://arxiv.org/abs/2006.05990). The log-std of a
Gaussian is a free parameter (`log_std="param"`, state-independent) or a second output of the
actor's last layer (`log_std="state"`, clamped to [-5, 2]). Image observations go through a
small Nature-DQN-style CNN (Mnih et al. 2015) per network, joined with the proprioception.
`save_pretrained(dir)` / `from_pretrained(dir)` write / read `config.json` + `model.safetensors`.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import gymnasium as gym
import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

from nanovla.codec import to_json
from nanovla.constants import CONFIG_FILE, WEIGHTS_FILE
from nanovla.errors import InputError
from nanovla.io import read_json_object, write_json
from nanovla.models.policy.pretrained import read_safetensors
from nanovla.rl.distributions import Categorical, DiagGaussian, TanhGaussian
from nanovla.rl.normalize import RunningMeanStd

SQUASH = ("clip", "tanh")
LOG_STD = ("param", "state")
LOG_STD_RANGE = (-5.0, 2.0)


class ActorCriticLike(Protocol):
    """What PPO and REINFORCE drive (see the module docs)."""

    def dist(self, obs: Any) -> Any: ...

    def value(self, obs: Any) -> torch.Tensor: ...

    def env_action(self, raw: torch.Tensor) -> np.ndarray: ...

    def prepare(self, obs: Any, update_stats: bool = False) -> Any: ...


@dataclass
class ActorCriticConfig:
    """The networks' shape; written as the checkpoint's config.json."""

    obs_dim: int
    """length of the vector observation (the proprioception with image observations)"""
    action_dim: int
    """number of discrete actions, or the continuous action's length"""
    discrete: bool
    """categorical policy (True) or Gaussian (False)"""
    action_low: tuple[float, ...] = ()
    """the continuous action box's lower bounds"""
    action_high: tuple[float, ...] = ()
    """the continuous action box's upper bounds"""
    image_size: int = 0
    """side of (H, W, 3) uint8 image observations; 0: vector observations only"""
    hidden: tuple[int, ...] = (64, 64)
    """hidden layer widths of the actor and of the critic"""
    activation: str = "tanh"
    """tanh or relu"""
    squash: str = "clip"
    """how a Gaussian sample becomes an action in the box: clip, or tanh (then scaled)"""
    log_std: str = "param"
    """Gaussian log-std: a state-independent parameter (param) or an actor output (state)"""
    log_std_init: float = 0.0
    """initial log-std (the parameter, or the bias of the log-std output)"""
    normalize_obs: bool = False
    """normalize vector observations with running statistics (kept in the weights)"""


def _layer(inputs: int, outputs: int, gain: float) -> nn.Linear:
    layer = nn.Linear(inputs, outputs)
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


class Trunk(nn.Module):
    """obs -> features: an MLP over the vector, after a CNN over the image when there is one."""

    def __init__(self, config: ActorCriticConfig) -> None:
        super().__init__()
        act = {"tanh": nn.Tanh, "relu": nn.ReLU}[config.activation]
        self.cnn: nn.Module | None = None
        inputs = config.obs_dim
        if config.image_size:
            self.cnn = nn.Sequential(
                nn.Conv2d(3, 16, 8, stride=4), nn.ReLU(),
                nn.Conv2d(16, 32, 4, stride=2), nn.ReLU(), nn.Flatten(),
            )  # fmt: skip
            with torch.no_grad():
                probe = torch.zeros(1, 3, config.image_size, config.image_size)
                inputs += int(self.cnn(probe).shape[1])
        layers: list[nn.Module] = []
        for width in config.hidden:
            layers += [_layer(inputs, width, math.sqrt(2)), act()]
            inputs = width
        self.mlp = nn.Sequential(*layers)
        self.out_features = inputs

    def forward(self, obs: Any) -> torch.Tensor:
        if self.cnn is None:
            return self.mlp(obs)
        image = obs["image"].permute(0, 3, 1, 2).float() / 255.0
        return self.mlp(torch.cat([self.cnn(image), obs["state"]], dim=1))


class ActorCritic(nn.Module):
    """Actor and critic networks with the face described in the module docs."""

    def __init__(self, config: ActorCriticConfig) -> None:
        super().__init__()
        check_config(config)
        self.config = config
        self.obs_norm = RunningMeanStd((config.obs_dim,))
        self.actor, self.critic = Trunk(config), Trunk(config)
        state_std = not config.discrete and config.log_std == "state"
        outputs = config.action_dim * (2 if state_std else 1)
        self.policy_head = _layer(self.actor.out_features, outputs, 0.01)
        if state_std:
            nn.init.constant_(self.policy_head.bias[config.action_dim :], config.log_std_init)
        self.log_std = None
        if not config.discrete and config.log_std == "param":
            self.log_std = nn.Parameter(torch.full((config.action_dim,), config.log_std_init))
        self.value_head = _layer(self.critic.out_features, 1, 1.0)
        self.register_buffer("low", torch.tensor(config.action_low, dtype=torch.float32))
        self.register_buffer("high", torch.tensor(config.action_high, dtype=torch.float32))

    def mlp_layers(self) -> tuple[list, list] | None:
        """The (weight, bias) pairs of the actor (its head last) and of the critic (the value
        head last) for vector observations; None with a CNN."""
        if self.actor.cnn is not None:
            return None
        layers = self.__dict__.get("_mlp_layers")
        if layers is None:  # parameters are updated in place (optimizer, load_state_dict)
            pairs = lambda trunk, head: [  # noqa: E731
                (m.weight, m.bias) for m in [*trunk.mlp, head] if isinstance(m, nn.Linear)
            ]
            layers = (pairs(self.actor, self.policy_head), pairs(self.critic, self.value_head))
            self.__dict__["_mlp_layers"] = layers
        return layers

    def _run(self, layers: list, x: torch.Tensor) -> torch.Tensor:
        """An MLP of `layers` as addmm + activation calls (no module dispatch: the rollout
        calls it once per env step)."""
        act = torch.tanh if self.config.activation == "tanh" else torch.relu
        for weight, bias in layers[:-1]:
            x = act(torch.addmm(bias, x, weight.t()))
        weight, bias = layers[-1]
        return torch.addmm(bias, x, weight.t())

    def _fast(self, obs: Any) -> tuple[list, list] | None:
        layers = self.mlp_layers()
        return (
            layers
            if layers is not None and isinstance(obs, torch.Tensor) and obs.dim() == 2
            else None
        )

    def dist(self, obs: Any) -> Categorical | DiagGaussian:
        """The action distribution of normalized observations."""
        fast = self._fast(obs)
        out = self._run(fast[0], obs) if fast else self.policy_head(self.actor(obs))
        return self._dist(out)

    def dist_value(self, obs: Any) -> tuple[Categorical | DiagGaussian, torch.Tensor]:
        """`dist(obs)` and `value(obs)` in one call (what the rollout asks each step)."""
        return self.dist(obs), self.value(obs)

    def _dist(self, out: torch.Tensor) -> Categorical | DiagGaussian:
        if self.config.discrete:
            return Categorical(out)
        if self.log_std is not None:
            mean, log_std = out, self.log_std
        else:
            mean, log_std = out.chunk(2, dim=-1)
            log_std = log_std.clamp(*LOG_STD_RANGE)
        cls = TanhGaussian if self.config.squash == "tanh" else DiagGaussian
        return cls(mean, log_std)

    def value(self, obs: Any) -> torch.Tensor:
        """(B,) state values of normalized observations."""
        fast = self._fast(obs)
        out = self._run(fast[1], obs) if fast else self.value_head(self.critic(obs))
        return out.squeeze(-1)

    def env_action(self, raw: torch.Tensor) -> np.ndarray:
        """Raw samples -> env actions: indices; clipped, or tanh-squashed and scaled, to the box."""
        if self.config.discrete:
            return raw.numpy()
        if self.config.squash == "tanh":
            unit = torch.tanh(raw)
            return (self.low + (unit + 1.0) * 0.5 * (self.high - self.low)).numpy()
        return torch.maximum(torch.minimum(raw, self.high), self.low).numpy()

    def prepare(self, obs: Any, update_stats: bool = False) -> Any:
        """numpy observations -> float32 tensors, the vector part normalized when configured."""
        if isinstance(obs, dict):
            return {"image": torch.from_numpy(np.asarray(obs["image"])),
                    "state": self.prepare(obs["state"], update_stats)}  # fmt: skip
        vector = torch.as_tensor(np.asarray(obs, dtype=np.float32))
        if not self.config.normalize_obs:
            return vector
        if update_stats:
            self.obs_norm.update(vector)
        return self.obs_norm.normalize(vector)

    @torch.no_grad()
    def act(self, obs: Any, deterministic: bool = True) -> np.ndarray:
        """Env actions for numpy observations (the mode, or a sample)."""
        dist = self.dist(self.prepare(obs))
        return self.env_action(dist.mode() if deterministic else dist.sample())

    def save_pretrained(self, directory: str | Path) -> None:
        """`config.json` + `model.safetensors` into `directory` (created)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().contiguous() for k, v in self.state_dict().items()}
        save_file(tensors, str(directory / WEIGHTS_FILE))
        write_json(directory / CONFIG_FILE, to_json(self.config))

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> ActorCritic:
        """The policy `save_pretrained` wrote into `directory`."""
        directory = Path(directory)
        raw = read_json_object(directory / CONFIG_FILE)
        names = {f.name for f in dataclasses.fields(ActorCriticConfig)}
        unknown = sorted(set(raw) - names)
        if unknown:
            raise InputError(f"{directory / CONFIG_FILE}: unknown keys {unknown}")
        tuples = {k: tuple(v) for k, v in raw.items() if isinstance(v, list)}
        model = cls(ActorCriticConfig(**{**raw, **tuples}))
        model.load_state_dict(read_safetensors(directory / WEIGHTS_FILE))
        return model


def check_config(config: ActorCriticConfig) -> None:
    """InputError naming the option when the networks cannot be built as asked."""
    if config.squash not in SQUASH:
        raise InputError(f"--squash: got {config.squash!r}; allowed: {', '.join(SQUASH)}")
    if config.log_std not in LOG_STD:
        raise InputError(f"--log-std: got {config.log_std!r}; allowed: {', '.join(LOG_STD)}")
    if config.activation not in ("tanh", "relu"):
        raise InputError(f"--activation: got {config.activation!r}; allowed: tanh, relu")
    if not config.hidden or min(config.hidden) < 1:
        raise InputError(f"--hidden: layer widths must be >= 1, got {config.hidden}")


def config_for(
    env: Any, hidden: tuple[int, ...], activation: str, squash: str, log_std: str,
    log_std_init: float, normalize_obs: bool,
) -> ActorCriticConfig:  # fmt: skip
    """The `ActorCriticConfig` for a `VecEnv`'s spaces and the command's policy options."""
    space, obs_space = env.action_space, env.observation_space
    image_size = 0
    if isinstance(obs_space, gym.spaces.Dict):
        image_size = int(obs_space["image"].shape[0])
        obs_space = obs_space["state"]
    if len(obs_space.shape) != 1:
        raise InputError(f"--env: observations of shape {obs_space.shape}; expected a vector")
    common = dict(obs_dim=int(obs_space.shape[0]), image_size=image_size, hidden=tuple(hidden),
                  activation=activation, squash=squash, log_std=log_std,
                  log_std_init=float(log_std_init), normalize_obs=normalize_obs)  # fmt: skip
    if isinstance(space, gym.spaces.Discrete):
        for option, value, default in (("squash", squash, "clip"), ("log-std", log_std, "param")):
            if value != default:
                raise InputError(
                    f"--{option}: applies to continuous (Box) actions; this env's actions are "
                    f"{space} (categorical policy)"
                )
        return ActorCriticConfig(action_dim=int(space.n), discrete=True, **common)
    if isinstance(space, gym.spaces.Box) and len(space.shape) == 1:
        low, high = space.low.astype(float), space.high.astype(float)
        if not (np.isfinite(low).all() and np.isfinite(high).all()):
            raise InputError("--env: the action box must be bounded for clip / tanh")
        return ActorCriticConfig(action_dim=int(space.shape[0]), discrete=False,
                                 action_low=tuple(low), action_high=tuple(high), **common)  # fmt: skip
    raise InputError(f"--env: action space {space} is neither Discrete nor a 1-d Box")


def config_json(config: ActorCriticConfig) -> str:
    """The config as compact JSON (for comparisons on resume)."""
    return json.dumps(to_json(config), sort_keys=True)
