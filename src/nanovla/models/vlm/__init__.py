"""nanovla.models.vlm: vision-language models trained from scratch on the world's scenes.

`VLM` wraps one of two architectures behind one face (`answer`, `caption`, `generate`, `loss`,
`save_pretrained` / `from_pretrained`):

- `blip.py`: BLIP-style, image tokens -> a text decoder through cross-attention;
- `llava.py`: LLaVA-style, image tokens through an MLP projector, prepended to a causal LM.

Both decode greedily or by beam search (`nanovla.nn.decoding`) with a KV cache (`layers.py`).
`hf.py` runs Hugging Face `BlipForConditionalGeneration` / `LlavaForConditionalGeneration`
directories through the same `nanovla vlm caption` command (`cli.py`).
"""

from nanovla.models.vlm.configuration import ARCHS, VLMConfig
from nanovla.models.vlm.modeling import VLM
from nanovla.models.vlm.text import build_tokenizer

__all__ = ["ARCHS", "VLM", "VLMConfig", "build_tokenizer"]
