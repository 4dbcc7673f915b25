"""FlashVideo's token sequence: ``[caption words][SN_1][frame 1 codes][SN_2][frame 2 codes]…``.

Serial-number tokens SN_t mark each frame's start, giving the decoder an absolute frame
identity under retention's relative decay (arXiv 2401.00869, §3). Id ranges of the joint
vocabulary: caption words [0, W), SN_1…SN_T [W, W+T), codes [W+T, W+T+K), then [MASK] (for the
MaskGIT baseline).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SequenceLayout:
    """Where every token of a clip goes.

    Args:
        num_words: caption vocabulary size W (word 0 is padding).
        caption_len: caption tokens C.
        frames: frames T; tokens_per_frame: codes per frame (h·w); num_codes: K.
    """

    num_words: int
    caption_len: int
    frames: int
    tokens_per_frame: int
    num_codes: int

    @property
    def sn0(self) -> int:
        return self.num_words

    @property
    def code0(self) -> int:
        return self.num_words + self.frames

    @property
    def mask_token(self) -> int:
        return self.code0 + self.num_codes

    @property
    def vocab_size(self) -> int:
        return self.mask_token + 1

    @property
    def frame_len(self) -> int:
        return 1 + self.tokens_per_frame

    @property
    def length(self) -> int:
        return self.caption_len + self.frames * self.frame_len

    def frame_start(self, t: int) -> int:
        """Position of frame t's first code (its SN token sits just before)."""
        return self.caption_len + t * self.frame_len + 1

    def build(self, caption: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """caption (B, C), codes (B, T', h·w) with T' ≤ T → tokens (B, C + T'·(1 + h·w))."""
        b, frames, _ = codes.shape
        sn = self.sn0 + torch.arange(frames, device=codes.device)
        video = torch.cat([sn.expand(b, frames)[..., None], codes + self.code0], dim=-1)
        return torch.cat([caption, video.flatten(1)], dim=1)

    def codes_of(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (B, length) → codes (B, T, h·w) (ids shifted back to [0, K))."""
        video = tokens[:, self.caption_len :].view(tokens.shape[0], self.frames, self.frame_len)
        return video[..., 1:] - self.code0

    def code_positions(self, device=None) -> torch.Tensor:
        """(length,) bool: the positions that hold codes."""
        mask = torch.zeros(self.length, dtype=torch.bool, device=device)
        for t in range(self.frames):
            s = self.frame_start(t)
            mask[s : s + self.tokens_per_frame] = True
        return mask

    def forced_serial_numbers(self) -> dict[int, int]:
        """{position: SN_t} for every frame: written, never sampled, when generating."""
        return {self.frame_start(t) - 1: self.sn0 + t for t in range(self.frames)}

    def allowed_codes(self, device=None) -> torch.Tensor:
        """(vocab_size,) bool: True for code tokens (what generation may sample)."""
        allowed = torch.zeros(self.vocab_size, dtype=torch.bool, device=device)
        allowed[self.code0 : self.mask_token] = True
        return allowed
