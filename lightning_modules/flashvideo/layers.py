"""Parts shared by the FlashVideo decoders: rotary position rotation, the feed-forward block,
the context-length check."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Rotary(nn.Module):
    """Rotation of (even, odd) feature pairs by n·θ_i, θ_i = base^(−2i/d) (RetNet's Θ, Eq. 3).

    RetNet writes retention with q_n e^(inθ) and k_m e^(−imθ) (an xPos-like relative position);
    its magnitude decay is γ^(n−m) in the retention itself, so only the rotation is applied here.
    """

    def __init__(self, head_dim: int, base: float = 10000.0) -> None:
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"head_dim={head_dim}: rotary position needs an even head size")
        inv = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
        self.register_buffer("inv_freq", inv.float(), persistent=False)

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """x (B, H, L, d) at positions offset … offset+L−1 → rotated x, same shape."""
        length = x.shape[2]
        pos = torch.arange(offset, offset + length, device=x.device, dtype=torch.float64)
        angle = (pos[:, None] * self.inv_freq.double()[None, :]).to(x.dtype)  # (L, d/2)
        cos, sin = angle.cos(), angle.sin()
        x1, x2 = x[..., 0::2], x[..., 1::2]
        return torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).flatten(-2)


class FeedForward(nn.Module):
    """Linear → GELU → linear, width ``mult``·d_model."""

    def __init__(self, d_model: int, mult: int = 4) -> None:
        super().__init__()
        self.up = nn.Linear(d_model, mult * d_model)
        self.down = nn.Linear(mult * d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.gelu(self.up(x)))


def check_context(length: int, max_len: int, what: str) -> None:
    """Raise ValueError when ``length`` tokens exceed the ``max_len`` the model was built for."""
    if length > max_len:
        raise ValueError(
            f"{what}: sequence length {length} exceeds the trained context max_len={max_len}: "
            "generate fewer frames/tokens or train a model with a larger model.max_len"
        )


def check_heads(d_model: int, num_heads: int) -> int:
    """d_model / num_heads, or ValueError when it does not divide evenly into an even size."""
    if num_heads < 1 or d_model % num_heads or (d_model // num_heads) % 2:
        raise ValueError(
            f"d_model={d_model}, num_heads={num_heads}: d_model must split into num_heads "
            "heads of an even size (e.g. d_model=64, num_heads=4)"
        )
    return d_model // num_heads
