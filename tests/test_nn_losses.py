"""Losses against torch.nn.functional and hand computations."""

import pytest
import torch
import torch.nn.functional as F

from nanovla.models.policy.loss import masked_binned_loss, masked_regression_loss
from nanovla.nn.losses import (
    SmoothL1Loss,
    info_nce,
    info_nce_shared,
    masked_weighted_mean,
    masked_weighted_regression,
    smooth_l1_loss,
)


@pytest.mark.parametrize("beta", [1.0, 0.3, 2.5, 0.0])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_smooth_l1_matches_torch(beta: float, reduction: str) -> None:
    torch.manual_seed(0)
    pred = torch.randn(4, 5, 3, requires_grad=True)
    target = torch.randn(4, 5, 3) * 2
    ours = smooth_l1_loss(pred, target, beta=beta, reduction=reduction)
    ref = F.smooth_l1_loss(pred, target, reduction=reduction, beta=beta)
    torch.testing.assert_close(ours, ref)
    (grad_ours,) = torch.autograd.grad(ours.sum(), pred)
    (grad_ref,) = torch.autograd.grad(ref.sum(), pred)
    torch.testing.assert_close(grad_ours, grad_ref)
    module = SmoothL1Loss(beta=beta, reduction=reduction)
    torch.testing.assert_close(module(pred, target), ref)


def test_smooth_l1_rejects_bad_arguments() -> None:
    x = torch.zeros(3)
    with pytest.raises(ValueError, match="beta"):
        smooth_l1_loss(x, x, beta=-1.0)
    with pytest.raises(ValueError, match="reduction"):
        SmoothL1Loss(reduction="avg")
    with pytest.raises(ValueError, match="same shape"):
        smooth_l1_loss(x, torch.zeros(4))


@pytest.mark.parametrize("kind", ["mse", "smooth_l1"])
def test_masked_regression_without_mask_is_plain_mean(kind: str) -> None:
    torch.manual_seed(1)
    pred, target = torch.randn(2, 6, 4), torch.randn(2, 6, 4)
    ref = F.mse_loss(pred, target) if kind == "mse" else F.smooth_l1_loss(pred, target)
    torch.testing.assert_close(masked_weighted_regression(pred, target, kind=kind), ref)


def test_masked_regression_ignores_masked_steps() -> None:
    torch.manual_seed(2)
    pred, target = torch.randn(2, 5, 3), torch.randn(2, 5, 3)
    lengths = torch.tensor([3, 5])
    step_mask = torch.arange(5)[None, :] < lengths[:, None]  # (B, T) True = valid
    loss = masked_weighted_regression(pred, target, mask=step_mask, kind="mse")
    # Garbage in the padded steps changes nothing.
    polluted = pred.clone()
    polluted[0, 3:] = 1e6
    torch.testing.assert_close(
        masked_weighted_regression(polluted, target, mask=step_mask, kind="mse"), loss
    )
    valid = torch.cat([(pred[0, :3] - target[0, :3]), (pred[1] - target[1])])  # (8, 3)
    torch.testing.assert_close(loss, (valid**2).mean())
    # An integer 0/1 per-entry mask means the same.
    entry_mask = step_mask[..., None].expand(2, 5, 3).long()
    torch.testing.assert_close(
        masked_weighted_regression(pred, target, mask=entry_mask, kind="mse"), loss
    )


def test_masked_regression_weights_scale_each_dimension() -> None:
    torch.manual_seed(3)
    pred, target = torch.randn(4, 2), torch.randn(4, 2)
    weights = torch.tensor([2.0, 0.0])
    loss = masked_weighted_regression(pred, target, weights=weights, kind="mse")
    expected = (2.0 * (pred[:, 0] - target[:, 0]) ** 2).sum() / 8
    torch.testing.assert_close(loss, expected)


def test_masked_regression_all_masked_is_zero_and_differentiable() -> None:
    pred = torch.randn(2, 3, requires_grad=True)
    loss = masked_weighted_regression(
        pred, torch.zeros(2, 3), mask=torch.zeros(2, dtype=torch.bool)
    )
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(pred.grad, torch.zeros(2, 3))


def test_masked_regression_rejects_bad_arguments() -> None:
    x = torch.zeros(2, 3, 4)
    with pytest.raises(ValueError, match="kind"):
        masked_weighted_regression(x, x, kind="l1")
    with pytest.raises(ValueError, match="weights"):
        masked_weighted_regression(x, x, weights=torch.ones(3))
    with pytest.raises(ValueError, match="mask"):
        masked_weighted_regression(x, x, mask=torch.ones(2, 4))
    with pytest.raises(ValueError, match="same shape"):
        masked_weighted_regression(x, torch.zeros(2, 3, 5))


def _old_policy_masked_mean(elementwise, is_pad, weights):
    """The policy's own masked mean before it moved onto `nanovla.nn.losses` (verbatim)."""
    if weights is not None:
        elementwise = elementwise * weights
    if is_pad is None:
        return elementwise.mean()
    valid = (~is_pad).to(elementwise.dtype).unsqueeze(-1)
    count = valid.sum() * elementwise.shape[-1]
    return (elementwise * valid).sum() / count.clamp_min(1.0)


def _old_policy_regression(pred, target, is_pad, weights, kind, beta):
    if kind == "smooth_l1":
        elementwise = F.smooth_l1_loss(pred, target, reduction="none", beta=beta)
    else:
        elementwise = F.mse_loss(pred, target, reduction="none")
    return _old_policy_masked_mean(elementwise, is_pad, weights)


@pytest.mark.parametrize("kind", ["smooth_l1", "mse"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("padded", [True, False])
def test_policy_loss_is_bit_identical_to_its_old_implementation(
    kind: str, dtype: torch.dtype, padded: bool
) -> None:
    """The policy's chunk loss now calls `masked_weighted_regression`: same values, same grads."""
    torch.manual_seed(5)
    pred = (torch.randn(8, 4, 3) * 2).to(dtype).requires_grad_()
    target = torch.randn(8, 4, 3).to(dtype)
    is_pad = (torch.rand(8, 4) < 0.3) if padded else None
    weights = torch.tensor([1.0, 0.5, 2.0])
    new = masked_regression_loss(pred, target, is_pad, weights, kind=kind, beta=0.7)
    old = _old_policy_regression(pred, target, is_pad, weights, kind, 0.7)
    assert new.dtype == old.dtype
    assert torch.equal(new, old), (new.item(), old.item())
    (grad_new,) = torch.autograd.grad(new, pred)
    (grad_old,) = torch.autograd.grad(old, pred)
    assert torch.equal(grad_new, grad_old)


def test_policy_binned_loss_is_bit_identical_to_its_old_implementation() -> None:
    torch.manual_seed(6)
    logits = torch.randn(6, 4, 3, 11, requires_grad=True)
    target_probs = torch.rand(6, 4, 3, 11).softmax(-1)
    is_pad = torch.rand(6, 4) < 0.3
    weights = torch.tensor([1.0, 0.0, 3.0])
    new = masked_binned_loss(logits, target_probs, is_pad, weights)
    elementwise = -(target_probs * F.log_softmax(logits, dim=-1)).sum(-1)
    old = _old_policy_masked_mean(elementwise, is_pad, weights)
    assert torch.equal(new, old)
    # The mean alone: a padded step's entries do not count, whatever they hold.
    polluted = elementwise.detach().clone()
    polluted[is_pad] = 1e6
    assert torch.equal(masked_weighted_mean(polluted, ~is_pad, weights), old.detach())


def test_policy_loss_rejects_an_unknown_kind_as_input_error() -> None:
    from nanovla.errors import InputError

    x = torch.zeros(2, 3, 4)
    with pytest.raises(InputError, match="'l1'"):
        masked_regression_loss(x, x, None, kind="l1")


def test_info_nce_matches_hand_computation() -> None:
    torch.manual_seed(4)
    logits = torch.randn(5, 5) * 3
    log_p_rows = logits.log_softmax(dim=1).diagonal()  # image i -> text i
    log_p_cols = logits.log_softmax(dim=0).diagonal()  # text i -> image i
    expected = -(log_p_rows.mean() + log_p_cols.mean()) / 2
    torch.testing.assert_close(info_nce(logits), expected)
    labels = torch.arange(5)
    by_torch = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2
    torch.testing.assert_close(info_nce(logits, logits.t()), by_torch)


def test_info_nce_prefers_matching_pairs() -> None:
    aligned = torch.eye(4) * 10
    assert info_nce(aligned) < 0.01
    assert info_nce(aligned.flip(0)) > 5.0
    with pytest.raises(ValueError, match="square"):
        info_nce(torch.zeros(3, 4))


def test_info_nce_shared_against_hand_computation_and_info_nce() -> None:
    torch.manual_seed(5)
    logits = torch.randn(4, 4) * 2
    torch.testing.assert_close(info_nce_shared(logits, torch.arange(4)), info_nce(logits))
    # images 0 and 2 share text 0, image 1 has text 1, image 3 text 2
    shared = torch.randn(4, 3) * 2
    text = torch.tensor([0, 1, 0, 2])
    rows = shared.log_softmax(dim=1)[torch.arange(4), text].mean()
    cols = shared.log_softmax(dim=0)  # (images, texts): p(image | text)
    per_text = torch.stack([(cols[0, 0] + cols[2, 0]) / 2, cols[1, 1], cols[3, 2]])
    expected = -(rows + per_text.mean()) / 2
    torch.testing.assert_close(info_nce_shared(shared, text), expected)
    with pytest.raises(ValueError, match="at least one image"):
        info_nce_shared(torch.zeros(2, 3), torch.tensor([0, 0]))
