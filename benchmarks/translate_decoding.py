"""Decoding speed of a `nanovla lab translate` model with and without the decoder's KV cache.

    python benchmarks/translate_decoding.py runs/lab-translate/model --sentences 128

Translates the same held-out sentences (the world's held-out paraphrases, rendered fresh) by
greedy search and by beam search, once with the KV cache and once recomputing the whole prefix
every step, checks that both give the same translations, and prints the seconds for each.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from nanovla.data.parallel import render_pairs
from nanovla.models.text.subword import BOS_ID, EOS_ID
from nanovla.models.text.translator import Translator, pad_rows
from nanovla.nn.decoding import beam_search, greedy_decode


def decode(translator: Translator, sources: list[list[int]], beam: int, cache: bool) -> list:
    out = []
    for start in range(0, len(sources), 64):
        chunk = sources[start : start + 64]
        src, pad = pad_rows(chunk)
        step = translator.model.step_function(src, pad, use_cache=cache)
        prefix = torch.full((len(chunk), 1), BOS_ID, dtype=torch.long)
        max_len = translator.config.max_len
        if beam == 1:
            out += greedy_decode(step, prefix, EOS_ID, max_len)
        else:
            out += beam_search(step, prefix, EOS_ID, beam, max_len, length_penalty=0.6)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path, help="model directory (DIR/model of the lab)")
    parser.add_argument("--sentences", type=int, default=128, help="sentences to translate")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    translator = Translator.from_pretrained(args.model)
    pairs = render_pairs("heldout_templates", args.sentences, seed=123)
    sources = translator.source_ids([pair.en for pair in pairs])
    with torch.no_grad():
        for beam in (1, 4):
            times, outputs = {}, {}
            for cache in (True, False):
                start = time.perf_counter()
                outputs[cache] = decode(translator, sources, beam, cache)
                times[cache] = time.perf_counter() - start
            same = outputs[True] == outputs[False]
            print(
                f"beam {beam}: {len(sources)} sentences, KV cache {times[True]:.2f} s, "
                f"full recomputation {times[False]:.2f} s ({times[False] / times[True]:.1f}x), "
                f"same translations: {same}"
            )


if __name__ == "__main__":
    main()
