"""`Policy`: the VLA model. Image + instruction + proprio state -> a chunk of future actions.

    image uint8 (B,3,H,W) -> normalise -> vision.forward_features -> grid (B,C,h,w) --+
    instruction list[str] -> InstructionEncoder (cached per string) -> text (B,Dt) ---+-> fusion
    state (B,D) -> standardise ---------------------------------------------------------+    |
             ActionChunkHead (MLP + tanh) or BinnedActionHead -> (B,k,A) in [-1,1] <-----+
                                     -> unnormalise with the dataset's action min/max

The seed's SimpleVLA (VisionEncoder + LanguageEncoder + concat + ActionDecoder) is this model
with ``fusion="concat"``; see `fusion.py`, `heads.py`, `loss.py` and `vla_cnn.py` for where and
why each part departs from the seed. Save/load lives in `pretrained.py`.

Symbols: B batch, k = config.chunk, A = action_dim, D = state_dim, N = envs in select_action.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from nanovla.errors import InputError
from nanovla.models.policy import pretrained
from nanovla.models.policy.configuration_policy import PolicyConfig
from nanovla.models.policy.fusion import build_fusion
from nanovla.models.policy.heads import ActionChunkHead, BinnedActionHead
from nanovla.models.policy.language import InstructionEncoder
from nanovla.models.policy.loss import masked_binned_loss, masked_regression_loss
from nanovla.models.policy.normalize import ACTION, IMAGE, STATE, Normalizer
from nanovla.models.policy.observation import observation_to_batch
from nanovla.models.policy.vision import build_vision_encoder
from nanovla.models.text.tokenizer import Tokenizer

BATCH_KEYS = (IMAGE, STATE, ACTION, "action_is_pad", "task")
GOAL = pretrained.GOAL  # optional batch key: privileged subgoal positions (auxiliary target)


class Policy(nn.Module):
    """VLA policy: `forward(batch) -> (loss, metrics)` for training, `select_action(obs)` to act."""

    def __init__(
        self,
        config: PolicyConfig,
        dataset_stats: Mapping[str, Any] | None = None,
        tokenizer: Tokenizer | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(config, PolicyConfig):
            raise InputError(f"config must be a PolicyConfig, got {type(config).__name__}")
        self.config = config
        self.normalizer = Normalizer(config.state_dim, config.action_dim, dataset_stats)
        self.vision, grid_shape = build_vision_encoder(config)
        self.language = InstructionEncoder(config, tokenizer)
        state_dim = config.state_dim if config.use_state else 0
        self.fusion = build_fusion(config, grid_shape, self.language.out_dim, state_dim)
        head_sizes = (config.hidden_dim, config.head_layers, config.dropout)
        self.head: ActionChunkHead | BinnedActionHead
        if config.action_head == "bins":
            self.head = BinnedActionHead(
                self.fusion.out_dim, config.chunk, config.action_dim, config.action_bins,
                *head_sizes,
            )  # fmt: skip
        else:
            self.head = ActionChunkHead(
                self.fusion.out_dim, config.chunk, config.action_dim, *head_sizes
            )
        # Auxiliary grounding head: fused features -> subgoal positions (see PolicyConfig.goal_weight)
        self.goal_head = None
        if config.goal_dim and config.goal_weight > 0:
            self.goal_head = nn.Sequential(
                nn.Linear(self.fusion.out_dim, config.hidden_dim // 2),
                nn.ReLU(),
                nn.Linear(config.hidden_dim // 2, config.goal_dim),
            )
        weights = torch.tensor(config.loss_weights or [1.0] * config.action_dim)
        self.register_buffer("loss_weights", weights.float(), persistent=False)
        self._queue: torch.Tensor | None = None  # (N, n_action_steps, A) actions left to execute
        self._queue_pos: np.ndarray | None = None  # (N,) next index into the queue per env

    @property
    def tokenizer(self) -> Tokenizer | None:
        return self.language.tokenizer

    # ----------------------------------------------------------------------------- the network
    def predict_chunk(
        self, image: torch.Tensor, state: torch.Tensor, instructions: list[str]
    ) -> torch.Tensor:
        """Raw uint8 image (B,3,H,W), raw state (B,D), B strings -> normalised chunk (B,k,A)."""
        out = self.head(self.encode(image, state, instructions))
        if isinstance(self.head, BinnedActionHead):
            return self.head.decode(out)  # (B, k, A, bins) logits -> (B, k, A)
        return out  # (B, k, A) in [-1, 1]

    def encode(
        self, image: torch.Tensor, state: torch.Tensor, instructions: list[str]
    ) -> torch.Tensor:
        """Raw uint8 image (B,3,H,W), raw state (B,D), B strings -> fused features (B,F)."""
        self.normalizer.check_ready()
        size = self.config.image_size
        if image.ndim != 4 or image.shape[1] != 3 or tuple(image.shape[2:]) != (size, size):
            raise InputError(
                f"{IMAGE} must be (B, 3, {size}, {size}) (config.image_size={size}), "
                f"got {tuple(image.shape)}"
            )
        if state.ndim != 2 or state.shape[1] != self.config.state_dim:
            raise InputError(
                f"{STATE} must be (B, {self.config.state_dim}) (config.state_dim), "
                f"got {tuple(state.shape)}"
            )
        if len(instructions) != image.shape[0]:
            raise InputError(f"got {len(instructions)} instructions for {image.shape[0]} images")
        if self.config.channels_last:  # convert the uint8 image: 4x less to copy than floats
            image = image.contiguous(memory_format=torch.channels_last)
        grid = self.vision.forward_features(self.normalizer.image(image))  # (B, C, h, w)
        text = self.language(instructions, device=grid.device)  # (B, Dt)
        proprio = self.normalizer.state(state) if self.config.use_state else state[:, :0]
        return self.fusion(grid, text, proprio)  # (B, F)

    def forward(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Training/validation step on a raw batch -> (loss, metrics).

        batch: observation.image uint8 (B,3,H,W), observation.state (B,D), action (B,k,A),
        action_is_pad bool (B,k), task list[str]. Metrics: loss, l1 and l1_<name> per action
        dimension (mean |error| in raw action units over non-padded steps).
        """
        missing = [key for key in BATCH_KEYS if key not in batch]
        if missing:
            raise InputError(f"batch is missing keys {missing} (needs {list(BATCH_KEYS)})")
        action, is_pad = batch[ACTION], batch["action_is_pad"]
        expected = (self.config.chunk, self.config.action_dim)
        if action.ndim != 3 or tuple(action.shape[1:]) != expected:
            raise InputError(
                f"batch[{ACTION!r}] must be (B, chunk, action_dim) = "
                f"(B, {expected[0]}, {expected[1]}), "
                f"got {tuple(action.shape)}"
            )
        if tuple(is_pad.shape) != tuple(action.shape[:2]):
            raise InputError(
                f"batch['action_is_pad'] must be {tuple(action.shape[:2])}, "
                f"got {tuple(is_pad.shape)}"
            )
        fused = self.encode(batch[IMAGE], batch[STATE], list(batch["task"]))  # (B, F)
        target = self.normalizer.action(action)  # (B, k, A) in [-1, 1]
        if isinstance(self.head, BinnedActionHead):
            logits = self.head(fused)  # (B, k, A, bins)
            loss = masked_binned_loss(logits, self.head.two_hot(target), is_pad, self.loss_weights)
            pred = self.head.decode(logits.detach())  # (B, k, A)
        else:
            pred = self.head(fused)  # (B, k, A)
            loss = masked_regression_loss(
                pred, target, is_pad, self.loss_weights, self.config.loss, self.config.loss_beta
            )
        metrics = self._metrics(loss, pred, action, is_pad)
        if self.goal_head is not None and GOAL in batch:
            # Table coordinates [0, 1] -> [-1, 1], the scale of the spatial readouts.
            goal_target = batch[GOAL].to(fused.dtype) * 2.0 - 1.0  # (B, goal_dim)
            goal_error = self.goal_head(fused) - goal_target  # (B, goal_dim)
            goal_loss = goal_error.pow(2).mean()
            loss = loss + self.config.goal_weight * goal_loss
            metrics["bc_loss"], metrics["loss"] = metrics["loss"], loss.detach()
            metrics["goal_l1"] = goal_error.detach().abs().mean() / 2.0  # table units
        return loss, metrics

    @torch.no_grad()
    def _metrics(
        self, loss: torch.Tensor, pred: torch.Tensor, action: torch.Tensor, is_pad: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        error = (self.normalizer.unnormalize_action(pred) - action).abs()  # (B, k, A)
        valid = (~is_pad).to(error.dtype).unsqueeze(-1)  # (B, k, 1)
        per_dim = (error * valid).sum((0, 1)) / valid.sum().clamp_min(1.0)  # (A,)
        metrics = {"loss": loss.detach(), "l1": per_dim.mean()}
        for i, name in enumerate(self.config.action_labels):
            metrics[f"l1_{name}"] = per_dim[i]
        return metrics

    # -------------------------------------------------------------------------------- acting
    @torch.inference_mode()
    def select_action(self, obs: Mapping[str, Any]) -> np.ndarray:
        """World observation -> action to execute now, float32 numpy in raw action units.

        obs: ``image`` (N,H,W,3) uint8, ``state`` (N,D), ``instruction`` list of N str (a single
        unbatched observation, image (H,W,3) and one str, is accepted and gives shape (A,)).
        Returns (N, A). Switches the policy to eval mode and leaves it there (call
        ``policy.train()`` before training on). With ``n_action_steps > 1`` each env executes its
        predicted chunk for that many steps before the policy predicts again; an auto-resetting
        world starts new episodes mid-queue, so after each ``world.step`` call
        ``policy.reset(env_ids=np.flatnonzero(terminated | truncated))``.
        """
        if self.training:
            self.eval()
        image, state, instructions, single = observation_to_batch(obs, self._device())
        if self.config.n_action_steps == 1:
            actions = self.predict_chunk(image, state, instructions)[:, 0]  # (N, A)
        else:
            actions = self._next_from_queue(image, state, instructions)  # (N, A)
        actions = self.normalizer.unnormalize_action(actions).float().cpu().numpy()
        return actions[0] if single else actions

    def _next_from_queue(
        self, image: torch.Tensor, state: torch.Tensor, instructions: list[str]
    ) -> torch.Tensor:
        num_envs, steps = image.shape[0], self.config.n_action_steps
        if self._queue is None or self._queue.shape[0] != num_envs:
            self._queue = torch.zeros(num_envs, steps, self.config.action_dim, device=image.device)
            self._queue_pos = np.full(num_envs, steps, dtype=np.int64)
        need = np.flatnonzero(self._queue_pos >= steps)  # envs whose queue is used up
        if len(need):
            texts = [instructions[i] for i in need]
            rows = torch.from_numpy(need).to(image.device)
            chunk = self.predict_chunk(image[rows], state[rows], texts)  # (n, k, A)
            self._queue[rows] = chunk[:, :steps]
            self._queue_pos[need] = 0
        positions = torch.from_numpy(self._queue_pos).to(image.device)
        actions = self._queue[torch.arange(num_envs, device=image.device), positions]  # (N, A)
        self._queue_pos += 1
        return actions

    def reset(self, env_ids: Any = None) -> None:
        """Forget queued actions: of all envs (None) or of `env_ids` (ints or a bool mask)."""
        if env_ids is None or self._queue_pos is None:
            self._queue, self._queue_pos = None, None
            return
        self._queue_pos[np.asarray(env_ids)] = self.config.n_action_steps

    def _device(self) -> torch.device:
        return self.normalizer.image_mean.device

    # --------------------------------------------------------------------------- save / load
    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Write config.json, model.safetensors (weights + stats) and tokenizer.json atomically."""
        pretrained.save_policy(self, directory)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> Policy:
        """Rebuild a policy saved by `save_pretrained`, in eval mode."""
        config, state_dict, tokenizer = pretrained.load_policy_files(directory)
        policy = cls(config, tokenizer=tokenizer)
        pretrained.load_weights(policy, state_dict, directory)
        return policy.eval()

    @classmethod
    def from_dataset(cls, config: PolicyConfig, dataset: Any) -> Policy:
        """Policy for `dataset`: its stats, its state/action sizes and a tokenizer of its tasks."""
        stats = getattr(dataset, "stats", None)
        tasks = getattr(dataset, "tasks", None)
        if not isinstance(stats, Mapping) or tasks is None:
            raise InputError("Policy.from_dataset needs a dataset with .stats (dict) and .tasks")
        config = pretrained.config_for_stats(config, stats)
        tokenizer = None
        if config.text != "minilm":
            tokenizer = Tokenizer.from_texts(tasks, level=config.tokenizer_level)
        return cls(config, dataset_stats=stats, tokenizer=tokenizer)
