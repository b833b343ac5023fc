"""The VLA policy as a PPO actor-critic: `VLAActorCritic` (what `nanovla rl finetune` trains).

It gives a BC-trained `nanovla.models.policy.Policy` the face PPO drives
(`rl.policy.ActorCriticLike`: `prepare`, `dist`, `value`, `env_action`):

- **Actor.** The policy's tanh action head predicts a chunk of k normalized actions in [-1, 1];
  its *first* action is the mean mu(s) of a diagonal Gaussian `DiagGaussian(mu, exp(log_std))`
  with a learned, state-independent log-std (one per action dimension, in normalized units).
  A sample u is clipped to [-1, 1] and unnormalized with the dataset's action range
  (`normalizer.unnormalize_action`) before the world sees it; the log-probability is that of
  the unclipped u (`rl/distributions.py`). At initialization mu(s) is exactly the BC action
  `select_action` executes, so the deterministic policy starts as the BC policy.
- **Critic: asymmetric** (Pinto et al. 2017, "Asymmetric Actor Critic for Image-Based Robot
  Learning", https://arxiv.org/abs/1710.06542). The value is a small MLP on the world's
  privileged state: proprioception, the current subgoal's object and place positions
  (`World.goal_positions`), the fraction of the episode's step limit used, and the family
  one-hot. Why: the value of a push state is almost a function of where the object is relative
  to its zone and how much time is left, which the privileged vector says directly, while a
  head on the fused image features would first have to learn to read it from pixels (and would
  share, and disturb, the actor's features through its gradients). The critic is used only in
  training; the deployed actor still sees only the image, proprioception and instruction.
- **Reference.** A frozen copy of the BC policy; `prepare` stores its mean mu_ref(s) with each
  observation, so the rollout buffer carries it and `kl_to_reference` costs no second forward
  pass. The reference Gaussian is N(mu_ref, s0) with s0 = exp(log_std_init):
  KL(pi || pi_ref) = sum_d [ log(s0 / s) + (s^2 + (mu - mu_ref)^2) / (2 s0^2) - 1/2 ],
  zero at initialization.
- **Frozen parts.** The language encoder (default) and the unused auxiliary goal head never
  get gradients; the vision encoder too with `freeze_vision`. The policy stays in eval mode
  throughout (dropout off, BatchNorm on its running statistics), so the log-probabilities of
  the rollout and of the update are of the same function.

Instructions are strings, the rollout buffer (and the non-finite check of the observations)
takes numbers: the env gives each instruction's index into a `Vocabulary` it shares with the
actor-critic (grown as new strings appear), and `dist` maps the indices back to strings.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import torch
from torch import nn

from nanovla.models.policy import Policy
from nanovla.rl.distributions import DiagGaussian
from nanovla.world.tasks import TASK_FAMILIES

CRITIC_DIM = 4 + 4 + 1 + len(TASK_FAMILIES)
"""proprioception, subgoal object + place positions, step fraction, family one-hot"""


def _layer(inputs: int, outputs: int, gain: float) -> nn.Linear:
    layer = nn.Linear(inputs, outputs)
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


class Vocabulary:
    """Instruction strings <-> int ids, shared by the env (which writes) and the actor-critic."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self._ids: dict[str, int] = {}

    def ids(self, texts: list[str]) -> np.ndarray:
        """(B,) int64 ids of `texts`, new strings appended."""
        for text in texts:
            if text not in self._ids:
                self._ids[text] = len(self.texts)
                self.texts.append(text)
        return np.array([self._ids[text] for text in texts], dtype=np.int64)

    def lookup(self, ids: torch.Tensor) -> list[str]:
        """The strings of (B,) ids."""
        return [self.texts[i] for i in ids.tolist()]


class VLAActorCritic(nn.Module):
    """A BC `Policy` as a Gaussian actor with an asymmetric critic (see the module docs)."""

    def __init__(
        self,
        policy: Policy,
        vocabulary: Vocabulary,
        log_std_init: float = -1.0,
        critic_hidden: tuple[int, ...] = (128, 128),
        freeze_language: bool = True,
        freeze_vision: bool = False,
    ) -> None:
        super().__init__()
        self.policy = policy
        self.reference = copy.deepcopy(policy).requires_grad_(False).eval()
        action_dim = policy.config.action_dim
        self.log_std = nn.Parameter(torch.full((action_dim,), float(log_std_init)))
        self.register_buffer("ref_log_std", torch.full((action_dim,), float(log_std_init)))
        layers: list[nn.Module] = []
        width = CRITIC_DIM
        for hidden in critic_hidden:
            layers += [_layer(width, hidden, math.sqrt(2)), nn.Tanh()]
            width = hidden
        self.critic = nn.Sequential(*layers, _layer(width, 1, 1.0))
        if policy.goal_head is not None:
            policy.goal_head.requires_grad_(False)  # auxiliary BC target, not in the RL loss
        self.train_language = not freeze_language
        if freeze_language:
            policy.language.requires_grad_(False)
        else:
            policy.language.word_dropout = 0.0  # the update must see the rollout's function
        if freeze_vision:
            policy.vision.requires_grad_(False)
        self.vocabulary = vocabulary
        self.train()

    def train(self, mode: bool = True) -> VLAActorCritic:
        """Only the critic (and a trained language encoder) follow `mode`; the policies stay
        in eval mode (module docs)."""
        super().train(mode)
        self.policy.eval()
        self.reference.eval()
        if self.train_language:  # eval mode would cache text features computed without grad
            self.policy.language.train(mode)
        return self

    def actor_parameters(self) -> list[nn.Parameter]:
        """The trainable parameters of the actor: the policy's unfrozen ones and the log-std."""
        return [p for p in self.policy.parameters() if p.requires_grad] + [self.log_std]

    # ----------------------------------------------------------------------------- the face
    def prepare(self, obs: dict[str, Any], update_stats: bool = False) -> dict[str, torch.Tensor]:
        """numpy observations (image, state, text ids, critic) -> the tensors `dist` and `value`
        take, with the reference policy's mean (`update_stats`: nothing to update here)."""
        prepared = {
            "image": torch.from_numpy(np.ascontiguousarray(obs["image"])),
            "state": torch.as_tensor(np.asarray(obs["state"], dtype=np.float32)),
            "text": torch.as_tensor(np.asarray(obs["text"], dtype=np.int64)),
            "critic": torch.as_tensor(np.asarray(obs["critic"], dtype=np.float32)),
        }
        with torch.no_grad():
            prepared["ref_mean"] = self._mean(self.reference, prepared)
        return prepared

    def _mean(self, policy: Policy, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, A) the first action of `policy`'s normalized chunk."""
        texts = self.vocabulary.lookup(obs["text"])
        features = policy.encode(obs["image"].permute(0, 3, 1, 2), obs["state"], texts)
        return policy.head(features)[:, 0]

    def dist(self, obs: dict[str, torch.Tensor]) -> DiagGaussian:
        """N(mu(s), exp(log_std)^2) over normalized actions."""
        return DiagGaussian(self._mean(self.policy, obs), self.log_std)

    def value(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B,) values from the privileged critic input."""
        return self.critic(obs["critic"]).squeeze(-1)

    def env_action(self, raw: torch.Tensor) -> np.ndarray:
        """Raw normalized samples -> clipped to [-1, 1] -> the world's action units."""
        unit = raw.clamp(-1.0, 1.0)
        return self.policy.normalizer.unnormalize_action(unit).float().numpy()

    def kl_to_reference(self, obs: dict[str, torch.Tensor], dist: DiagGaussian) -> torch.Tensor:
        """(B,) KL(pi(.|s) || N(mu_ref(s), s0)) in closed form (module docs)."""
        ref_std = self.ref_log_std.exp()
        gap = (dist.mean - obs["ref_mean"]) ** 2
        per_dim = self.ref_log_std - dist.log_std + (dist.std**2 + gap) / (2 * ref_std**2) - 0.5
        return per_dim.sum(-1)
