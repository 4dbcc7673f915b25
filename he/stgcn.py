"""Encrypted ST-GCN inference on CKKS (LinGCN's HE side, CryptoGCN's node-wise packing).

Ciphertexts: one per graph node, slots = channels × frames × (clips·persons) (he.packing).
Schedule of a block at input level ℓ (levels in brackets):

    gcn [1]       u_w = Σ_g rot(Σ_{v∈N(w)} Σ_jb rot(x_v, jb·L) ⊙ rot(D^wv_{g+jb}, −g·L), g·L) + g_w
                  D^wv_j: diagonals of G[w,v] = diag(s1) Σ_k Â_k[v,w] W_k — the adjacency scalar,
                  the 1×1 conv and BN share one plaintext multiply per diagonal (one level for the
                  whole graph conv). Baby steps are rotated once per input node, giant steps once
                  per output node (BSGS).
    residual [0]  identity, or a 1×1 conv reusing the gcn's baby steps, runs in the slack
    act1 [k1_w]   kept node-wise polynomials (fused, below); removed sites do nothing
    tcn [1]       9 taps × channel diagonals on rotations by δ·d·B + jb·L (baby) and g·L (giant);
                  tap masks give the zero padding, output masks the stride (he.packing)
    act2 [k2_w]   as act1, after adding the residual

k1_w + k2_w is the same for every node (LinGCN), so all nodes leave the block at ℓ − 2 − k,
though within it they sit at different levels (their tcn plaintexts are encoded per level).

Fusion (he.fusion): a kept polynomial a2·u² + a1·u + a0 = |a2|·u·(sgn(a2)·u + a1/|a2|) + a0
is one ct×ct multiply; |a2| is applied by relabelling the scale, which the linear producer
prepares by emitting u at σ = √(τ·q·|a2|): the gcn's per-pair plaintexts give every node its
own σ, the tcn (plaintexts shared by nodes, encoded at q) passes its inputs' scales through,
and the residual branch reaches the node's scale with a scalar multiply in its slack.

Readout [1]: ``he.circuit.Readout`` (ordinary head or the LinGCN tail fold): node sums (or
per-node maps), one diagonal product, then rotations summing frames and persons into slot
(k, τ=0, sample·M).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

import numpy as np
import torch

from he.circuit import BlockCircuit, Readout, StgcnCircuit
from he.ckks import (
    Ciphertext,
    CkksBackend,
    CkksParameters,
    OpCounts,
    Plaintext,
    check_depth,
    select_parameters,
)
from he.fusion import LINEAR_A2, fused_site, site_input_scale
from he.linear import (
    Babies,
    DiagonalProducts,
    Giants,
    best_baby_steps,
    channel_steps,
    diagonal_support,
)
from he.packing import SlotLayout, next_pow2


@dataclass
class _Session:
    """Everything fixed by the clip length: parameters, layout, keys, readout and BSGS splits."""

    params: CkksParameters
    layout: SlotLayout
    backend: CkksBackend
    readout: Readout
    frames: list[int]  # T before each block and after the last
    dilations: list[int]  # d before each block and after the last
    baby_steps: dict[str, int]  # layer name → n1
    diag: DiagonalProducts


class HeStgcnInference:
    """Encrypted inference of a :class:`StgcnCircuit` with TenSEAL/SEAL CKKS.

    Args:
        circuit: the folded network and activation spec.
        scale_bits: log2 of the scale and of the per-level primes.
        edge_bits: bits of the first and the special prime.
    Raises:
        HeParameterError: the circuit is deeper than 128-bit-secure parameters allow (at
            construction, before any key or ciphertext exists).
    """

    def __init__(self, circuit: StgcnCircuit, scale_bits: int = 40, edge_bits: int = 60) -> None:
        self.circuit = circuit
        self.scale_bits, self.edge_bits = scale_bits, edge_bits
        self.depth = circuit.depth()
        check_depth(self.depth.total, scale_bits, edge_bits)
        for b, block in enumerate(circuit.blocks):
            for s, site in enumerate((block.site1, block.site2)):
                a2, a1 = np.abs(site.coeffs[:, 0]), site.coeffs[:, 1]
                const = site.kept & (a2 < LINEAR_A2) & (a1 == 0)
                if const.any():
                    raise ValueError(
                        f"block {b} site {s + 1}: nodes {np.flatnonzero(const).tolist()} keep "
                        "a constant polynomial (a2 ≈ 0, a1 = 0), which has no encrypted "
                        "input; give them a2 or a1 ≠ 0"
                    )
        self._sessions: dict[int, _Session] = {}
        self._records: dict[str, list] = {}

    def session(self, frames: int) -> _Session:
        """Parameters, layout and keys for clips of ``frames`` frames (key generation once)."""
        if frames in self._sessions:
            return self._sessions[frames]
        circuit = self.circuit
        c_pad, t_pad = circuit.channel_pad, next_pow2(frames)
        params = select_parameters(
            self.depth.total, c_pad * t_pad * circuit.num_persons, self.scale_bits, self.edge_bits
        )
        layout = SlotLayout(params.slots, c_pad, t_pad, circuit.num_persons)
        dilations = [1]
        for block in circuit.blocks:
            dilations.append(dilations[-1] * block.stride)
        readout = circuit.readout(frames)
        v = circuit.num_nodes
        baby_steps, steps = {}, set()
        lane, ch = layout.lanes, layout.channel_step

        fold = circuit.fold
        for b, block in enumerate(circuit.blocks):
            last = b == len(circuit.blocks) - 1
            if last and fold == "block":
                break
            res = block.residual == "conv" and not (last and fold == "tcn")
            baby_steps[f"block{b}.gcn"] = n1 = best_baby_steps(c_pad, v, v * (1 + res))
            steps |= channel_steps(n1, c_pad, ch)
            if last and fold == "tcn":
                break
            k_t = block.tcn_weight.shape[2]
            baby_steps[f"block{b}.tcn"] = n1 = best_baby_steps(c_pad, k_t, 1)
            steps |= channel_steps(n1, c_pad, ch)
            steps |= {(d - block.padding) * dilations[b] * lane for d in range(k_t)}
        inputs = sum(term.maps.shape[0] for term in readout.terms)
        baby_steps["readout"] = n1 = best_baby_steps(c_pad, inputs, 1)
        steps |= channel_steps(n1, c_pad, ch) | {lane << i for i in range(t_pad.bit_length() - 1)}
        steps |= set(range(1, circuit.num_persons))
        backend = CkksBackend(params, steps)
        frames_per_block = circuit.frames(frames)
        diag = DiagonalProducts(backend, layout)
        session = _Session(
            params, layout, backend, readout, frames_per_block, dilations, baby_steps, diag
        )
        self._sessions[frames] = session
        return session

    def run(self, x: np.ndarray | torch.Tensor) -> tuple[np.ndarray, dict]:
        """Encrypt clips (N, C, T, V, M), evaluate, decrypt: logits (N, K) and the report.

        The clips run in batches of ``samples_per_ciphertext``. Report: ``n``,
        ``coeff_mod_bit_sizes``, ``levels`` (the circuit's depth), ``setup_s`` (context and key
        generation, once per clip length), ``latency_s`` (server-side evaluation, the sum over
        ``layers``), ``latency_s_per_sample``, ``ops`` (server-side counts), ``layers``
        ([{name, latency_s, levels, ops}] in schedule order), client-side ``encrypt_s`` and
        ``decrypt_s``, and the comparison with ``StgcnCircuit.plain_forward``.
        """
        x = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
        circuit = self.circuit
        if x.ndim != 5 or x.shape[3:] != (circuit.num_nodes, circuit.num_persons):
            raise ValueError(
                f"x must be (N, C, T, {circuit.num_nodes}, {circuit.num_persons}), got {x.shape}"
            )
        s = self.session(x.shape[2])
        be, layout = s.backend, s.layout
        self._records = {name: [0.0, OpCounts()] for name, _ in self.depth.layers}
        logits, encrypt_s, decrypt_s = [], 0.0, 0.0
        slots = layout.logit_slots(circuit.num_classes)
        for start in range(0, x.shape[0], layout.samples):
            batch = x[start : start + layout.samples].astype(np.float64)
            t0 = time.perf_counter()
            cts = [be.encrypt(vec) for vec in layout.pack(batch)]
            encrypt_s += time.perf_counter() - t0
            out = self._evaluate(s, cts)
            t0 = time.perf_counter()
            logits.append(be.decrypt(out)[slots[: len(batch)]])
            decrypt_s += time.perf_counter() - t0
        logits = np.concatenate(logits)
        plain = circuit.plain_forward(x)
        levels = dict(self.depth.layers)
        layers = [
            {"name": name, "latency_s": rec[0], "levels": levels[name], "ops": rec[1].as_dict()}
            for name, rec in self._records.items()
        ]
        latency = sum(rec[0] for rec in self._records.values())
        report = {
            "n": s.params.n,
            "coeff_mod_bit_sizes": list(s.params.coeff_mod_bit_sizes),
            "levels": self.depth.total,
            "slots": s.params.slots,
            "samples": int(x.shape[0]),
            "samples_per_ciphertext": layout.samples,
            "rotation_keys": len(be.steps),
            "setup_s": be.setup_s,
            "encrypt_s": encrypt_s,
            "decrypt_s": decrypt_s,
            "latency_s": latency,
            "latency_s_per_sample": latency / x.shape[0],
            "ops": sum((rec[1] for rec in self._records.values()), OpCounts()).as_dict(),
            "layers": layers,
            "max_abs_diff_vs_plain": float(np.abs(logits - plain).max()),
            "max_abs_logit": float(np.abs(plain).max()),
            "argmax_agree": bool((logits.argmax(1) == plain.argmax(1)).all()),
        }
        return logits, report

    @contextmanager
    def _layer(self, backend: CkksBackend, name: str) -> Iterator[None]:
        """Accumulate wall time and op counts of the enclosed work under ``name``."""
        ops, start = replace(backend.ops), time.perf_counter()
        yield
        record = self._records[name]
        record[0] += time.perf_counter() - start
        record[1] = record[1] + (backend.ops - ops)

    def _evaluate(self, s: _Session, xs: list[Ciphertext]) -> Ciphertext:
        """The encrypted circuit on node ciphertexts at the top level → the logits ciphertext."""
        circuit, be = self.circuit, s.backend
        fold, last = circuit.fold, len(circuit.blocks) - 1
        for b, block in enumerate(circuit.blocks):
            if b == last and fold == "block":
                return self._readout(s, {"block_input": xs}, s.dilations[b], s.frames[b])
            if b == last and fold == "tcn":
                level = be.level(xs[0])
                sigma = [
                    site_input_scale(be.scale, be.primes[level - 1], block.site1.coeffs[w], True)
                    for w in range(circuit.num_nodes)
                ]
                with self._layer(be, f"block{b}.gcn"):
                    us, _ = self._graph_conv(s, b, block, xs, sigma)
                support = self._support(s, s.frames[b], s.dilations[b], block.out_channels)
                with self._layer(be, f"block{b}.act"):
                    hs = [
                        fused_site(be, block.site1.coeffs[w], us[w], be.scale, support)
                        for w in range(circuit.num_nodes)
                    ]
                sources = {"act1_output": hs, "block_input": xs}
                return self._readout(s, sources, s.dilations[b], s.frames[b])
            xs = self._block(s, b, block, xs)
        return self._readout(s, {"block_output": xs}, s.dilations[-1], s.frames[-1])

    def _block(
        self, s: _Session, b: int, block: BlockCircuit, xs: list[Ciphertext]
    ) -> list[Ciphertext]:
        """One full block: node ciphertexts at level ℓ, scale Δ → level ℓ − 2 − count, scale Δ."""
        be, v = s.backend, self.circuit.num_nodes
        level, delta = be.level(xs[0]), be.scale
        k1, k2 = block.site1.kept.astype(int), block.site2.kept.astype(int)
        tcn_level = [level - 1 - k1[w] for w in range(v)]  # where each node's tcn multiplies
        sigma2 = [
            site_input_scale(delta, be.primes[tcn_level[w] - 1], block.site2.coeffs[w], k2[w])
            for w in range(v)
        ]
        sigma1 = [
            site_input_scale(sigma2[w], be.primes[level - 1], block.site1.coeffs[w], k1[w])
            for w in range(v)
        ]
        res_levels = [tcn_level[w] - 1 for w in range(v)]
        with self._layer(be, f"block{b}.gcn"):
            us, babies = self._graph_conv(s, b, block, xs, sigma1)
        if block.residual != "none":
            with self._layer(be, f"block{b}.residual"):
                res = self._residual(s, b, block, xs, babies, sigma2, res_levels)
        del babies
        support = self._support(s, s.frames[b], s.dilations[b], block.out_channels)
        with self._layer(be, f"block{b}.act"):
            hs = [
                fused_site(be, block.site1.coeffs[w], us[w], sigma2[w], support) if k1[w] else us[w]
                for w in range(v)
            ]
        del us
        with self._layer(be, f"block{b}.tcn"):
            zs = self._temporal_conv(s, b, block, hs, sigma2)
            if block.residual != "none":
                for w in range(v):
                    be.add_inplace(zs[w], res[w])
        support = self._support(s, s.frames[b + 1], s.dilations[b + 1], block.out_channels)
        with self._layer(be, f"block{b}.act"):
            return [
                fused_site(be, block.site2.coeffs[w], zs[w], delta, support) if k2[w] else zs[w]
                for w in range(v)
            ]

    def _graph_conv(
        self,
        s: _Session,
        b: int,
        block: BlockCircuit,
        xs: list[Ciphertext],
        sigma: list[float],
    ) -> tuple[list[Ciphertext], dict[int, Babies]]:
        """Adjacency + 1×1 conv + BN in one level: u_w at scale sigma[w], and the baby steps."""
        be, layout = s.backend, s.layout
        level, n1 = be.level(xs[0]), s.baby_steps[f"block{b}.gcn"]
        mask = layout.frame_mask(s.frames[b], s.dilations[b])
        keys = {
            (j % n1, 0)
            for j in diagonal_support(block.out_channels, block.in_channels, layout.channels)
        }
        babies = {v: s.diag.babies(x, keys) for v, x in enumerate(xs)}
        sources: dict[int, list[tuple[int, int]]] = {}
        for q, (w, v) in enumerate(block.gcn_pairs):
            sources.setdefault(int(w), []).append((q, int(v)))
        us = []
        for w in range(len(xs)):
            pt_scale = sigma[w] * be.primes[level] / be.scale
            terms = []
            for q, v in sources[w]:
                diags = {(j, 0): d for j, d in layout.diagonals(block.gcn_weight[q], mask).items()}
                terms.append((babies[v], s.diag.encode(diags, n1, level, pt_scale)))
            u = s.diag.apply(terms)
            be.rescale(u, sigma[w])
            bias = layout.channel_vector(block.gcn_bias[w], mask)
            if bias.any():
                be.add_plain_inplace(u, be.encode(bias, level - 1, sigma[w]))
            us.append(u)
        return us, babies

    def _residual(
        self,
        s: _Session,
        b: int,
        block: BlockCircuit,
        xs: list[Ciphertext],
        babies: dict[int, Babies],
        scales: list[float],
        levels: list[int],
    ) -> list[Ciphertext]:
        """The residual branch per node at the node's tcn-output scale and level."""
        be, layout = s.backend, s.layout
        level, delta = be.level(xs[0]), be.scale
        out = []
        if block.residual == "conv":
            mask = layout.frame_mask(s.frames[b + 1], s.dilations[b + 1])
            n1 = s.baby_steps[f"block{b}.gcn"]
            diags = {
                (j, 0): vec for j, vec in layout.diagonals(block.res_weight[None], mask).items()
            }
            giants = s.diag.encode(diags, n1, level, be.primes[level])
            bias = be.encode(layout.channel_vector(block.res_bias[None], mask), level - 1, delta)
        for w, x in enumerate(xs):
            if block.residual == "conv":
                x = s.diag.apply([(babies[w], giants)])
                be.rescale(x, delta)
                be.add_plain_inplace(x, bias)
            if scales[w] != delta:
                q = be.primes[be.level(x)]
                x = be.multiply_plain(x, be.encode(1.0, be.level(x), scales[w] * q / delta))
                be.rescale(x, scales[w])
            out.append(be.mod_switch(x, levels[w]))
        return out

    def _temporal_conv(
        self, s: _Session, b: int, block: BlockCircuit, hs: list[Ciphertext], sigma: list[float]
    ) -> list[Ciphertext]:
        """9×1 conv + BN per node at the node's own level; output scale = input scale."""
        be, layout = s.backend, s.layout
        n1, d_in = s.baby_steps[f"block{b}.tcn"], s.dilations[b]
        t_in, t_out = s.frames[b], s.frames[b + 1]
        out_mask = layout.frame_mask(t_out, s.dilations[b + 1])
        tau = np.arange(layout.frames)
        diags = {}
        for d in range(block.tcn_weight.shape[2]):
            delta = d - block.padding
            tap_ok = (tau // d_in + delta >= 0) & (tau // d_in + delta < t_in)  # (T_pad,)
            shift = delta * layout.frame_step(d_in)
            for j, vec in layout.diagonals(
                block.tcn_weight[None, :, :, d], out_mask & tap_ok[:, None]
            ).items():
                diags[(j, shift)] = vec
        keys = {(j % n1, shift) for j, shift in diags}
        giants: dict[int, Giants] = {}
        bias = layout.channel_vector(block.tcn_bias[None], out_mask)
        biases: dict[tuple[int, float], Plaintext] = {}
        zs = []
        for w, h in enumerate(hs):
            level = be.level(h)
            if level not in giants:
                giants[level] = s.diag.encode(diags, n1, level, be.primes[level])
            z = s.diag.apply([(s.diag.babies(h, keys), giants[level])])
            be.rescale(z, sigma[w])
            if (level, sigma[w]) not in biases:
                biases[(level, sigma[w])] = be.encode(bias, level - 1, sigma[w])
            be.add_plain_inplace(z, biases[(level, sigma[w])])
            zs.append(z)
        return zs

    @staticmethod
    def _support(s: _Session, frames: int, dilation: int, channels: int) -> np.ndarray:
        """(slots,) 1 on the valid slots of a tensor with ``channels`` channels, else 0."""
        return s.layout.channel_vector(
            np.ones((1, channels)), s.layout.frame_mask(frames, dilation)
        )

    def _readout(
        self, s: _Session, sources: dict[str, list[Ciphertext]], dilation: int, frames: int
    ) -> Ciphertext:
        """Pooled linear readout (one level), summed into the logit slots, plus the bias."""
        be, layout, readout = s.backend, s.layout, s.readout
        n1 = s.baby_steps["readout"]
        mask = layout.frame_mask(frames, dilation)
        with self._layer(be, readout.name):
            level = min(be.level(sources[term.source][0]) for term in readout.terms)
            terms = []
            for term in readout.terms:
                cts = sources[term.source]
                if term.maps.shape[0] == 1:
                    total = be.add(cts[0], cts[1]) if len(cts) > 1 else cts[0]
                    for ct in cts[2:]:
                        be.add_inplace(total, ct)
                    cts = [total]
                for x, maps in zip(cts, term.maps, strict=True):
                    x = be.mod_switch(x, level)
                    weight = layout.physical_frames(maps, dilation)  # (P, K, C, T_pad)
                    diags = {(j, 0): vec for j, vec in layout.diagonals(weight, mask).items()}
                    giants = s.diag.encode(diags, n1, level, be.primes[level])
                    terms.append((s.diag.babies(x, {(jb, 0) for _, jb, _ in giants}), giants))
            y = s.diag.apply(terms)
            be.rescale(y, be.scale)
            for i in range(layout.frames.bit_length() - 1):
                be.add_inplace(y, be.rotate(y, layout.lanes << i))
            total = y
            for m in range(1, self.circuit.num_persons):
                total = be.add(total, be.rotate(y, m))
            bias = np.zeros(layout.slots)
            bias[layout.logit_slots(self.circuit.num_classes)] = readout.bias
            be.add_plain_inplace(total, be.encode(bias, level - 1, be.scale))
        return total
