"""FlashVideo (arXiv 2401.00869): a RetNet decoder for text-to-video tokens, with same-size
causal-transformer and MaskGIT baselines and their generators."""

from lightning_modules.flashvideo.generate import (
    generate_maskgit,
    generate_retnet,
    generate_transformer,
    sample,
)
from lightning_modules.flashvideo.retnet import MultiScaleRetention, RetNetDecoder
from lightning_modules.flashvideo.transformer import KVCache, TransformerDecoder

__all__ = [
    "KVCache",
    "MultiScaleRetention",
    "RetNetDecoder",
    "TransformerDecoder",
    "generate_maskgit",
    "generate_retnet",
    "generate_transformer",
    "sample",
]
