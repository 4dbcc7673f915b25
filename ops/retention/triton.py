"""Triton kernel for chunkwise retention (RetNet, arXiv 2307.08621, Eq. 7), forward only.

One program per (batch·head, block of d_v columns) walks the sequence in chunks of
``BLOCK_T`` rows and keeps the recurrent state R (d_k × BLOCK_V) and the normaliser state z
(d_k) in registers (fp32): per chunk, o = (Q Kᵀ ⊙ D) V + (Q ⊙ γ^(j+1)) R, then
R ← γ^B R + (K ⊙ ζ)ᵀ V and z ← γ^B z + Σ_j ζ_j k_j, with ζ_j = γ^(B−1−j) (see
``reference.retention_chunkwise``). It writes the unnormalised output, the signed row sums
s_n (for the normalisation) and the final state; the division by max(√c_n, |s_n|) and c_n's
closed form stay in torch. Decays are computed as exp2(p · log2 γ). The whole key dimension
sits in one block (d_k ≤ 256). Backward: none here; ``autograd.py`` differentiates through
the reference's chunkwise form.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ops.dispatch import check_triton_runnable, device_guard

BLOCK_T = 16
MAX_DK = 256
DTYPES = (torch.float32, torch.float16, torch.bfloat16)


@triton.jit
def _retention_chunk_fwd_kernel(
    q_ptr,  # *T, (BH, L, DK) queries, contiguous
    k_ptr,  # *T, (BH, L, DK) keys, contiguous
    v_ptr,  # *T, (BH, L, DV) values, contiguous
    log2g_ptr,  # *fp32, (H,) log2 γ_h
    s0_ptr,  # *fp32, (BH, DK, DV) state R before the first token
    z0_ptr,  # *fp32, (BH, DK) normaliser state z before the first token
    o_ptr,  # *fp32, (BH, L, DV) unnormalised output
    rs_ptr,  # *fp32, (BH, L) signed row sums s_n = q_n · z_n
    s_ptr,  # *fp32, (BH, DK, DV) state R after the last token
    z_ptr,  # *fp32, (BH, DK) normaliser state z after the last token
    L,  # sequence length
    H,  # heads (head of program = bh % H)
    DK,  # key dimension
    DV,  # value dimension
    BLOCK_T: tl.constexpr,  # rows per chunk, a power of two ≥ 16
    BLOCK_K: tl.constexpr,  # next power of two ≥ DK
    BLOCK_V: tl.constexpr,  # value columns per program, a power of two ≥ 16
):
    bh = tl.program_id(0).to(tl.int64)
    pv = tl.program_id(1)
    log2g = tl.load(log2g_ptr + bh % H)
    rk = tl.arange(0, BLOCK_K)
    rv = pv * BLOCK_V + tl.arange(0, BLOCK_V)
    rt = tl.arange(0, BLOCK_T)
    mk = rk < DK
    mv = rv < DV
    state_offs = bh * DK * DV + rk[:, None] * DV + rv[None, :]
    state_mask = mk[:, None] & mv[None, :]
    R = tl.load(s0_ptr + state_offs, mask=state_mask, other=0.0)  # (BLOCK_K, BLOCK_V)
    z = tl.load(z0_ptr + bh * DK + rk, mask=mk, other=0.0)  # (BLOCK_K,)
    tf = rt.to(tl.float32)
    diff = tf[:, None] - tf[None, :]
    causal = diff >= 0
    dmat = tl.where(causal, tl.exp2(tl.where(causal, diff, 0.0) * log2g), 0.0)
    inner = tl.exp2((tf + 1.0) * log2g)  # γ^(j+1)
    for start in range(0, L, BLOCK_T):
        rows = start + rt
        mt = rows < L
        n = tl.minimum(L - start, BLOCK_T)
        qk_offs = bh * L * DK + rows[:, None] * DK + rk[None, :]
        qk_mask = mt[:, None] & mk[None, :]
        q = tl.load(q_ptr + qk_offs, mask=qk_mask, other=0.0).to(tl.float32)
        k = tl.load(k_ptr + qk_offs, mask=qk_mask, other=0.0).to(tl.float32)
        v_offs = bh * L * DV + rows[:, None] * DV + rv[None, :]
        v_mask = mt[:, None] & mv[None, :]
        v = tl.load(v_ptr + v_offs, mask=v_mask, other=0.0).to(tl.float32)
        scores = tl.dot(q, tl.trans(k)) * dmat  # (BLOCK_T, BLOCK_T)
        qdec = q * inner[:, None]
        o = tl.dot(scores, v) + tl.dot(qdec, R)
        tl.store(o_ptr + v_offs, o, mask=v_mask)
        rowsum = tl.sum(scores, axis=1) + tl.sum(qdec * z[None, :], axis=1)
        tl.store(rs_ptr + bh * L + rows, rowsum, mask=mt & (pv == 0))
        zeta = tl.where(mt, tl.exp2((n - 1 - tf) * log2g), 0.0)  # γ^(B'−1−j), 0 past L
        kz = k * zeta[:, None]
        decay = tl.exp2(n.to(tl.float32) * log2g)
        R = decay * R + tl.dot(tl.trans(kz), v)
        z = decay * z + tl.sum(kz, axis=0)
    tl.store(s_ptr + state_offs, R, mask=state_mask)
    tl.store(z_ptr + bh * DK + rk, z, mask=mk & (pv == 0))


def retention_chunk_fwd_triton(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    gamma: torch.Tensor,
    S0: torch.Tensor,
    z0: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Unnormalised chunkwise retention from state (S0, z0).

    Shapes: q, k (B, H, L, d_k), v (B, H, L, d_v), gamma (H,), S0 (B, H, d_k, d_v),
    z0 (B, H, d_k). Returns fp32 (raw (B, H, L, d_v), row sums s (B, H, L), S, z).
    """
    check_triton_runnable(q, op="retention", dtypes=DTYPES)
    b, h, length, dk = q.shape
    dv = v.shape[-1]
    if dk > MAX_DK:
        raise ValueError(
            f"retention: d_k={dk} > {MAX_DK}: the Triton kernel keeps d_k in one block; use "
            "backend='reference' or smaller heads"
        )
    q, k, v = (t.contiguous() for t in (q, k, v))
    log2g = torch.log2(gamma.to(device=q.device, dtype=torch.float64)).float().contiguous()
    s0 = S0.to(device=q.device, dtype=torch.float32).contiguous()
    z0_ = z0.to(device=q.device, dtype=torch.float32).contiguous()
    out = q.new_empty(b, h, length, dv, dtype=torch.float32)
    rowsum = q.new_empty(b, h, length, dtype=torch.float32)
    S = torch.empty_like(s0)
    z = torch.empty_like(z0_)
    block_k = max(16, triton.next_power_of_2(dk))
    block_v = min(64, max(16, triton.next_power_of_2(dv)))
    if b * h:
        grid = (b * h, triton.cdiv(dv, block_v))
        with device_guard(q):
            _retention_chunk_fwd_kernel[grid](
                q, k, v, log2g, s0, z0_, out, rowsum, S, z, length, h, dk, dv,
                BLOCK_T=BLOCK_T, BLOCK_K=block_k, BLOCK_V=block_v,
            )  # fmt: skip
    return out, rowsum, S, z
