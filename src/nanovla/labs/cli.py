"""`nanovla lab NAME [OPTIONS]`: run one curriculum lab.

    nanovla lab basics
    nanovla lab classify --data digits --model lenet
    nanovla lab transfer
    nanovla lab segment
    nanovla lab attention
    nanovla lab clip
    nanovla lab detect
    nanovla lab translate
    nanovla lab caption
    nanovla lab vqa
    nanovla lab memory

`nanovla lab NAME --help` explains every option of a lab.
"""

from __future__ import annotations

import tyro

from nanovla.labs import (
    attention,
    basics,
    caption,
    classify,
    clip,
    detect,
    memory,
    segment,
    transfer,
    translate,
    vqa,
)

# name -> (config class, run function); the config's docstring is the lab's --help summary.
LABS = {
    "basics": (basics.BasicsConfig, basics.run),
    "classify": (classify.ClassifyConfig, classify.run),
    "transfer": (transfer.TransferConfig, transfer.run),
    "segment": (segment.SegmentConfig, segment.run),
    "attention": (attention.AttentionConfig, attention.run),
    "clip": (clip.ClipConfig, clip.run),
    "detect": (detect.DetectConfig, detect.run),
    "caption": (caption.CaptionConfig, caption.run),
    "vqa": (vqa.VQAConfig, vqa.run),
    "translate": (translate.TranslateConfig, translate.run),
    "memory": (memory.MemoryConfig, memory.run),
}


def main(argv: list[str]) -> int:
    """Entry point of `nanovla lab`."""
    config = tyro.extras.subcommand_cli_from_dict(
        {name: config_class for name, (config_class, _) in LABS.items()},
        args=argv,
        prog="nanovla lab",
        description="Curriculum labs: each prints its metric and writes metrics.json and PNGs.",
    )
    for config_class, run in LABS.values():
        if type(config) is config_class:
            run(config)
            return 0
    raise AssertionError(f"no lab runs config {type(config).__name__}")
