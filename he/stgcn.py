"""Encrypted ST-GCN inference on CKKS (LinGCN's HE side, CryptoGCN's node-wise packing).

Ciphertexts: one per graph node and channel block, slots = channels × frames × (clips·persons)
(he.packing). When the widest layer does not fit one ciphertext at the depth's N, every node is
held as channel blocks of C_blk channels and each linear map runs block by block (plaintexts
then stream through encoding instead of being cached when they would not fit in memory).
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
from dataclasses import replace

import numpy as np
import torch

from he import layers
from he.circuit import BlockCircuit, StgcnCircuit
from he.ckks import (
    Ciphertext,
    CkksBackend,
    CkksParameters,
    HeParameterError,
    OpCounts,
    check_depth,
    select_parameters,
)
from he.fusion import LINEAR_A2, fused_site, site_input_scale
from he.layers import Node, Session
from he.linear import DiagonalProducts, best_baby_steps, channel_steps
from he.packing import SlotLayout, next_pow2


class HeStgcnInference:
    """Encrypted inference of a :class:`StgcnCircuit` with TenSEAL/SEAL CKKS.

    Args:
        circuit: the folded network and activation spec.
        scale_bits: log2 of the scale and of the per-level primes.
        edge_bits: bits of the first and the special prime.
        block_channels: at most this many channels per ciphertext (a power of two); None
            packs as many as the slots hold.
        plaintext_cache_gib: a layer's plaintexts shared by all nodes are encoded once and
            kept when they take at most this much memory, else re-encoded per node.
    Raises:
        HeParameterError: the circuit is deeper than 128-bit-secure parameters allow (at
            construction, before any key or ciphertext exists).
    """

    def __init__(
        self,
        circuit: StgcnCircuit,
        scale_bits: int = 40,
        edge_bits: int = 60,
        block_channels: int | None = None,
        plaintext_cache_gib: float = 4.0,
    ) -> None:
        if block_channels is not None and (
            block_channels < 1 or block_channels & (block_channels - 1)
        ):
            raise ValueError(f"block_channels={block_channels}: must be a power of two ≥ 1")
        self.circuit = circuit
        self.scale_bits, self.edge_bits = scale_bits, edge_bits
        self.block_channels = block_channels
        self.cache_bytes = plaintext_cache_gib * 2**30
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
        self._sessions: dict[int, Session] = {}
        self._records: dict[str, list] = {}

    def plan(self, frames: int) -> tuple[CkksParameters, SlotLayout]:
        """Parameters and layout: every channel in one ciphertext when some secure N holds
        them, else channel blocks at the depth's smallest N."""
        circuit = self.circuit
        c_pad, t_pad, m = circuit.channel_pad, next_pow2(frames), circuit.num_persons
        depth, bits = self.depth.total, (self.scale_bits, self.edge_bits)
        try:
            params = select_parameters(depth, c_pad * t_pad * m, *bits)
            c_blk = c_pad
        except HeParameterError:
            try:
                params = select_parameters(depth, t_pad * m, *bits)
            except HeParameterError as err:
                raise HeParameterError(
                    f"{frames} frames (padded to {t_pad}) × {m} persons need {t_pad * m} slots "
                    f"for a single channel: {err}; crop the clips to fewer frames"
                ) from err
            c_blk = params.slots // (t_pad * m)
        if self.block_channels is not None:
            c_blk = min(c_blk, self.block_channels)
        return params, SlotLayout(params.slots, c_blk, t_pad, m)

    def session(self, frames: int) -> Session:
        """Parameters, layout and keys for clips of ``frames`` frames (key generation once)."""
        if frames in self._sessions:
            return self._sessions[frames]
        circuit = self.circuit
        params, layout = self.plan(frames)
        c_blk, t_pad = layout.channels, layout.frames
        dilations = [1]
        for block in circuit.blocks:
            dilations.append(dilations[-1] * block.stride)
        readout = circuit.readout(frames)
        v, nb = circuit.num_nodes, layout.block_count
        baby_steps, steps = {}, set()
        lane, ch = layout.lanes, layout.channel_step

        fold = circuit.fold
        for b, block in enumerate(circuit.blocks):
            last = b == len(circuit.blocks) - 1
            if last and fold == "block":
                break
            res = block.residual == "conv" and not (last and fold == "tcn")
            ins, outs = v * nb(block.in_channels), v * nb(block.out_channels) * (1 + res)
            baby_steps[f"block{b}.gcn"] = n1 = best_baby_steps(c_blk, ins, outs)
            steps |= channel_steps(n1, c_blk, ch)
            if last and fold == "tcn":
                break
            k_t = block.tcn_weight.shape[2]
            baby_steps[f"block{b}.tcn"] = n1 = best_baby_steps(c_blk, k_t, 1)
            steps |= channel_steps(n1, c_blk, ch)
            steps |= {(d - block.padding) * dilations[b] * lane for d in range(k_t)}
        inputs = sum(term.maps.shape[0] * nb(term.maps.shape[3]) for term in readout.terms)
        baby_steps["readout"] = n1 = best_baby_steps(c_blk, inputs, nb(circuit.num_classes))
        steps |= channel_steps(n1, c_blk, ch) | {lane << i for i in range(t_pad.bit_length() - 1)}
        steps |= set(range(1, circuit.num_persons))
        backend = CkksBackend(params, steps)
        frames_per_block = circuit.frames(frames)
        diag = DiagonalProducts(backend, layout)
        session = Session(
            params,
            layout,
            backend,
            readout,
            frames_per_block,
            dilations,
            baby_steps,
            diag,
            circuit,
            self.cache_bytes,
        )
        self._sessions[frames] = session
        return session

    def run(self, x: np.ndarray | torch.Tensor) -> tuple[np.ndarray, dict]:
        """Encrypt clips (N, C, T, V, M), evaluate, decrypt: logits (N, K) and the report.

        The clips run in batches of ``samples_per_ciphertext``. Report: ``n``,
        ``coeff_mod_bit_sizes``, ``levels`` (the circuit's depth), ``channel_blocks`` and
        ``block_channels`` (ciphertexts per node and channels in each), ``setup_s`` (context
        and key generation, once per clip length), ``latency_s`` (server-side evaluation, the
        sum over ``layers``), ``latency_s_per_sample``, ``cpu_s`` and ``cpu_s_per_sample`` (the
        evaluating thread's CPU time: SEAL runs on one thread, so on a machine shared with
        other jobs it is the latency the circuit would have alone), ``ops`` (server-side counts),
        ``layers`` ([{name, latency_s, levels, ops}] in schedule order), client-side
        ``encrypt_s`` and ``decrypt_s``, and the comparison with ``StgcnCircuit.plain_forward``.
        """
        x = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
        circuit = self.circuit
        if x.ndim != 5 or x.shape[3:] != (circuit.num_nodes, circuit.num_persons):
            raise ValueError(
                f"x must be (N, C, T, {circuit.num_nodes}, {circuit.num_persons}), got {x.shape}"
            )
        s = self.session(x.shape[2])
        be, layout = s.backend, s.layout
        self._records = {name: [0.0, OpCounts(), 0.0] for name, _ in self.depth.layers}
        logits, encrypt_s, decrypt_s = [], 0.0, 0.0
        k = np.arange(circuit.num_classes)
        slots, class_block = layout.logit_slots(circuit.num_classes), k // layout.channels
        for start in range(0, x.shape[0], layout.samples):
            batch = x[start : start + layout.samples].astype(np.float64)
            t0 = time.perf_counter()
            cts = [[be.encrypt(vec) for vec in node] for node in layout.pack(batch)]
            encrypt_s += time.perf_counter() - t0
            outs = self._evaluate(s, cts)
            t0 = time.perf_counter()
            values = np.stack([be.decrypt(out) for out in outs])  # (K blocks, slots)
            logits.append(values[class_block, slots[: len(batch)]])
            decrypt_s += time.perf_counter() - t0
        logits = np.concatenate(logits)
        plain = circuit.plain_forward(x)
        levels = dict(self.depth.layers)
        layers = [
            {
                "name": name,
                "latency_s": rec[0],
                "cpu_s": rec[2],
                "levels": levels[name],
                "ops": rec[1].as_dict(),
            }
            for name, rec in self._records.items()
        ]
        latency = sum(rec[0] for rec in self._records.values())
        cpu = sum(rec[2] for rec in self._records.values())
        report = {
            "n": s.params.n,
            "coeff_mod_bit_sizes": list(s.params.coeff_mod_bit_sizes),
            "levels": self.depth.total,
            "slots": s.params.slots,
            "channel_blocks": layout.block_count(circuit.channel_pad),
            "block_channels": layout.channels,
            "samples": int(x.shape[0]),
            "samples_per_ciphertext": layout.samples,
            "rotation_keys": len(be.steps),
            "setup_s": be.setup_s,
            "encrypt_s": encrypt_s,
            "decrypt_s": decrypt_s,
            "latency_s": latency,
            "latency_s_per_sample": latency / x.shape[0],
            "cpu_s": cpu,
            "cpu_s_per_sample": cpu / x.shape[0],
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
        ops, start, cpu = replace(backend.ops), time.perf_counter(), time.thread_time()
        yield
        record = self._records[name]
        record[0] += time.perf_counter() - start
        record[1] = record[1] + (backend.ops - ops)
        record[2] += time.thread_time() - cpu

    def _readout(
        self, s: Session, sources: dict[str, list[Node]], dilation: int, frames: int
    ) -> list[Ciphertext]:
        with self._layer(s.backend, s.readout.name):
            return layers.pooled_readout(s, sources, dilation, frames)

    def _evaluate(self, s: Session, xs: list[Node]) -> list[Ciphertext]:
        """The encrypted circuit on node ciphertexts at the top level → the logit ciphertexts
        (one per block of C_blk classes)."""
        circuit, be = self.circuit, s.backend
        fold, last = circuit.fold, len(circuit.blocks) - 1
        for b, block in enumerate(circuit.blocks):
            if b == last and fold == "block":
                return self._readout(s, {"block_input": xs}, s.dilations[b], s.frames[b])
            if b == last and fold == "tcn":
                level = be.level(xs[0][0])
                sigma = [
                    site_input_scale(be.scale, be.primes[level - 1], block.site1.coeffs[w], True)
                    for w in range(circuit.num_nodes)
                ]
                with self._layer(be, f"block{b}.gcn"):
                    us, _ = layers.graph_conv(s, b, block, xs, sigma)
                support = layers.support(s, s.frames[b], s.dilations[b], block.out_channels)
                with self._layer(be, f"block{b}.act"):
                    hs = [
                        [
                            fused_site(be, block.site1.coeffs[w], u, be.scale, support[i])
                            for i, u in enumerate(us[w])
                        ]
                        for w in range(circuit.num_nodes)
                    ]
                sources = {"act1_output": hs, "block_input": xs}
                return self._readout(s, sources, s.dilations[b], s.frames[b])
            xs = self._block(s, b, block, xs)
        return self._readout(s, {"block_output": xs}, s.dilations[-1], s.frames[-1])

    def _block(self, s: Session, b: int, block: BlockCircuit, xs: list[Node]) -> list[Node]:
        """One full block: node ciphertexts at level ℓ, scale Δ → level ℓ − 2 − count, scale Δ."""
        be, v = s.backend, self.circuit.num_nodes
        level, delta = be.level(xs[0][0]), be.scale
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
            us, babies = layers.graph_conv(s, b, block, xs, sigma1)
        if block.residual != "none":
            with self._layer(be, f"block{b}.residual"):
                res = layers.residual(s, b, block, xs, babies, sigma2, res_levels)
        del babies
        support = layers.support(s, s.frames[b], s.dilations[b], block.out_channels)
        with self._layer(be, f"block{b}.act"):
            hs = [
                [
                    fused_site(be, block.site1.coeffs[w], u, sigma2[w], support[i]) if k1[w] else u
                    for i, u in enumerate(us[w])
                ]
                for w in range(v)
            ]
        del us
        with self._layer(be, f"block{b}.tcn"):
            zs = layers.temporal_conv(s, b, block, hs, sigma2)
            if block.residual != "none":
                for w in range(v):
                    for z, r in zip(zs[w], res[w], strict=True):
                        be.add_inplace(z, r)
        support = layers.support(s, s.frames[b + 1], s.dilations[b + 1], block.out_channels)
        with self._layer(be, f"block{b}.act"):
            return [
                [
                    fused_site(be, block.site2.coeffs[w], z, delta, support[i]) if k2[w] else z
                    for i, z in enumerate(zs[w])
                ]
                for w in range(v)
            ]
