"""RetNet decoder (arXiv 2307.08621) as FlashVideo's generator backbone (arXiv 2401.00869).

Each block: x + MSR(LN(x)), then x + FFN(LN(x)). Multi-scale retention (MSR, RetNet Eq. 8):
per head h, γ_h = 1 − 2^(−5−h); q, k rotated by Θ (``layers.Rotary``), k scaled by d_k^(−1/2);
Y = GroupNorm_h(Retention(X)) per head (eps ``norm_eps``; 0 makes the parallel, recurrent and
chunkwise forms agree to rounding), output W_O(swish(X W_G) ⊙ Y).

Forms: ``forward`` runs the parallel form (training); ``prefill`` the chunkwise form over a
prompt (``backend`` as in ``ops.retention``) and returns the per-layer states; ``step`` one
recurrent step per token (generation; O(1) in the position).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ops.retention import RetentionState, multiscale_gammas, retention
from ops.retention import retention_step as _retention_step

from .layers import FeedForward, Rotary, check_context, check_heads


class MultiScaleRetention(nn.Module):
    """Multi-scale retention with rotation, per-head GroupNorm and the swish gate (Eq. 8)."""

    def __init__(self, d_model: int, num_heads: int, norm_eps: float = 1e-6) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = check_heads(d_model, num_heads)
        self.norm_eps = norm_eps
        self.q = nn.Linear(d_model, d_model, bias=False)
        self.k = nn.Linear(d_model, d_model, bias=False)
        self.v = nn.Linear(d_model, d_model, bias=False)
        self.g = nn.Linear(d_model, d_model, bias=False)
        self.o = nn.Linear(d_model, d_model, bias=False)
        self.rotary = Rotary(self.head_dim)
        self.register_buffer("gamma", multiscale_gammas(num_heads), persistent=False)

    def _heads(self, x: torch.Tensor, offset: int) -> tuple[torch.Tensor, ...]:
        """x (B, L, D) → rotated q, scaled rotated k, v, each (B, H, L, d)."""
        b, length, _ = x.shape

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, length, self.num_heads, self.head_dim).transpose(1, 2)

        q = self.rotary(split(self.q(x)), offset)
        k = self.rotary(split(self.k(x)), offset) * self.head_dim**-0.5
        return q, k, split(self.v(x))

    def _out(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-head GroupNorm of y (B, H, L, d), gate with swish(x W_G), project; (B, L, D)."""
        b, h, length, d = y.shape
        y = y.transpose(1, 2).reshape(b * length, h * d)
        y = F.group_norm(y, h, eps=self.norm_eps).view(b, length, h * d)
        return self.o(F.silu(self.g(x)) * y)

    def forward(
        self,
        x: torch.Tensor,
        form: str = "parallel",
        state: RetentionState | None = None,
        offset: int = 0,
        backend: str | None = None,
        chunk_size: int = 64,
    ) -> tuple[torch.Tensor, RetentionState | None]:
        """x (B, L, D) at positions offset… → (B, L, D) and the state after it (not parallel)."""
        q, k, v = self._heads(x, offset)
        gamma = self.gamma.to(x.dtype)
        y, state = retention(
            q, k, v, gamma, form=form, state=state, chunk_size=chunk_size, backend=backend
        )
        return self._out(x, y), state

    def step(
        self, x: torch.Tensor, state: RetentionState, offset: int
    ) -> tuple[torch.Tensor, RetentionState]:
        """One token x (B, 1, D) at position ``offset`` → (B, 1, D) and the new state."""
        q, k, v = self._heads(x, offset)
        y, state = _retention_step(
            q[:, :, 0], k[:, :, 0], v[:, :, 0], self.gamma.to(x.dtype), state
        )
        return self._out(x, y.unsqueeze(2)), state


class RetNetBlock(nn.Module):
    def __init__(self, d_model: int, num_heads: int, ffn_mult: int, norm_eps: float) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.msr = MultiScaleRetention(d_model, num_heads, norm_eps)
        self.ln2 = nn.LayerNorm(d_model)
        self.ffn = FeedForward(d_model, ffn_mult)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.msr(self.ln1(x))[0]
        return x + self.ffn(self.ln2(x))

    def step(self, x, state, offset):
        y, state = self.msr.step(self.ln1(x), state, offset)
        x = x + y
        return x + self.ffn(self.ln2(x)), state

    def chunk(self, x, state, offset, backend, chunk_size):
        y, state = self.msr(
            self.ln1(x), "chunkwise", state, offset, backend=backend, chunk_size=chunk_size
        )
        x = x + y
        return x + self.ffn(self.ln2(x)), state


class RetNetDecoder(nn.Module):
    """Token embedding → RetNet blocks → LayerNorm → logits over ``vocab_size``.

    Args:
        vocab_size: tokens of the joint vocabulary (caption words, serial numbers, codes).
        d_model: width; num_heads: retention heads (d_model/num_heads even).
        num_layers: blocks; ffn_mult: FFN width factor.
        max_len: the longest sequence the model may see (its trained context).
        norm_eps: eps of the per-head GroupNorm.
    """

    def __init__(
        self,
        vocab_size: int,
        d_model: int = 64,
        num_heads: int = 4,
        num_layers: int = 2,
        ffn_mult: int = 4,
        max_len: int = 1024,
        norm_eps: float = 1e-6,
    ) -> None:
        super().__init__()
        self.max_len = max_len
        self.embed = nn.Embedding(vocab_size, d_model)
        self.blocks = nn.ModuleList(
            RetNetBlock(d_model, num_heads, ffn_mult, norm_eps) for _ in range(num_layers)
        )
        self.ln = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Parallel form: tokens (B, L) → logits (B, L, V)."""
        check_context(tokens.shape[1], self.max_len, "RetNetDecoder")
        x = self.embed(tokens)
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln(x))

    def prefill(
        self, tokens: torch.Tensor, backend: str | None = None, chunk_size: int = 64
    ) -> tuple[torch.Tensor, list[RetentionState]]:
        """Chunkwise form over a prompt (B, L): logits (B, L, V) and one state per layer."""
        check_context(tokens.shape[1], self.max_len, "RetNetDecoder")
        x = self.embed(tokens)
        states = []
        for block in self.blocks:
            x, state = block.chunk(x, None, 0, backend, chunk_size)
            states.append(state)
        return self.head(self.ln(x)), states

    def extend(
        self,
        tokens: torch.Tensor,
        states: list[RetentionState],
        position: int,
        backend: str | None = None,
        chunk_size: int = 64,
    ) -> tuple[torch.Tensor, list[RetentionState]]:
        """Chunkwise form continuing from ``states``: tokens (B, n) at ``position``… →
        logits of the last token (B, V) and the new states (one pass for n known tokens)."""
        check_context(position + tokens.shape[1], self.max_len, "RetNetDecoder")
        x = self.embed(tokens)
        new = []
        for block, state in zip(self.blocks, states, strict=True):
            x, state = block.chunk(x, state, position, backend, chunk_size)
            new.append(state)
        return self.head(self.ln(x[:, -1:]))[:, 0], new

    def step(
        self, token: torch.Tensor, states: list[RetentionState], position: int
    ) -> tuple[torch.Tensor, list[RetentionState]]:
        """Recurrent form: token (B,) at ``position`` → logits (B, V) and the new states."""
        check_context(position + 1, self.max_len, "RetNetDecoder")
        x = self.embed(token)[:, None]
        new = []
        for block, state in zip(self.blocks, states, strict=True):
            x, state = block.step(x, state, position)
            new.append(state)
        return self.head(self.ln(x))[:, 0], new

    @staticmethod
    def state_bytes(states: list[RetentionState]) -> int:
        """Bytes of the recurrent state: S, z and c of every layer (independent of L)."""
        return sum(t.numel() * t.element_size() for s in states for t in s)
