"""One grid of unseen world scenes with a captioner's captions and a VQA model's answers.

    python benchmarks/vlm_grid.py --caption-model runs/lab-caption/model \
        --vqa-model runs/lab-vqa/model --out runs/vlm-grid.png

Scenes come from `nanovla.data.vqa` at its evaluation seeds (never trained on); each panel
shows the image, the generated English caption (beam search) and up to four questions with the
generated answer (wrong answers in red, with the truth). Prints the PNG's path and the accuracy
of the answers shown.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from nanovla.data import vqa
from nanovla.labs.vlm_train import exact_match, plot_grid, wrap
from nanovla.models.vlm import VLM


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--caption-model", type=Path, required=True)
    parser.add_argument("--vqa-model", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("runs/vlm-grid.png"))
    parser.add_argument("--scenes", type=int, default=8)
    parser.add_argument("--beam-size", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    captioner, answerer = (
        VLM.from_pretrained(args.caption_model),
        VLM.from_pretrained(args.vqa_model),
    )
    data = vqa.generate(vqa.EVAL_SEED + 7, args.scenes, answerer.config.image_size)
    predicted = answerer.answer(data.images, data.questions)
    firsts = [int(np.flatnonzero(data.scene == s)[0]) for s in range(args.scenes)]
    captions = captioner.caption(data.images[firsts], "en", beam_size=args.beam_size)
    lines, shown = [], []
    for scene, caption in enumerate(captions):
        text = [(f"caption: {line}", True) for line in wrap(caption)]
        for i in np.flatnonzero(data.scene == scene)[:4]:
            ok = exact_match(answerer, [predicted[i]], [data.answers[i]], ["q"])["all"] == 1.0
            shown.append(ok)
            text.append((f"Q: {data.questions[i]}", True))
            text.append(
                (f"A: {predicted[i]}" + ("" if ok else f"  (truth: {data.answers[i]})"), ok)
            )
        lines.append(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    title = "unseen scenes: generated captions and answers (red = wrong answer)"
    plot_grid(args.out, data.images[firsts], lines, title)
    print(f"wrote {args.out}; {sum(shown)}/{len(shown)} answers shown are right")


if __name__ == "__main__":
    main()
