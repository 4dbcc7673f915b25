"""Plaintext description of the encrypted ST-GCN circuit and its exact float64 simulation.

An eval-mode ``STGCN`` (BatchNorms on running statistics) with an :data:`ActivationSpec` at
its activation sites is folded into per-block linear maps (tensors as (N, M, C, T, V)):

    data_bn     x̂[m,c,t,v] = s0[m,v,c]·x + h0[m,v,c]          (BatchNorm1d over M·V·C features)
    graph conv  u_w = Σ_v G[w,v,m] x̂_v + g[w,m],   G[w,v] = diag(s1) Σ_k Â_k[v,w] W_k,
                g_w = s1 ⊙ Σ_k (Σ_v Â_k[v,w]) b_k + h1,        Â_k = A_k ∘ M_k (edge importance)
                block 0 absorbs data_bn per person m:
                G[w,v,m] ← G[w,v]·diag(s0[m,v]),  g[w,m] ← g_w + Σ_v G[w,v] h0[m,v]
    act1        h = site1(u)                                    (per node: a2·u² + a1·u + a0 or u)
    temporal    z = (s2 ⊙ W_t) ∗ h + (s2 ⊙ b_t + h2)             (9×1, zero padding 4, stride)
    residual    r = x (identity) or (s_r ⊙ W_r) x[::stride] + (s_r ⊙ b_r + h_r)
    act2        y = site2(z + r)
    head        logits = H · mean_{t,v,m} y + b_H

Readout fold: when the last block's act2 is removed at every node, everything after its last
nonlinearity is linear and ends in a mean pool, so it folds into one pooled readout
``logits[k] = Σ_{v,m,c,t} F[v,m,k,c,t]·src[m,c,t,v] + β[k]`` costing ONE level:
- ``fold="tcn"`` (the block keeps act1 at every node): F acts on act1's output
  (F = H·W_t composed with the pool) and on the block input (the residual branch);
- ``fold="block"`` (the block keeps nothing): gcn, tcn, residual, pool and head all fold
  into per-node maps F_v on the block input;
- ``fold="none"``: the ordinary head, F = H / (T·V·M) on the last block's output.

Depth (levels, one per rescale; additions, rotations and mod-switches are free): per block
1 (gcn with adjacency and BN) + count (kept nonlinearities per node; a fused polynomial costs
one ct×ct level, a removed site none) + 1 (tcn with BN), the residual branch runs in the
slack; then 1 for the readout. A ``fold="tcn"`` last block costs 1 + 1 + 1 (its tcn merged
into the readout), a ``fold="block"`` last block 1 in total.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from he.spec import ActivationSpec, SiteSpec, validate_spec

if TYPE_CHECKING:
    from lightning_modules.lingcn.stgcn import STGCN

FOLDS = ("none", "tcn", "block")
SOURCES = ("block_output", "act1_output", "block_input")


def _np(t: torch.Tensor | None, like: int | None = None) -> np.ndarray:
    """A parameter as float64 numpy (zeros of length ``like`` for a missing bias)."""
    if t is None:
        return np.zeros(like)
    return t.detach().to(torch.float64).cpu().numpy()


def _bn_affine(bn: nn.modules.batchnorm._BatchNorm) -> tuple[np.ndarray, np.ndarray]:
    """Eval-mode BatchNorm as ``scale·x + shift`` per feature."""
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError(f"{bn} tracks no running statistics: the circuit needs eval-mode BN")
    n = bn.num_features
    gamma = _np(bn.weight) if bn.weight is not None else np.ones(n)
    beta = _np(bn.bias) if bn.bias is not None else np.zeros(n)
    scale = gamma / np.sqrt(_np(bn.running_var) + bn.eps)
    return scale, beta - _np(bn.running_mean) * scale


@dataclass(frozen=True)
class BlockCircuit:
    """One ST-GCN block with every BatchNorm folded into its convolutions."""

    gcn_pairs: np.ndarray  # (Q, 2) int (w, v): the adjacency's support, self loops included
    gcn_weight: np.ndarray  # (Q, P, C_out, C_in): pair q maps node v_q's input into node w_q
    gcn_bias: np.ndarray  # (V, P, C_out); P = M for block 0 (data_bn per person), else 1
    site1: SiteSpec
    site2: SiteSpec
    tcn_weight: np.ndarray  # (C_out, C_out, K_t)
    tcn_bias: np.ndarray  # (C_out,)
    stride: int
    padding: int
    residual: str  # "none" | "identity" | "conv"
    res_weight: np.ndarray | None = None  # (C_out, C_in) for "conv"
    res_bias: np.ndarray | None = None  # (C_out,) for "conv"

    @property
    def in_channels(self) -> int:
        """C_in."""
        return self.gcn_weight.shape[3]

    @property
    def out_channels(self) -> int:
        """C_out."""
        return self.gcn_weight.shape[2]

    @property
    def num_nodes(self) -> int:
        """V."""
        return self.gcn_bias.shape[0]

    @property
    def count(self) -> int:
        """Nonlinearities kept per node (equal for all nodes)."""
        return int(self.site1.kept[0]) + int(self.site2.kept[0])

    def pair_scatter(self, side: int) -> np.ndarray:
        """(Q, V) one-hot of each pair's output node (side 0) or input node (side 1)."""
        return np.eye(self.num_nodes)[self.gcn_pairs[:, side]]

    def frames_out(self, frames_in: int) -> int:
        """T after the temporal conv."""
        return (frames_in + 2 * self.padding - self.tcn_weight.shape[2]) // self.stride + 1

    def graph_conv(self, h: np.ndarray) -> np.ndarray:
        """(N, M, C_in, T, V) → (N, M, C_out, T, V)."""
        m = h.shape[1]
        q, _, c, ci = self.gcn_weight.shape
        weight = np.broadcast_to(self.gcn_weight, (q, m, c, ci))
        per_pair = np.einsum("qmci,nmitq->nmctq", weight, h[..., self.gcn_pairs[:, 1]])
        out = np.einsum("nmctq,qw->nmctw", per_pair, self.pair_scatter(0))
        bias = np.broadcast_to(self.gcn_bias, (self.num_nodes, m, c))  # (V, M, C)
        return out + bias.transpose(1, 2, 0)[None, :, :, None, :]

    def temporal_conv(self, h: np.ndarray) -> np.ndarray:
        """(N, M, C, T, V) → (N, M, C, T_out, V), zero padded."""
        pad, s, k = self.padding, self.stride, self.tcn_weight.shape[2]
        last = s * (self.frames_out(h.shape[3]) - 1) + 1
        hp = np.pad(h, ((0, 0), (0, 0), (0, 0), (pad, pad), (0, 0)))
        out = sum(
            np.einsum("ci,nmitv->nmctv", self.tcn_weight[:, :, d], hp[:, :, :, d : d + last : s])
            for d in range(k)
        )
        return out + self.tcn_bias[None, None, :, None, None]

    def residual_branch(self, h: np.ndarray) -> np.ndarray | float:
        """The residual added before act2: (N, M, C_in, T, V) → (N, M, C_out, T_out, V)."""
        if self.residual == "none":
            return 0.0
        if self.residual == "identity":
            return h
        out = np.einsum("ci,nmitv->nmctv", self.res_weight, h[:, :, :, :: self.stride])
        return out + self.res_bias[None, None, :, None, None]

    def forward(self, h: np.ndarray) -> np.ndarray:
        """The whole block: (N, M, C_in, T, V) → (N, M, C_out, T_out, V)."""
        z = self.temporal_conv(self.site1.apply(self.graph_conv(h)))
        return self.site2.apply(z + self.residual_branch(h))


def fold_block(
    block: nn.Module,
    sites: tuple[SiteSpec, SiteSpec],
    data_bn: tuple[np.ndarray, np.ndarray] | None = None,
) -> BlockCircuit:
    """Fold an ``STGCNBlock`` (and, for block 0, data_bn's (M, V, C) scale and shift)."""
    adj = _np(block.adjacency * block.edge_importance)  # (K, V, V) [k, v, w]
    k, c_out, c_in = adj.shape[0], block.bn1.num_features, block.gcn.in_channels
    w_k = _np(block.gcn.weight).reshape(k, c_out, c_in)
    b_k = _np(block.gcn.bias, k * c_out).reshape(k, c_out)
    s1, h1 = _bn_affine(block.bn1)
    w_idx, v_idx = np.nonzero(np.abs(adj).sum(axis=0).T)  # pairs (w, v), sorted by w
    weight = np.einsum("kq,kci->qci", adj[:, v_idx, w_idx], w_k) * s1[None, :, None]
    bias = s1 * np.einsum("kvw,kc->wc", adj, b_k) + h1  # (V, C_out)
    if data_bn is None:
        weight, bias = weight[:, None], bias[:, None]
    else:
        s0, h0 = data_bn  # (M, V, C_in) each
        shift = np.einsum("qci,mqi->qmc", weight, h0[:, v_idx])  # (Q, M, C_out)
        bias = bias[:, None] + np.einsum("qmc,qw->wmc", shift, np.eye(adj.shape[1])[w_idx])
        weight = weight[:, None] * s0[:, v_idx].transpose(1, 0, 2)[:, :, None, :]
    tcn = block.tcn
    if tcn.kernel_size[1] != 1 or tcn.padding[1] != 0:
        raise ValueError(f"the temporal conv must be K×1, got kernel {tcn.kernel_size}")
    s2, h2 = _bn_affine(block.bn2)
    residual: dict = {"residual": "none"}
    if isinstance(block.residual, nn.Identity):
        residual = {"residual": "identity"}
    elif block.residual is not None:
        conv, bn = block.residual[0], block.residual[1]
        if conv.stride[0] != tcn.stride[0]:
            raise ValueError(f"residual stride {conv.stride} ≠ temporal stride {tcn.stride}")
        sr, hr = _bn_affine(bn)
        residual = {
            "residual": "conv",
            "res_weight": _np(conv.weight)[:, :, 0, 0] * sr[:, None],
            "res_bias": sr * _np(conv.bias, c_out) + hr,
        }
    return BlockCircuit(
        gcn_pairs=np.stack([w_idx, v_idx], axis=1),
        gcn_weight=weight,
        gcn_bias=bias,
        site1=sites[0],
        site2=sites[1],
        tcn_weight=_np(tcn.weight)[:, :, :, 0] * s2[:, None, None],
        tcn_bias=s2 * _np(tcn.bias, c_out) + h2,
        stride=int(tcn.stride[0]),
        padding=int(tcn.padding[0]),
        **residual,
    )


@dataclass(frozen=True)
class ReadoutTerm:
    """``logits[n, k] += Σ_{v,m,c,t} maps[v, m, k, c, t]·src[n, m, c, t, v]`` (V', P broadcast)."""

    source: str  # one of SOURCES, tensors of the readout's block
    maps: np.ndarray  # (V' ∈ {1, V}, P ∈ {1, M}, K, C, T_src)


@dataclass(frozen=True)
class Readout:
    """The pooled linear readout that ends the circuit (one level)."""

    name: str  # "head", "block{L}.tcn+head" or "block{L}+head"
    terms: tuple[ReadoutTerm, ...]
    bias: np.ndarray  # (K,)


@dataclass(frozen=True)
class CircuitDepth:
    """Levels per layer in schedule order and in total."""

    layers: list[tuple[str, int]]
    total: int


@dataclass
class StgcnCircuit:
    """The folded ST-GCN: blocks, classifier and how the last block folds into the readout."""

    blocks: list[BlockCircuit]
    head_weight: np.ndarray  # (K, C_last)
    head_bias: np.ndarray  # (K,)
    num_persons: int

    @classmethod
    def from_module(cls, net: STGCN, spec: ActivationSpec) -> StgcnCircuit:
        """Fold an ``STGCN``'s weights and BatchNorms (running statistics) with ``spec``."""
        num_nodes = net.blocks[0].adjacency.shape[-1]
        validate_spec(spec, len(net.blocks), num_nodes)
        c0 = net.blocks[0].gcn.in_channels
        persons = net.data_bn.num_features // (c0 * num_nodes)
        if persons * c0 * num_nodes != net.data_bn.num_features:
            raise ValueError(
                f"data_bn has {net.data_bn.num_features} features, not M·V·C with "
                f"V={num_nodes}, C={c0}"
            )
        data_bn = tuple(a.reshape(persons, num_nodes, c0) for a in _bn_affine(net.data_bn))
        blocks = [
            fold_block(block, sites, data_bn if b == 0 else None)
            for b, (block, sites) in enumerate(zip(net.blocks, spec, strict=True))
        ]
        return cls(blocks, _np(net.head.weight)[:, :, 0, 0], _np(net.head.bias), persons)

    @property
    def num_nodes(self) -> int:
        """V."""
        return self.blocks[0].num_nodes

    @property
    def num_classes(self) -> int:
        """K."""
        return self.head_weight.shape[0]

    @property
    def fold(self) -> str:
        """How the last block folds into the readout (module docstring)."""
        last = self.blocks[-1]
        if last.site2.kept.any():
            return "none"
        return "tcn" if last.count == 1 else "block"

    def frames(self, frames_in: int) -> list[int]:
        """T before each block and after the last: (B + 1,)."""
        out = [frames_in]
        for block in self.blocks:
            out.append(block.frames_out(out[-1]))
        return out

    def readout(self, frames_in: int) -> Readout:
        """The readout's maps for clips of ``frames_in`` frames."""
        last, fold = self.blocks[-1], self.fold
        t_in, t_out = self.frames(frames_in)[-2:]
        heads = self.head_weight / (
            t_out * self.num_nodes * self.num_persons
        )  # (K, C), pool folded
        if fold == "none":
            maps = np.broadcast_to(heads[:, :, None], heads.shape + (t_out,))
            return Readout(
                "head", (ReadoutTerm("block_output", maps[None, None].copy()),), self.head_bias
            )
        pad, s, k_t = last.padding, last.stride, last.tcn_weight.shape[2]
        t = np.arange(t_in)[:, None] + pad - np.arange(k_t)[None, :]  # (T_in, K_t): t_out·s
        taps = ((t % s == 0) & (t >= 0) & (t // s < t_out)).astype(np.float64)
        main = np.einsum("kc,cad,td->kat", heads, last.tcn_weight, taps)  # (K, C_mid, T_in)
        bias = self.head_bias + self.head_weight @ last.tcn_bias
        kept_frames = ((np.arange(t_in) % s == 0) & (np.arange(t_in) // s < t_out)).astype(
            np.float64
        )
        res = None
        if last.residual == "identity":
            res = heads[:, :, None] * kept_frames
        elif last.residual == "conv":
            res = (heads @ last.res_weight)[:, :, None] * kept_frames
            bias = bias + self.head_weight @ last.res_bias
        if fold == "tcn":
            terms = [ReadoutTerm("act1_output", main[None, None])]
            if res is not None:
                terms.append(ReadoutTerm("block_input", res[None, None]))
            return Readout(f"block{len(self.blocks) - 1}.tcn+head", tuple(terms), bias)
        per_pair = np.einsum("kat,qpai->qpkit", main, last.gcn_weight)  # (Q, P, K, C_in, T_in)
        per_node = np.einsum("qpkit,qv->vpkit", per_pair, last.pair_scatter(1))
        if res is not None:
            per_node = per_node + res[None, None]
        persons_folded = self.num_persons // last.gcn_bias.shape[1]
        bias = bias + persons_folded * np.einsum("kat,wpa->k", main, last.gcn_bias)
        return Readout(
            f"block{len(self.blocks) - 1}+head", (ReadoutTerm("block_input", per_node),), bias
        )

    def plain_forward(self, x: np.ndarray | torch.Tensor) -> np.ndarray:
        """Logits of the folded circuit in float64: (N, C, T, V, M) → (N, K)."""
        x = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
        if x.ndim != 5 or x.shape[3] != self.num_nodes or x.shape[4] != self.num_persons:
            raise ValueError(
                f"x must be (N, C, T, {self.num_nodes}, {self.num_persons}), got {x.shape}"
            )
        h = x.astype(np.float64).transpose(0, 4, 1, 2, 3)  # (N, M, C, T, V)
        folded = self.fold != "none"
        for block in self.blocks[: len(self.blocks) - folded]:
            h = block.forward(h)
        sources = {"block_output": h, "block_input": h}
        if self.fold == "tcn":
            sources["act1_output"] = self.blocks[-1].site1.apply(self.blocks[-1].graph_conv(h))
        readout = self.readout(x.shape[2])
        logits = np.broadcast_to(readout.bias, (x.shape[0], self.num_classes)).copy()
        for term in readout.terms:
            src = sources[term.source]  # (N, M, C, T, V)
            maps = np.broadcast_to(
                term.maps, (self.num_nodes, self.num_persons) + term.maps.shape[2:]
            )
            logits += np.einsum("vmkct,nmctv->nk", maps, src)
        return logits

    def depth(self) -> CircuitDepth:
        """Levels per layer and in total; checks every node spends the same levels per block."""
        layers: list[tuple[str, int]] = []
        last = len(self.blocks) - 1
        for b, block in enumerate(self.blocks):
            per_node = 2 + block.site1.kept.astype(int) + block.site2.kept.astype(int)  # (V,)
            if (per_node != per_node[0]).any():
                raise ValueError(
                    f"block {b}: node ciphertexts would spend {sorted(set(per_node.tolist()))} "
                    "levels; LinGCN alignment needs the same kept count at every node"
                )
            if b == last and self.fold == "block":
                layers.append((f"block{b}+head", 1))
                break
            layers.append((f"block{b}.gcn", 1))
            if b == last and self.fold == "tcn":
                layers += [(f"block{b}.act", 1), (f"block{b}.tcn+head", 1)]
                break
            if block.residual != "none":
                layers.append((f"block{b}.residual", 0))
            layers += [(f"block{b}.act", block.count), (f"block{b}.tcn", 1)]
        else:
            layers.append(("head", 1))
        return CircuitDepth(layers, sum(levels for _, levels in layers))

    @property
    def channel_pad(self) -> int:
        """Channel slots per node ciphertext: the widest layer (or class count), power of two."""
        widest = max(self.num_classes, *(max(b.in_channels, b.out_channels) for b in self.blocks))
        return 1 << (widest - 1).bit_length()
