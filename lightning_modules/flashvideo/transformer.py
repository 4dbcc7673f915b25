"""Baselines of FlashVideo's RetNet at the same size: a causal transformer (generation with and
without a KV cache) and a MaskGIT-style bidirectional decoder (arXiv 2202.04200), the paper's
"BERT-based" parallel comparator.

Both use the RetNet decoder's width, heads, depth, FFN and rotary position (``layers``), with
softmax attention (``F.scaled_dot_product_attention``) in place of retention.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import FeedForward, Rotary, check_context, check_heads


class KVCache:
    """Keys and values of every layer, preallocated for ``max_len`` positions.

    Shapes: k, v (layers, B, H, max_len, d); ``length`` positions are filled.
    """

    def __init__(self, layers, batch, heads, max_len, head_dim, device, dtype) -> None:
        shape = (layers, batch, heads, max_len, head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.length = 0

    def nbytes(self, filled_only: bool = True) -> int:
        """Bytes of the cached keys and values (the filled positions, or the whole buffer)."""
        per_pos = 2 * self.k[:, :, :, :1].numel() * self.k.element_size()
        return per_pos * (self.length if filled_only else self.k.shape[3])


class Attention(nn.Module):
    def __init__(self, d_model: int, num_heads: int, causal: bool) -> None:
        super().__init__()
        self.num_heads, self.head_dim, self.causal = (
            num_heads,
            check_heads(d_model, num_heads),
            causal,
        )
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.o = nn.Linear(d_model, d_model, bias=False)
        self.rotary = Rotary(self.head_dim)

    def forward(
        self, x: torch.Tensor, cache: KVCache | None = None, layer: int = 0
    ) -> torch.Tensor:
        """x (B, L, D) → (B, L, D); with ``cache``, x continues the cached positions."""
        b, length, _ = x.shape
        offset = cache.length if cache is not None else 0
        q, k, v = (
            t.view(b, length, self.num_heads, self.head_dim).transpose(1, 2)
            for t in self.qkv(x).chunk(3, dim=-1)
        )
        q, k = self.rotary(q, offset), self.rotary(k, offset)
        if cache is not None:
            cache.k[layer, :, :, offset : offset + length] = k
            cache.v[layer, :, :, offset : offset + length] = v
            k = cache.k[layer, :, :, : offset + length]
            v = cache.v[layer, :, :, : offset + length]
        # a cached single-token step attends to everything before it: no mask needed
        causal = self.causal and length > 1
        if causal and offset:
            mask = torch.ones(length, offset + length, dtype=torch.bool, device=x.device).tril(
                offset
            )
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        else:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        return self.o(y.transpose(1, 2).reshape(b, length, -1))


class Block(nn.Module):
    def __init__(self, d_model: int, num_heads: int, ffn_mult: int, causal: bool) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = Attention(d_model, num_heads, causal)
        self.ln2 = nn.LayerNorm(d_model)
        self.ffn = FeedForward(d_model, ffn_mult)

    def forward(self, x, cache=None, layer=0):
        x = x + self.attn(self.ln1(x), cache, layer)
        return x + self.ffn(self.ln2(x))


class TransformerDecoder(nn.Module):
    """Pre-LN transformer over tokens (B, L) → logits (B, L, V); causal or bidirectional.

    Args are those of ``RetNetDecoder`` (vocab_size, d_model, num_heads, num_layers,
    ffn_mult, max_len) plus ``causal``.
    """

    def __init__(
        self,
        vocab_size: int,
        d_model: int = 64,
        num_heads: int = 4,
        num_layers: int = 2,
        ffn_mult: int = 4,
        max_len: int = 1024,
        causal: bool = True,
    ) -> None:
        super().__init__()
        self.max_len, self.causal = max_len, causal
        self.num_heads, self.head_dim = num_heads, check_heads(d_model, num_heads)
        self.embed = nn.Embedding(vocab_size, d_model)
        self.blocks = nn.ModuleList(
            Block(d_model, num_heads, ffn_mult, causal) for _ in range(num_layers)
        )
        self.ln = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size, bias=False)

    def new_cache(self, batch: int, device=None, dtype=None) -> KVCache:
        """An empty KV cache for ``batch`` sequences up to ``max_len`` (causal models only)."""
        if not self.causal:
            raise ValueError("TransformerDecoder(causal=False) attends both ways: no KV cache")
        weight = self.embed.weight
        return KVCache(
            len(self.blocks), batch, self.num_heads, self.max_len, self.head_dim,
            device or weight.device, dtype or weight.dtype,
        )  # fmt: skip

    def forward(self, tokens: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """tokens (B, L) → logits (B, L, V); with ``cache``, tokens follow the cached ones."""
        offset = cache.length if cache is not None else 0
        check_context(offset + tokens.shape[1], self.max_len, "TransformerDecoder")
        x = self.embed(tokens)
        for i, block in enumerate(self.blocks):
            x = block(x, cache, i)
        if cache is not None:
            cache.length = offset + tokens.shape[1]
        return self.head(self.ln(x))
