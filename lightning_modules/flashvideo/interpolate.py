"""Redundant-free frame interpolation (FlashVideo, arXiv 2401.00869): keyframes come first;
for an in-between frame only the token positions where its two neighbouring keyframes differ
are generated, the rest are copied from the keyframe before it.

Here the keyframes are frames 0, 2, 4, … of a clip (given as codes: a tokenized real clip or
a generated one) and the odd frames are filled by the RetNet generator in sequence order.
Copied tokens, the keyframes and the serial numbers are known, so ``generate_retnet`` feeds
each run of them through the chunkwise form in one pass; only the differing positions take a
recurrent step and a sample. The full alternative samples every position of the in-between
frames. The last frame, when odd, has no right keyframe and is generated in full.
"""

from __future__ import annotations

import time

import torch

from .generate import generate_retnet
from .layout import SequenceLayout


def interpolation_plan(
    layout: SequenceLayout, codes: torch.Tensor, redundant_free: bool = True
) -> tuple[dict[int, int], int, int]:
    """Forced tokens for one clip's in-between frames.

    Args:
        layout: the sequence layout; codes: (T, h·w) codes of the clip (odd frames unused).
        redundant_free: copy the positions where the neighbouring keyframes agree.

    Returns:
        ({position: token} to force, positions left to generate, in-between positions).
    """
    forced = layout.forced_serial_numbers()
    free = total = 0
    for t in range(layout.frames):
        start = layout.frame_start(t)
        if t % 2 == 0:
            forced.update({start + j: layout.code0 + int(c) for j, c in enumerate(codes[t])})
            continue
        total += layout.tokens_per_frame
        if not redundant_free or t + 1 >= layout.frames:
            free += layout.tokens_per_frame
            continue
        same = codes[t - 1] == codes[t + 1]
        for j in torch.nonzero(same).flatten().tolist():
            forced[start + j] = layout.code0 + int(codes[t - 1, j])
        free += int((~same).sum())
    return forced, free, total


@torch.no_grad()
def interpolate(module, caption: torch.Tensor, codes: torch.Tensor, redundant_free: bool = True
                ) -> tuple[torch.Tensor, dict[str, float]]:  # fmt: skip
    """Fill the odd frames of each clip: caption (B, C), codes (B, T, h·w) → (codes, stats).

    ``module`` is a ``FlashVideoGenerator`` with the retnet backbone. Stats: ``regenerated``
    (fraction of in-between positions sampled) and ``seconds`` (all clips, one at a time).
    """
    layout, out = module.layout, []
    free = total = 0
    start = time.perf_counter()
    for i in range(caption.shape[0]):
        forced, f, t = interpolation_plan(layout, codes[i], redundant_free)
        free, total = free + f, total + t
        seq = generate_retnet(
            module.net, caption[i : i + 1], layout.length - layout.caption_len,
            forced=forced, allowed=layout.allowed_codes(caption.device),
            backend=module.hparams.backend,
        )  # fmt: skip
        out.append(layout.codes_of(seq))
    seconds = time.perf_counter() - start
    return torch.cat(out), {"regenerated": free / max(total, 1), "seconds": seconds}
