"""`PolicyConfig`: what defines a VLA policy's architecture and loss; JSON round-trippable.

As LeRobot's ``configuration_x.py``: the options you will most likely change come first; the
config is saved as ``config.json`` beside the weights, so a checkpoint rebuilds its own model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from nanovla.codec import from_json, to_json
from nanovla.errors import InputError
from nanovla.models.text.tokenizer import LEVELS

TEXT_ENCODERS: tuple[str, ...] = ("lstm", "minilm", "transformer")
FUSIONS: tuple[str, ...] = ("film", "concat")
READOUTS: tuple[str, ...] = ("keypoints", "flatten", "attention")
LOSSES: tuple[str, ...] = ("smooth_l1", "mse")
ACTION_HEADS: tuple[str, ...] = ("tanh", "bins")


@dataclass
class PolicyConfig:
    """A vision-language-action policy: image + instruction + proprio state -> action chunk.

    Defaults: vla_cnn + word-level LSTM + FiLM + keypoint readout + tanh MLP head, ~0.3 M
    parameters (the exact count grows with the vocabulary; `nanovla train` prints it). With these
    defaults vla_cnn gives an 8x8 token grid on 64x64 images (a 4x4/4 stem, then one stride-2
    stage); the default `nanovla train` run (`nanovla.pipeline.default_policy_config`) sets
    `vision_widths=(32,)`, dropping that stage, for a 16x16 grid. Its training throughput is
    measured by `benchmarks/train_throughput.py` (samples/s) and its acting latency by
    `benchmarks/policy_latency.py`.
    """

    vision: str = "vla_cnn"
    """vision encoder: "vla_cnn" (small fast CNN), any `nanovla.models.create_model` name whose
    model has `forward_features` returning a (B, C, h, w) grid (or square (B, N, C) tokens), or
    "clip:PATH" (the image tower of a CLIP saved by `nanovla lab clip`; vision_* options unused)"""
    text: str = "lstm"
    """language encoder: "lstm" (the study guide's LSTM, trained from scratch), "minilm" (frozen
    pretrained all-MiniLM-L6-v2, needs nanovla[minilm]), "transformer" (small, from scratch) or
    "clip:PATH" (the text tower of a CLIP saved by `nanovla lab clip`, with its tokenizer) or
    "translate:PATH" (the frozen encoder of `nanovla lab translate`'s model, mean-pooled)"""
    clip_frozen: bool = False
    """with clip:PATH encoders: keep them frozen (no gradients, BatchNorm statistics as
    pre-trained) instead of fine-tuning them with the policy"""
    fusion: Literal["film", "concat"] = "film"
    """"film" (feature-wise linear modulation): the instruction scales and shifts every channel
    of the image features, so the network can pick out the object it names; "concat": the study
    guide's baseline VLA (SimpleVLA): pooled image features concatenated with the text vector"""
    readout: Literal["keypoints", "flatten", "attention"] = "keypoints"
    """how the head reads the fused feature grid while keeping *where* things are: "keypoints"
    (spatial softmax: each channel becomes the expected x, y of where it fires, plus its mean),
    "flatten" (1x1 conv to readout_channels, then the whole grid) or "attention" (the
    instruction queries the grid cells: attended x, y + features per head)"""
    chunk: int = 4
    """actions predicted per frame (action chunking); 1 = plain single-step BC"""
    n_action_steps: int = 1
    """actions of each predicted chunk executed before predicting again (1 <= n <= chunk)"""
    tokenizer_level: Literal["word", "char", "particle"] = "word"
    """instruction tokenizer for lstm/transformer: "word", "char" (copes better with Korean
    particles and unseen paraphrases, at a longer sequence) or "particle" (words, Korean
    particles split off their nouns: models/text/tokenizer.py)"""
    image_size: int = 64
    """side of the square input images in pixels"""
    state_dim: int = 4
    """proprioceptive state size D (filled from the dataset's stats by `Policy.from_dataset`)"""
    action_dim: int = 3
    """action size A (filled from the dataset's stats by `Policy.from_dataset`)"""
    action_names: tuple[str, ...] = ("dx", "dy", "grip")
    """one name per action dimension, used in metric keys (l1_dx, ...); empty = dim0, dim1, ..."""
    use_state: bool = True
    """feed the proprioceptive state to the head (False: vision + language only)"""
    vision_widths: tuple[int, ...] = (32, 32)
    """vla_cnn channel widths: a 4x4/4 stem, then one stride-2 conv per further width"""
    vision_stem_stride: int = 4
    """vla_cnn patchify stem: kernel = stride = this many pixels"""
    vision_extra_blocks: int = 1
    """vla_cnn stride-1 3x3 conv blocks at the last width"""
    channels_last: bool = False
    """run the vision encoder in channels-last memory format. Left off: on the 2-core CPU
    this was built on, the training step of the default policy was 1.05x faster without it
    (`benchmarks/policy_latency.py`: 2054 vs 1959 samples/s at 2 threads, 1243 vs 1144 at 1;
    `benchmarks/step_variants.py`: 1873 vs 1784) and select_action the same within noise
    (0.87 vs 0.86 ms); the benchmark times both on the machine at hand"""
    readout_channels: int = 8
    """channels kept per grid cell when readout is "flatten" (grid cells x this = head input)"""
    attention_heads: int = 4
    """text-query heads when readout is "attention" (each can point at a different thing)"""
    film_blocks: int = 2
    """residual conv blocks modulated by the instruction (fusion="film" only)"""
    film_state: bool = False
    """fusion="film" with use_state: the FiLM scales and shifts come from the instruction and
    the proprioceptive state (gripper position, closed, holding), so which object the conv
    blocks light up can depend on whether something is already held"""
    word_dropout: float = 0.0
    """training only: probability that each instruction token is replaced by <unk> (lstm and
    transformer text encoders), so unseen paraphrase words (always <unk>) are no surprise"""
    word_insertion: float = 0.0
    """training only: probability that an instruction gets one random vocabulary word inserted
    at a random position (lstm and transformer text encoders; EDA's random insertion), so a
    word that belongs to another task's instructions does not decide the task"""
    text_dim: int = 128
    """output size of the trainable text encoders (MiniLM is always 384)"""
    text_embed_dim: int = 64
    """token embedding size of the trainable text encoders"""
    text_hidden_dim: int = 128
    """LSTM hidden size; the Transformer's d_model"""
    action_head: Literal["tanh", "bins"] = "tanh"
    """"tanh": an MLP regressing each action into [-1, 1] (the study guide's head; loss below);
    "bins": the MLP classifies each action dimension into `action_bins` values in [-1, 1]
    (trained on "two-hot" targets: a value between two bins puts weight on both; acting picks
    the most likely bin), so where demonstrations disagree the policy commits, not averages"""
    action_bins: int = 21
    """bins per action dimension when action_head is "bins" (spacing 2 / (bins - 1))"""
    hidden_dim: int = 256
    """width of the action head's MLP"""
    head_layers: int = 2
    """hidden layers of the action head's MLP"""
    dropout: float = 0.1
    """dropout in the action head's MLP (0 = off)"""
    goal_weight: float = 1.0
    """weight of the auxiliary grounding loss: predict the subgoal positions (target object and
    place, `observation.environment_state`) from the fused features; 0 = off. Used only when the
    dataset records them; the policy never needs them to act"""
    goal_dim: int = 0
    """size of the auxiliary subgoal target; `Policy.from_dataset` sets it from the dataset's
    stats (4 for nanovla demonstrations; 0 = none recorded, no auxiliary head)"""
    loss: Literal["smooth_l1", "mse"] = "smooth_l1"
    """regression loss on [-1, 1]-normalised actions: "smooth_l1" (Huber) or "mse" (action_head
    "tanh" only; "bins" always uses cross-entropy)"""
    loss_beta: float = 0.1
    """smooth_l1 switch point between quadratic and linear, in normalised action units"""
    loss_weights: tuple[float, ...] = field(default_factory=tuple)
    """per-action-dimension loss weights (length action_dim); empty = all 1"""

    def __post_init__(self) -> None:
        choices = (
            ("text", TEXT_ENCODERS),
            ("fusion", FUSIONS),
            ("readout", READOUTS),
            ("loss", LOSSES),
            ("action_head", ACTION_HEADS),
        )
        for name, allowed in (*choices, ("tokenizer_level", LEVELS)):
            if name == "text" and self.text.startswith("clip:") and len(self.text) > 5:
                continue
            if name == "text" and self.text.startswith("translate:") and len(self.text) > 10:
                continue
            if getattr(self, name) not in allowed:
                raise InputError(
                    f"PolicyConfig.{name} must be one of {allowed}, got {getattr(self, name)!r}"
                )
        for name in (
            "chunk",
            "image_size",
            "action_dim",
            "text_dim",
            "hidden_dim",
            "readout_channels",
            "vision_stem_stride",
            "attention_heads",
        ):
            if getattr(self, name) < 1:
                raise InputError(f"PolicyConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.action_bins < 2:
            raise InputError(f"PolicyConfig.action_bins must be >= 2, got {self.action_bins}")
        if self.goal_weight < 0:
            raise InputError(f"PolicyConfig.goal_weight must be >= 0, got {self.goal_weight}")
        for name in ("state_dim", "film_blocks", "head_layers", "vision_extra_blocks", "goal_dim"):
            if getattr(self, name) < 0:
                raise InputError(f"PolicyConfig.{name} must be >= 0, got {getattr(self, name)}")
        if not 1 <= self.n_action_steps <= self.chunk:
            raise InputError(
                f"PolicyConfig.n_action_steps must be in [1, chunk={self.chunk}], "
                f"got {self.n_action_steps}"
            )
        if not 0.0 <= self.word_dropout < 1.0:
            raise InputError(
                f"PolicyConfig.word_dropout must be in [0, 1), got {self.word_dropout}"
            )
        if not 0.0 <= self.word_insertion <= 1.0:
            raise InputError(
                f"PolicyConfig.word_insertion must be in [0, 1], got {self.word_insertion}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise InputError(f"PolicyConfig.dropout must be in [0, 1), got {self.dropout}")
        if self.loss_beta <= 0:
            raise InputError(f"PolicyConfig.loss_beta must be > 0, got {self.loss_beta}")
        for name in ("loss_weights", "action_names"):
            if len(getattr(self, name)) not in (0, self.action_dim):
                raise InputError(
                    f"PolicyConfig.{name} must be empty or have action_dim={self.action_dim} "
                    f"entries, got {getattr(self, name)}"
                )
        if any(w < 0 for w in self.loss_weights):
            raise InputError(f"PolicyConfig.loss_weights must be >= 0, got {self.loss_weights}")

    @property
    def action_labels(self) -> tuple[str, ...]:
        """`action_names`, or dim0, dim1, ... when empty."""
        return self.action_names or tuple(f"dim{i}" for i in range(self.action_dim))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (tuples become lists), as config.json holds it."""
        return to_json(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "PolicyConfig") -> PolicyConfig:
        """Inverse of `to_dict`; unknown keys or wrong types -> InputError naming `source`."""
        return from_json(cls, data, source)
