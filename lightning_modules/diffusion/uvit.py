"""U-ViT (arXiv:2209.12152): a ViT noise predictor whose tokens are the time, an optional
class label and the image patches, with long skips from each shallow block to its mirror deep
block (§3.1: ``concat`` then a linear layer), and a 3×3 convolution after unpatchify.

The blocks are numbered ``0..depth-1`` in execution order: ``depth // 2`` input blocks, the
middle block, ``depth // 2`` output blocks. :meth:`UViT.layers` runs them one at a time so an
early-exit sampler can stop after any block and decode that hidden state with the shared head
(:meth:`UViT.head`), as DeeDiff does (arXiv:2309.17074 §3.2).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of (float) timesteps ``t`` ``(B,)`` → ``(B, dim)``."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return F.pad(emb, (0, dim % 2))


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        qkv = self.qkv(x).view(b, n, 3, self.num_heads, d // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, heads, N, d_head)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    """Pre-norm transformer block; an output block first fuses its long skip."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, skip: bool) -> None:
        super().__init__()
        self.skip_linear = nn.Linear(2 * dim, dim) if skip else None
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        if self.skip_linear is not None:
            x = self.skip_linear(torch.cat([x, skip], dim=-1))
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class UViT(nn.Module):
    """U-ViT noise predictor ε_θ(x_t, t[, y]).

    Args:
        image_size: square image side; divisible by ``patch_size``.
        in_channels: image channels.
        patch_size: patch side (U-ViT-S/2: 2).
        embed_dim: token width (U-ViT-S: 512).
        depth: blocks, odd (U-ViT-S: 13 = 6 in + mid + 6 out).
        num_heads: attention heads (U-ViT-S: 8).
        mlp_ratio: MLP width / token width.
        num_classes: > 0 adds a class token (label ``num_classes`` is the null class).

    Shapes:
        x ``(B, C, H, W)``, t ``(B,)`` → ε ``(B, C, H, W)``; tokens ``(B, extras + L, D)``.
    """

    def __init__(
        self,
        image_size: int,
        in_channels: int,
        patch_size: int = 2,
        embed_dim: int = 512,
        depth: int = 13,
        num_heads: int = 8,
        mlp_ratio: float = 4.0,
        num_classes: int = 0,
    ) -> None:
        super().__init__()
        if image_size % patch_size:
            raise ValueError(
                f"patch_size={patch_size} does not divide image_size={image_size}: choose a "
                f"divisor of {image_size}"
            )
        if depth % 2 == 0 or depth < 1:
            raise ValueError(f"depth={depth}: U-ViT needs an odd depth (in + mid + out), e.g. 13")
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim={embed_dim} is not divisible by num_heads={num_heads}")
        self.image_size, self.in_channels, self.patch_size = image_size, in_channels, patch_size
        self.embed_dim, self.depth = embed_dim, depth
        self.num_classes = num_classes
        self.patch_embed = nn.Conv2d(in_channels, embed_dim, patch_size, stride=patch_size)
        self.time_embed = nn.Sequential(
            nn.Linear(embed_dim, 4 * embed_dim), nn.SiLU(), nn.Linear(4 * embed_dim, embed_dim)
        )
        self.label_embed = nn.Embedding(num_classes + 1, embed_dim) if num_classes else None
        self.extras = 1 + (num_classes > 0)
        num_patches = (image_size // patch_size) ** 2
        self.pos_embed = nn.Parameter(torch.zeros(1, self.extras + num_patches, embed_dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        half = depth // 2
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio, skip=i > half) for i in range(depth)
        )
        self.norm = nn.LayerNorm(embed_dim)
        self.decoder_pred = nn.Linear(embed_dim, patch_size**2 * in_channels)
        self.final_layer = nn.Conv2d(in_channels, in_channels, 3, padding=1)

    def embed(
        self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens ``(B, N, D)`` and the time embedding ``(B, D)`` (the time token)."""
        patches = self.patch_embed(x).flatten(2).transpose(1, 2)  # (B, L, D)
        temb = self.time_embed(timestep_embedding(t, self.embed_dim))  # (B, D)
        tokens = [temb[:, None]]
        if self.label_embed is not None:
            if y is None:
                y = torch.full_like(t, self.num_classes, dtype=torch.long)
            tokens.append(self.label_embed(y)[:, None])
        h = torch.cat([*tokens, patches], dim=1) + self.pos_embed
        return h, temb

    def layer(self, i: int, h: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        """Block ``i`` on ``h``; input blocks push their output on ``skips``, output blocks
        pop their mirror's."""
        half = self.depth // 2
        if i < half:
            h = self.blocks[i](h)
            skips.append(h)
            return h
        if i == half:
            return self.blocks[i](h)
        return self.blocks[i](h, skips.pop())

    def head(self, h: torch.Tensor) -> torch.Tensor:
        """The shared output head: norm, linear to patches, unpatchify, 3×3 conv."""
        p, c, side = self.patch_size, self.in_channels, self.image_size // self.patch_size
        out = self.decoder_pred(self.norm(h))[:, self.extras :]  # (B, L, p*p*C)
        out = out.view(-1, side, side, p, p, c).permute(0, 5, 1, 3, 2, 4)
        return self.final_layer(out.reshape(-1, c, side * p, side * p))

    def layers(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None):
        """Yield ``(i, h_i, temb)`` after each block ``i`` (the full forward pass, lazily)."""
        h, temb = self.embed(x, t, y)
        skips: list[torch.Tensor] = []
        for i in range(self.depth):
            h = self.layer(i, h, skips)
            yield i, h, temb

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None
    ) -> torch.Tensor:
        h, _ = self.embed(x, t, y)
        skips: list[torch.Tensor] = []
        for i in range(self.depth):
            h = self.layer(i, h, skips)
        return self.head(h)
