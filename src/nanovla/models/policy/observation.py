"""The world's observation dict (numpy, channels-last) -> the policy's raw input tensors."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from nanovla.errors import InputError

OBS_KEYS = ("image", "state", "instruction")


def observation_to_batch(
    obs: Mapping[str, Any], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, list[str], bool]:
    """obs -> (image uint8 (N,3,H,W), state float32 (N,D), N instructions, was_single).

    obs: image (N,H,W,3) uint8, state (N,D), instruction list of N str; or one unbatched
    observation: image (H,W,3), state (D,), instruction str. The image tensor is a
    channels-last view of the numpy array (no copy on the CPU).
    """
    missing = [key for key in OBS_KEYS if key not in obs]
    if missing:
        raise InputError(f"observation is missing keys {missing} (needs {list(OBS_KEYS)})")
    image, state, instruction = (
        np.asarray(obs["image"]),
        np.asarray(obs["state"]),
        obs["instruction"],
    )
    single = image.ndim == 3
    if single:
        image, state = image[None], state[None]
        instruction = [instruction] if isinstance(instruction, str) else list(instruction)
    if image.ndim != 4 or image.shape[-1] != 3 or image.dtype != np.uint8:
        raise InputError(
            f"observation 'image' must be uint8 (N, H, W, 3), got {image.dtype} {image.shape}"
        )
    if isinstance(instruction, str) or len(instruction) != image.shape[0]:
        raise InputError(f"observation 'instruction' must be a list of {image.shape[0]} strings")
    image_t = torch.from_numpy(np.ascontiguousarray(image)).to(device).permute(0, 3, 1, 2)
    state_t = torch.from_numpy(np.asarray(state, dtype=np.float32)).to(device)
    return image_t, state_t, list(instruction), single
