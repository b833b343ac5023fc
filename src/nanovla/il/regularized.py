"""Behavior-regularized fine-tuning: learn a new task without forgetting the old ones.

    loss = BC(new demonstrations) + beta * D(pi, pi_ref),      pi_ref = the frozen starting policy

Papers: the seed's `BehaviorRegularizedPolicy` (BC + a KL to a reference policy, as BRAC: Wu,
Tucker & Nachum 2019, https://arxiv.org/abs/1911.11361); learning without forgetting (Li & Hoiem
2016, https://arxiv.org/abs/1606.09282): the divergence on inputs of the *old* tasks, produced
without old labels; L2-SP (Li, Grandvalet & Davoine 2018, https://arxiv.org/abs/1802.01483): a
pull toward the starting weights; experience replay (Rolnick et al. 2019,
https://arxiv.org/abs/1811.11682): old demonstrations mixed in, the reference point.

Read top to bottom:

1. `chunk_mse`, `bins_kl`, `head_divergence`: D for the policy's head. The tanh head regresses a
   chunk a(s) in [-1, 1]; read as a Gaussian N(a(s), sigma^2 I) of fixed variance, as the seed
   does, KL(N(a_ref, s^2) || N(a, s^2)) = |a - a_ref|^2 / (2 s^2): the mean squared difference
   of the chunks up to a constant factor, so D = MSE (mean over chunk steps and dimensions). The
   binned head has true categorical distributions per step and dimension: D = KL(pi_ref || pi),
   summed over bins and averaged over steps and dimensions (the direction LwF's distillation
   loss takes: cross-entropy to the reference's soft targets minus its constant entropy).
2. `weight_l2`: sum over trainable parameters of (theta - theta_0)^2 (L2-SP without its 1/2).
3. `RegularizedBC`: the model the training engine trains: `forward(batch) -> (loss, metrics)`
   adds beta times one `REGULARIZERS` term to the policy's own BC loss:
   - `new`: D on the new demonstrations' frames (the seed's placement);
   - `lwf`: D on frames of the old tasks rendered by rolling pi_ref out in the world (their
     labels are never read; the batches come from a second loader);
   - `l2`: `weight_l2` to the starting weights;
   - `replay`: the policy's BC loss on old demonstrations (beta weighs it);
   - `none`: plain fine-tuning. With beta = 0 every variant is plain BC, exactly.
   D's pass through pi runs with dropout off (`deterministic`), as pi_ref's always does: in
   train mode D would also count dropout noise, which no weights can remove. BatchNorm uses the
   batch statistics as in the BC pass (switched to its running statistics for D alone, pi could
   meet BC and D with two different functions: a `new` run so made had a gradient norm of 209
   and a loss of 1.35 at step 2800, and was stopped), but the D pass does not update the
   running statistics: they stay those of the frames pi is trained to act on. `save_pretrained` saves the fine-tuned
   policy alone, so checkpoints load as any policy.
4. `extend_reference`: the starting policy, able to read the new task. The instruction
   vocabulary grows by the new words (appended, so old ids are unchanged; each new embedding row
   starts as a copy of `<unk>`'s, so the extended policy reads every instruction exactly as the
   original did), and features the old data held constant (a zero-width min/max or a std at the
   normalizer's floor: e.g. `grip` and the held flags for a reach + push policy) take the new
   data's range, keeping the value the old data held, so old inputs normalize as before.
   pi and pi_ref both start as this policy.

Departures from the seed: D is applied where `regularizer` says (the seed regularizes on the
new frames only, which does not see the old tasks' states at all); the tanh head's Gaussian is
implicit (MSE), and the binned head gets the exact KL; weight decay toward zero is off by
default in `nanovla finetune` (it is a pull away from pi_ref too; L2-SP replaces it).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nanovla.errors import InputError
from nanovla.models.policy import Policy
from nanovla.models.policy.heads import BinnedActionHead
from nanovla.models.policy.normalize import ACTION, IMAGE, STATE
from nanovla.models.text.tokenizer import UNK_ID, Tokenizer, split_text

REGULARIZERS: tuple[str, ...] = ("lwf", "new", "l2", "replay", "none")
"""where / what the regularizer is (see the module docstring)"""


# ------------------------------------------------------------------------------ 1. divergences
def chunk_mse(pred: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of two normalized action chunks (B, k, A): the KL between
    fixed-variance Gaussians centred on them, up to the factor 1 / (2 sigma^2)."""
    if pred.shape != ref.shape:
        raise InputError(f"chunks differ in shape: {tuple(pred.shape)} vs {tuple(ref.shape)}")
    return (pred.float() - ref.float()).pow(2).mean()


def bins_kl(logits: torch.Tensor, ref_logits: torch.Tensor) -> torch.Tensor:
    """KL(pi_ref || pi) of binned heads, logits (B, k, A, bins): summed over bins, averaged over
    the (B, k, A) entries."""
    if logits.shape != ref_logits.shape:
        raise InputError(
            f"logits differ in shape: {tuple(logits.shape)} vs {tuple(ref_logits.shape)}"
        )
    log_p = F.log_softmax(logits.float(), dim=-1)
    log_ref = F.log_softmax(ref_logits.float(), dim=-1)
    return (log_ref.exp() * (log_ref - log_p)).sum(-1).mean()


def head_divergence(policy: Policy, out: torch.Tensor, ref_out: torch.Tensor) -> torch.Tensor:
    """D for `policy`'s head on raw head outputs: `bins_kl` for the binned head, else `chunk_mse`."""
    if isinstance(policy.head, BinnedActionHead):
        return bins_kl(out, ref_out)
    return chunk_mse(out, ref_out)


def head_output(policy: Policy, batch: Mapping[str, Any]) -> torch.Tensor:
    """The head's raw output on a batch's observations: the chunk (B, k, A) for the tanh head,
    logits (B, k, A, bins) for the binned head."""
    return policy.head(policy.encode(batch[IMAGE], batch[STATE], list(batch["task"])))


# ------------------------------------------------------------------------- 2. weight-space L2
def weight_l2(model: nn.Module, start: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """sum over trainable parameters of (theta - theta_0)^2; `start` maps parameter names to
    theta_0 (as `named_parameters` names them)."""
    total = torch.zeros(())
    for name, param in model.named_parameters():
        if param.requires_grad:
            total = total + (param - start[name].to(param.device)).pow(2).sum()
    return total


# ------------------------------------------------------------------------ 3. the trained model
@contextlib.contextmanager
def deterministic(model: nn.Module) -> Iterator[None]:
    """Dropout off inside (gradients still flowing), so D compares pi's function with pi_ref's
    without dropout noise; BatchNorm normalizes with the batch's statistics as in the BC pass
    but leaves its running statistics (what pi acts with) to the BC passes. Only these modules
    switch: `eval()` would also move BatchNorm off the batch statistics and the instruction
    encoder to its no-grad feature cache."""
    dropouts = [m for m in model.modules() if isinstance(m, nn.Dropout) and m.training]
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for module in dropouts:
        module.train(False)
    for module in norms:
        module.momentum = 0.0  # running = (1 - 0) * running + 0 * batch: unchanged
    try:
        yield
    finally:
        for module in dropouts:
            module.train(True)
        for module, momentum in zip(norms, momenta):
            module.momentum = momentum


class RegularizedBC(nn.Module):
    """`policy` fine-tuned by BC on the engine's batches plus `beta` times a regularizer.

    `reference` (pi_ref) is frozen: no gradients, always in eval mode (no dropout).
    `old_batches` (an object with `next_batch()`) feeds `lwf` (frames of pi_ref's rollouts of the
    old tasks) and `replay` (old demonstrations); the other regularizers need none.
    """

    def __init__(
        self,
        policy: Policy,
        reference: Policy,
        regularizer: str = "lwf",
        beta: float = 1.0,
        old_batches: Any = None,
    ) -> None:
        super().__init__()
        if regularizer not in REGULARIZERS:
            raise InputError(f"regularizer must be one of {REGULARIZERS}, got {regularizer!r}")
        if beta < 0 or not np.isfinite(beta):
            raise InputError(f"beta must be a finite number >= 0, got {beta}")
        if regularizer in ("lwf", "replay") and old_batches is None:
            raise InputError(f"regularizer {regularizer!r} needs old_batches (a loader)")
        self.policy, self.reference = policy, reference.requires_grad_(False).eval()
        self.regularizer, self.beta, self.old_batches = regularizer, float(beta), old_batches
        self.config = policy.config
        self.start = {name: p.detach().clone() for name, p in policy.named_parameters()}

    def train(self, mode: bool = True) -> RegularizedBC:
        super().train(mode)
        self.reference.eval()  # pi_ref stays deterministic (no dropout) while pi trains
        return self

    def forward(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
        """BC loss on `batch` + beta * the regularizer; metrics add `bc_loss` and `reg`."""
        loss, metrics = self.policy(batch)
        metrics = {**metrics, "bc_loss": loss.detach()}
        if self.beta > 0 and self.regularizer != "none":
            term = self.penalty(batch)
            loss = loss + self.beta * term
            metrics["reg"] = term.detach()
        metrics["loss"] = loss.detach()
        return loss, metrics

    def penalty(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """The regularizer's value (before beta) for this step; `batch` is the new-task batch
        the BC loss was just computed on."""
        if self.regularizer == "l2":
            return weight_l2(self.policy, self.start)
        frames = batch if self.regularizer == "new" else self.old_batches.next_batch()
        if self.regularizer == "replay":
            return self.policy(frames)[0]
        with deterministic(self.policy):  # the function the policy acts with, as pi_ref's
            out = head_output(self.policy, frames)
        return head_divergence(self.policy, out, self.reference_output(frames))

    @torch.no_grad()
    def reference_output(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """pi_ref's raw head output on `batch` (no gradient)."""
        return head_output(self.reference, batch)

    def save_pretrained(self, directory: Any) -> None:
        """Save the fine-tuned policy alone (config.json + model.safetensors + tokenizer)."""
        self.policy.save_pretrained(directory)


# --------------------------------------------------------------- 4. the reference, extended
def extend_reference(
    reference: Policy, texts: Iterable[str], stats: Mapping[str, Any] | None = None
) -> Policy:
    """A copy of `reference` that reads the words of `texts` and the ranges of `stats` (the new
    data's meta/stats.json dict); on every input the original accepts it acts as the original
    (see the module docstring, 4.). Returned in eval mode."""
    state = {key: value.detach().clone() for key, value in reference.state_dict().items()}
    tokenizer = reference.tokenizer
    if tokenizer is not None:
        tokenizer, added = _extended_tokenizer(tokenizer, texts)
        for key, value in state.items():
            if key.startswith("language.") and key.endswith("embedding.weight") and added:
                state[key] = torch.cat([value, value[UNK_ID].expand(added, -1)])
    if stats is not None:
        _widen_constant_features(state, stats)
    extended = Policy(reference.config, tokenizer=tokenizer)
    extended.load_state_dict(state)
    return extended.eval()


def _extended_tokenizer(tokenizer: Tokenizer, texts: Iterable[str]) -> tuple[Tokenizer, int]:
    """`tokenizer` with the unseen tokens of `texts` appended (sorted); and how many."""
    known = set(tokenizer.vocab)
    new = sorted({t for text in texts for t in split_text(text, tokenizer.level)} - known)
    vocab = [*tokenizer.vocab, *new]
    return Tokenizer(vocab, level=tokenizer.level, max_length=tokenizer.max_length), len(new)


_CONSTANT_STD = 1.001e-3  # the normalizer clamps a constant feature's std to 1e-3
_CONSTANT_SPAN = 1e-6


def _widen_constant_features(state: dict[str, torch.Tensor], stats: Mapping[str, Any]) -> None:
    """In place: constant state features take the new data's std (mean kept), zero-width action
    dimensions the union of both ranges."""
    std = state["normalizer.state_std"]
    if std.numel() and STATE in stats:
        new_std = torch.as_tensor(np.asarray(stats[STATE]["std"], np.float32)).reshape(std.shape)
        constant = std <= _CONSTANT_STD
        state["normalizer.state_std"] = torch.where(constant, new_std.clamp_min(1e-3), std)
    low, high = state["normalizer.action_min"], state["normalizer.action_max"]
    if ACTION in stats:
        new_low = torch.as_tensor(np.asarray(stats[ACTION]["min"], np.float32)).reshape(low.shape)
        new_high = torch.as_tensor(np.asarray(stats[ACTION]["max"], np.float32)).reshape(low.shape)
        flat = (high - low) <= _CONSTANT_SPAN
        state["normalizer.action_min"] = torch.where(flat, torch.minimum(low, new_low), low)
        state["normalizer.action_max"] = torch.where(flat, torch.maximum(high, new_high), high)
