"""`nanovla translate "SENTENCE" ...`: English instructions -> Korean, with a model trained by
`nanovla lab translate` (default: runs/lab-translate/model).

    nanovla translate "put the red box in the blue bowl"
    nanovla translate "push the green ball to the top edge" "reach the small red box" --beam-size 1

One line of Korean is printed per sentence, in order. English is lower-cased before encoding; a
word or character the model never saw still translates (the tokenizer's byte fallback), an
empty sentence is refused in one line naming SENTENCE.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import tyro

from nanovla.errors import InputError


@dataclass
class TranslateCommand:
    """Translate English robot instructions into Korean with a trained translation model."""

    sentences: tyro.conf.Positional[tuple[str, ...]] = ()
    """SENTENCE ...: English sentences to translate (quote each one)"""
    model: Path = Path("runs/lab-translate/model")
    """model directory written by `nanovla lab translate --out DIR` (DIR/model)"""
    beam_size: int = 4
    """beam width (1 = greedy search)"""
    length_penalty: float = 0.6
    """GNMT length penalty alpha of beam search (0 = none, larger favours longer outputs)"""
    threads: int = 1
    """torch CPU threads"""


def main(argv: list[str]) -> int:
    """Entry point of `nanovla translate`."""
    command = tyro.cli(TranslateCommand, args=argv, prog="nanovla translate", description=__doc__)
    if not command.sentences:
        raise InputError("SENTENCE: give at least one English sentence to translate")
    for index, sentence in enumerate(command.sentences):
        if not sentence.strip():
            raise InputError(f"SENTENCE {index + 1}: the sentence is empty")
    if command.threads < 1:
        raise InputError(f"--threads: must be >= 1, got {command.threads}")
    torch.set_num_threads(command.threads)
    from nanovla.labs.translate import Translator

    translator = Translator.from_pretrained(command.model)
    for line in translator.translate(
        list(command.sentences), command.beam_size, command.length_penalty
    ):
        print(line)
    return 0
