"""Golden outputs recorded from torchvision itself.

torchvision cannot be a dependency here, so its numbers were recorded once: torchvision 0.29.2's
model code (pure Python, unpacked from its wheel into a scratch directory, never installed) was
run with the seeds below, and the first logits and the sum of |logits| were written down. Our
models reproduce them bit for bit, which checks three things at once: the same parameter creation
and initialisation order (same weights from the same seed), the same forward ops, and the same
random draws for dropout and stochastic depth in train mode (BatchNorm uses batch statistics
there, so the activations stay well scaled and the numbers are informative).
"""

from __future__ import annotations

import pytest
import torch

from nanovla.models import create_model

# name -> (logits[:, :4] flattened for a (2, 3, 64, 64) batch, sum of |logits| over (2, 1000))
TORCHVISION_GOLDEN: dict[str, tuple[list[float], float]] = {
    "resnet18": (
        [-0.15895, 0.16543, -0.49712, 0.21061, 0.44392, 0.51416, -0.14499, 0.27183],
        828.728,
    ),
    "resnet50": (
        [0.05114, -0.48804, 0.82956, -0.81901, 1.29649, -0.8935, 0.50294, -1.86108],
        1023.511,
    ),
    "mobilenet_v2": (
        [-0.2481, 0.24907, -0.14015, 0.18156, -0.1897, 0.06647, -0.17802, 0.0881],
        290.342,
    ),
    "efficientnet_b0": (
        [-0.31267, 0.10706, 0.17995, 0.26371, 0.33947, -0.11738, -0.09435, 0.05881],
        355.935,
    ),
}


@pytest.mark.parametrize("name", sorted(TORCHVISION_GOLDEN))
def test_matches_torchvision_golden_outputs(name: str) -> None:
    torch.manual_seed(0)  # initial weights: torchvision's init, in torchvision's order
    model = create_model(name).train()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(2)  # dropout and stochastic-depth draws
    with torch.no_grad():
        out = model(x)  # (2, 1000)
    first, total = TORCHVISION_GOLDEN[name]
    torch.testing.assert_close(out[:, :4].flatten(), torch.tensor(first), rtol=1e-4, atol=1e-4)
    assert out.abs().sum().item() == pytest.approx(total, rel=1e-4)
