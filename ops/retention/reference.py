"""Multi-scale retention (RetNet, arXiv 2307.08621) in its three equivalent forms, plain PyTorch.

Per head h with decay γ_h (multi-scale: γ_h = 1 − 2^(−5−h), Eq. 8 of the RetNet paper), for
queries q_n, keys k_n (dimension d_k) and values v_n (d_v) at positions n = 0 … L−1:

    raw_n = Σ_{m≤n} γ^(n−m) (q_n · k_m) v_m          parallel: (QKᵀ ⊙ D) V, D_nm = γ^(n−m) (Eq. 5)
          = q_n S_n,  S_n = γ S_{n−1} + k_nᵀ v_n    recurrent (Eq. 6)
    chunk i of B rows: R_i = K_iᵀ (V_i ⊙ ζ) + γ^B R_{i−1},  ζ_j = γ^(B−1−j)   chunkwise (Eq. 7)

Normalisation (``normalize=True``). torchscale's parallel form divides D's rows by
√(Σ_m D_nm) and the rows of QKᵀ ⊙ D by max(1, Σ_m |(QKᵀ ⊙ D)_nm|); the absolute value inside
that sum has no recurrent form, so the three forms disagree. Here every form divides row n by

    max(√c_n, |s_n|),  c_n = Σ_{m≤n} γ^(n−m) = γ c_{n−1} + 1,
                       s_n = q_n · z_n,  z_n = γ z_{n−1} + k_n

(the signed row sum of QKᵀ ⊙ D, which does have a recurrent form). It is a positive scalar per
(token, head), so the per-head GroupNorm that follows retention cancels it when its eps is 0;
it only keeps magnitudes bounded. ``normalize=False`` returns raw_n.

State carried between calls (recurrent decoding, chunkwise prompts): ``RetentionState`` with
S (B, H, d_k, d_v), z (B, H, d_k) and c (H,) after the tokens seen so far.

All functions take q, k (B, H, L, d_k), v (B, H, L, d_v) and gamma (H,), any float dtype
(float64 included); they compute in the inputs' dtype.
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class RetentionState(NamedTuple):
    """Recurrent state after n tokens: S (B, H, d_k, d_v), z (B, H, d_k), c (H,)."""

    S: torch.Tensor
    z: torch.Tensor
    c: torch.Tensor


def multiscale_gammas(num_heads: int) -> torch.Tensor:
    """γ_h = 1 − 2^(−5−h) for h = 0 … num_heads−1 (RetNet Eq. 8), float64."""
    if num_heads < 1:
        raise ValueError(f"num_heads={num_heads}: pass at least one head")
    return 1.0 - torch.pow(2.0, -5.0 - torch.arange(num_heads, dtype=torch.float64))


def check_inputs(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, gamma: torch.Tensor) -> None:
    """Raise ValueError naming the shape or value that does not fit."""
    if q.dim() != 4 or k.shape != q.shape:
        raise ValueError(
            f"retention: q {tuple(q.shape)} and k {tuple(k.shape)} must both be (B, H, L, d_k)"
        )
    if v.dim() != 4 or v.shape[:3] != q.shape[:3]:
        raise ValueError(
            f"retention: v {tuple(v.shape)} must be (B, H, L, d_v) with (B, H, L) = "
            f"{tuple(q.shape[:3])} as in q"
        )
    if gamma.shape != (q.shape[1],):
        raise ValueError(
            f"retention: gamma {tuple(gamma.shape)} must be (H,) = ({q.shape[1]},), one decay "
            "per head (e.g. multiscale_gammas(H))"
        )
    if gamma.numel() and not bool(((gamma > 0) & (gamma < 1)).all()):
        raise ValueError(f"retention: gamma={gamma.tolist()}: every decay must lie in (0, 1)")


def empty_state(q: torch.Tensor, v: torch.Tensor) -> RetentionState:
    """The state before any token, for q (B, H, ·, d_k) and v (B, H, ·, d_v)."""
    b, h, _, dk = q.shape
    return RetentionState(q.new_zeros(b, h, dk, v.shape[-1]), q.new_zeros(b, h, dk), q.new_zeros(h))


def _normalise(raw: torch.Tensor, s: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """raw (B, H, L, d_v) / max(√c (H, L), |s| (B, H, L)) row by row."""
    denom = torch.maximum(c.sqrt().unsqueeze(0), s.abs())
    return raw / denom.unsqueeze(-1)


def decay_matrix(gamma: torch.Tensor, length: int) -> torch.Tensor:
    """D (H, L, L): D_nm = γ^(n−m) for n ≥ m, else 0 (RetNet Eq. 5)."""
    n = torch.arange(length, device=gamma.device)
    diff = (n[:, None] - n[None, :]).to(gamma.dtype)
    causal = diff >= 0
    powers = torch.pow(gamma[:, None, None], diff.clamp(min=0))
    return torch.where(causal, powers, torch.zeros_like(powers))


def retention_parallel(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, gamma: torch.Tensor, normalize: bool = True
) -> torch.Tensor:
    """(QKᵀ ⊙ D) V over the whole sequence from an empty state; (B, H, L, d_v)."""
    check_inputs(q, k, v, gamma)
    length = q.shape[2]
    d = decay_matrix(gamma.to(q.dtype), length)  # (H, L, L)
    scores = (q @ k.transpose(-1, -2)) * d  # (B, H, L, L)
    raw = scores @ v
    if not normalize:
        return raw
    g = gamma.to(q.dtype)[:, None]
    c = (1 - g ** (torch.arange(length, device=q.device, dtype=q.dtype) + 1)) / (1 - g)
    return _normalise(raw, scores.sum(-1), c)


def retention_step(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    gamma: torch.Tensor,
    state: RetentionState,
    normalize: bool = True,
) -> tuple[torch.Tensor, RetentionState]:
    """One recurrent step: q, k (B, H, d_k), v (B, H, d_v) → (o_n (B, H, d_v), new state)."""
    g = gamma.to(q.dtype)
    S = g[None, :, None, None] * state.S + k.unsqueeze(-1) * v.unsqueeze(-2)
    z = g[None, :, None] * state.z + k
    c = g * state.c + 1
    raw = (q.unsqueeze(-1) * S).sum(-2)  # (B, H, d_v)
    new = RetentionState(S, z, c)
    if not normalize:
        return raw, new
    s = (q * z).sum(-1)  # (B, H)
    denom = torch.maximum(c.sqrt().unsqueeze(0), s.abs())
    return raw / denom.unsqueeze(-1), new


def retention_recurrent(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    gamma: torch.Tensor,
    state: RetentionState | None = None,
    normalize: bool = True,
) -> tuple[torch.Tensor, RetentionState]:
    """The recurrent form over L tokens, one step at a time; (B, H, L, d_v) and the state."""
    check_inputs(q, k, v, gamma)
    state = empty_state(q, v) if state is None else state
    outs = []
    for n in range(q.shape[2]):
        o, state = retention_step(q[:, :, n], k[:, :, n], v[:, :, n], gamma, state, normalize)
        outs.append(o)
    if not outs:
        return v.new_zeros(v.shape), state
    return torch.stack(outs, dim=2), state


def retention_chunkwise(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    gamma: torch.Tensor,
    state: RetentionState | None = None,
    chunk_size: int = 64,
    normalize: bool = True,
) -> tuple[torch.Tensor, RetentionState]:
    """The chunkwise form: parallel inside chunks of ``chunk_size`` rows, recurrent across them.

    Inside chunk i (rows j = 0 … B'−1, B' ≤ chunk_size the chunk's length):
    o_j = (Q_i K_iᵀ ⊙ D)_j V_i + γ^(j+1) q_j R_{i−1}, then R_i = K_iᵀ (V_i ⊙ ζ) + γ^B' R_{i−1}
    with ζ_j = γ^(B'−1−j) (RetNet Eq. 7); z and c follow the same recursion with V → 1.
    """
    check_inputs(q, k, v, gamma)
    if chunk_size < 1:
        raise ValueError(f"retention: chunk_size={chunk_size}: pass a positive chunk length")
    S, z, c = empty_state(q, v) if state is None else state
    g = gamma.to(q.dtype)
    outs = []
    for start in range(0, q.shape[2], chunk_size):
        qi, ki, vi = (t[:, :, start : start + chunk_size] for t in (q, k, v))
        n = qi.shape[2]
        j = torch.arange(n, device=q.device, dtype=q.dtype)
        inner = g[:, None] ** (j + 1)  # (H, B'): γ^(j+1), decay of the carried state
        zeta = g[:, None] ** (n - 1 - j)  # (H, B'): γ^(B'−1−j)
        scores = (qi @ ki.transpose(-1, -2)) * decay_matrix(g, n)  # (B, H, B', B')
        qdec = qi * inner[None, :, :, None]
        raw = scores @ vi + qdec @ S
        if normalize:
            s = scores.sum(-1) + (qdec * z.unsqueeze(2)).sum(-1)  # (B, H, B')
            cj = inner * c[:, None] + (1 - inner) / (1 - g[:, None])  # (H, B')
            raw = _normalise(raw, s, cj)
        outs.append(raw)
        kz = ki * zeta[None, :, :, None]  # (B, H, B', d_k)
        decay = g**n
        S = decay[None, :, None, None] * S + kz.transpose(-1, -2) @ vi
        z = decay[None, :, None] * z + kz.sum(2)
        c = decay * c + (1 - decay) / (1 - g)
    out = torch.cat(outs, dim=2) if outs else v.new_zeros(v.shape)
    return out, RetentionState(S, z, c)
