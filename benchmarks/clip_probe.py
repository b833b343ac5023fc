"""Where a trained CLIP's image tower loses the held-out combos' kind (issue 13).

    python benchmarks/clip_probe.py --clip runs/clip-sc/model

Prints, for the kind (box / ball) of single-object images:

- zero-shot (the lab's per-attribute reading) on held-out scenes, on the same images with every
  colour turned about the grey axis by a random angle (`clip_pairs.hue_rotate`: does the tower
  read kind without the colours it saw?), and per held-out combo (green ball, purple box);
- two linear probes on the tower's pooled features (before the projection), each logistic
  regression fitted by Adam: "train combos" fitted on training-combo images only, "all combos"
  fitted on half of a pool that also holds held-out combo images and scored on the other half.
  The first is the shortcut a contrastive model meets; the second asks whether the features
  hold the kind of a green ball at all.
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import torch

from nanovla.data.captions import make_captions
from nanovla.labs import clip_eval
from nanovla.labs.clip_pairs import hue_rotate
from nanovla.models.clip import CLIP
from nanovla.world.scene import COLORS, KINDS


@torch.no_grad()
def tower_features(clip: CLIP, images: np.ndarray, batch: int = 500) -> torch.Tensor:
    """Pooled image-tower features (N, width), before the projection."""
    return torch.cat(
        [clip.vision(clip.pixels(images[i : i + batch])) for i in range(0, len(images), batch)]
    )


def fit_probe(x: torch.Tensor, y: torch.Tensor, steps: int = 800) -> tuple[torch.Tensor, ...]:
    """Logistic regression (weights, bias) on standardised features, a little L2."""
    weight = torch.zeros(x.shape[1], int(y.max()) + 1, requires_grad=True)
    bias = torch.zeros(int(y.max()) + 1, requires_grad=True)
    optimizer = torch.optim.Adam([weight, bias], lr=0.05)
    for _ in range(steps):
        logits = x @ weight + bias
        loss = torch.nn.functional.cross_entropy(logits, y) + 1e-3 * weight.pow(2).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return weight.detach(), bias.detach()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clip", required=True, help="CLIP model directory")
    parser.add_argument("--images", type=int, default=1000, help="images per split")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.manual_seed(args.seed)
    clip = CLIP.from_pretrained(args.clip)
    kind = clip_eval.zero_shot_classifiers(clip, "kind")
    test = make_captions("test", args.images, seed=args.seed, single_object=True)
    held = make_captions("heldout_combos", args.images, seed=args.seed, single_object=True)
    rng = np.random.default_rng(args.seed)

    def read(images: np.ndarray) -> np.ndarray:
        return (clip_eval.embed_images(clip, images) @ kind.t()).argmax(dim=1).numpy()

    turned = hue_rotate(test.images, rng.uniform(0, 2 * np.pi, len(test)))
    print(
        f"zero-shot kind, held-out scenes: {(read(test.images) == test.labels['kind']).mean():.3f}"
    )
    print(
        f"zero-shot kind, held-out scenes hue-rotated: {(read(turned) == test.labels['kind']).mean():.3f}"
    )
    predicted = read(held.images)
    for k, c in sorted(
        {(int(k), int(c)) for k, c in zip(held.labels["kind"], held.labels["color"])}
    ):
        rows = (held.labels["kind"] == k) & (held.labels["color"] == c)
        print(f"zero-shot kind, held-out combo {COLORS[c]} {KINDS[k]}: "
              f"{(predicted[rows] == k).mean():.3f} ({rows.sum()} images)")  # fmt: skip

    train = make_captions("train", 2 * args.images, seed=args.seed + 5, single_object=True)
    pool = make_captions("heldout_combos", 2 * args.images, seed=args.seed + 3, single_object=True)
    x_train, x_held, x_pool = (tower_features(clip, s.images) for s in (train, held, pool))
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    x_train, x_held, x_pool = ((x - mean) / std for x in (x_train, x_held, x_pool))
    y_train = torch.from_numpy(train.labels["kind"])
    y_held = held.labels["kind"]
    weight, bias = fit_probe(x_train, y_train)
    probe = (x_held @ weight + bias).argmax(dim=1).numpy()
    print(f"probe fitted on train combos: held-out combos {(probe == y_held).mean():.3f}, "
          f"green balls {(probe[y_held == 1] == 1).mean():.3f}")  # fmt: skip
    x_all = torch.cat([x_train, x_pool])
    y_all = torch.cat([y_train, torch.from_numpy(pool.labels["kind"])])
    green_ball = torch.cat([torch.zeros(len(train), dtype=torch.bool),
                            torch.from_numpy(pool.labels["kind"] == 1)])  # fmt: skip
    order = torch.from_numpy(rng.permutation(len(x_all)))
    fit, score = order[: len(order) // 2], order[len(order) // 2 :]
    weight, bias = fit_probe(x_all[fit], y_all[fit])
    probe = torch.as_tensor((x_all[score] @ weight + bias).argmax(dim=1))
    hits = probe == y_all[score]
    print(f"probe fitted on all combos: scored half {hits.float().mean():.3f}, "
          f"green balls {hits[green_ball[score]].float().mean():.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
