"""The layers of encrypted ST-GCN inference (he.stgcn) on node ciphertexts in channel blocks.

Each function takes the :class:`Session` (parameters, layout, keys, BSGS splits) and the
nodes, one list of channel-block ciphertexts per graph node; the schedule and the scale
planning that call them are in :mod:`he.stgcn`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from he.circuit import BlockCircuit, Readout, StgcnCircuit
from he.ckks import Ciphertext, CkksBackend, CkksParameters, Plaintext
from he.linear import Babies, DiagonalProducts, Giants, block_support
from he.packing import SlotLayout

Node = list[Ciphertext]  # one graph node's ciphertexts, one per channel block


@dataclass
class Session:
    """Everything fixed by the clip length: parameters, layout, keys, readout and BSGS splits."""

    params: CkksParameters
    layout: SlotLayout
    backend: CkksBackend
    readout: Readout
    frames: list[int]  # T before each block and after the last
    dilations: list[int]  # d before each block and after the last
    baby_steps: dict[str, int]  # layer name → n1
    diag: DiagonalProducts
    circuit: StgcnCircuit
    cache_bytes: float  # plaintexts shared by all nodes are cached up to this size


def cacheable(s: Session, count: int, level: int) -> bool:
    """Whether ``count`` plaintexts at ``level`` fit the plaintext cache budget."""
    return count * s.params.n * 8 * (level + 1) <= s.cache_bytes


def graph_conv(
    s: Session, b: int, block: BlockCircuit, xs: list[Node], sigma: list[float]
) -> tuple[list[Node], dict[tuple[int, int], Babies]]:
    """Adjacency + 1×1 conv + BN in one level: u_w at scale sigma[w], and the baby steps
    (keyed by input node and channel block)."""
    be, layout = s.backend, s.layout
    level, n1 = be.level(xs[0][0]), s.baby_steps[f"block{b}.gcn"]
    mask = layout.frame_mask(s.frames[b], s.dilations[b])
    support = block_support(block.out_channels, block.in_channels, layout.channels)
    keys = {(j % n1, 0) for j in support}
    babies = {
        (v, i): s.diag.babies(x, keys) for v, node in enumerate(xs) for i, x in enumerate(node)
    }
    sources: dict[int, list[tuple[int, int]]] = {}
    for q, (w, v) in enumerate(block.gcn_pairs):
        sources.setdefault(int(w), []).append((q, int(v)))
    us = []
    for w in range(len(xs)):
        pt_scale = sigma[w] * be.primes[level] / be.scale
        biases = layout.block_vectors(block.gcn_bias[w], mask)
        node = []
        for bo in range(layout.block_count(block.out_channels)):
            acc: dict[int, Ciphertext] = {}
            for q, v in sources[w]:
                for bi in range(len(xs[v])):
                    diags = layout.block_diagonals(block.gcn_weight[q], mask, bo, bi)
                    diags = {(j, 0): d for j, d in diags.items()}
                    s.diag.accumulate(acc, babies[(v, bi)], diags, n1, level, pt_scale)
            u = s.diag.finish(acc)
            be.rescale(u, sigma[w])
            if biases[bo].any():
                be.add_plain_inplace(u, be.encode(biases[bo], level - 1, sigma[w]))
            node.append(u)
        us.append(node)
    return us, babies


def residual(
    s: Session,
    b: int,
    block: BlockCircuit,
    xs: list[Node],
    babies: dict[tuple[int, int], Babies],
    scales: list[float],
    levels: list[int],
) -> list[Node]:
    """The residual branch per node at the node's tcn-output scale and level."""
    be, layout = s.backend, s.layout
    level, delta = be.level(xs[0][0]), be.scale
    out = []
    if block.residual == "conv":
        mask = layout.frame_mask(s.frames[b + 1], s.dilations[b + 1])
        n1 = s.baby_steps[f"block{b}.gcn"]
        nbo, nbi = layout.block_count(block.out_channels), len(xs[0])
        diags = {
            (bo, bi): {
                (j, 0): vec
                for j, vec in layout.block_diagonals(block.res_weight[None], mask, bo, bi).items()
            }
            for bo in range(nbo)
            for bi in range(nbi)
        }
        count = sum(len(d) for d in diags.values())
        giants = (
            {key: s.diag.encode(d, n1, level, be.primes[level]) for key, d in diags.items()}
            if cacheable(s, count, level)
            else None
        )
        biases = [
            be.encode(vec, level - 1, delta)
            for vec in layout.block_vectors(block.res_bias[None], mask)
        ]
    for w, node in enumerate(xs):
        if block.residual == "conv":
            node = []
            for bo in range(nbo):
                acc: dict[int, Ciphertext] = {}
                for bi in range(nbi):
                    if giants is None:
                        s.diag.accumulate(
                            acc, babies[(w, bi)], diags[(bo, bi)], n1, level, be.primes[level]
                        )
                    else:
                        s.diag.add_encoded(acc, babies[(w, bi)], giants[(bo, bi)])
                x = s.diag.finish(acc)
                be.rescale(x, delta)
                be.add_plain_inplace(x, biases[bo])
                node.append(x)
        adjusted = []
        for x in node:
            if scales[w] != delta:
                q = be.primes[be.level(x)]
                x = be.multiply_plain(x, be.encode(1.0, be.level(x), scales[w] * q / delta))
                be.rescale(x, scales[w])
            adjusted.append(be.mod_switch(x, levels[w]))
        out.append(adjusted)
    return out


def temporal_conv(
    s: Session, b: int, block: BlockCircuit, hs: list[Node], sigma: list[float]
) -> list[Node]:
    """9×1 conv + BN per node at the node's own level; output scale = input scale."""
    be, layout = s.backend, s.layout
    n1, d_in = s.baby_steps[f"block{b}.tcn"], s.dilations[b]
    t_in, t_out = s.frames[b], s.frames[b + 1]
    out_mask = layout.frame_mask(t_out, s.dilations[b + 1])
    tau = np.arange(layout.frames)
    taps = []  # (tap, slot shift, output mask) of the taps that reach a valid frame
    for d in range(block.tcn_weight.shape[2]):
        delta = d - block.padding
        tap_ok = (tau // d_in + delta >= 0) & (tau // d_in + delta < t_in)  # (T_pad,)
        if (out_mask & tap_ok[:, None]).any():
            taps.append((d, delta * layout.frame_step(d_in), out_mask & tap_ok[:, None]))
    channels = block.out_channels
    nb = layout.block_count(channels)
    support = block_support(channels, channels, layout.channels)
    keys = {(j % n1, shift) for j in support for _, shift, _ in taps}

    def diagonals(bo: int, bi: int) -> dict[tuple[int, int], np.ndarray]:
        out = {}
        for d, shift, mask in taps:
            weight = block.tcn_weight[None, :, :, d]
            for j, vec in layout.block_diagonals(weight, mask, bo, bi).items():
                out[(j, shift)] = vec
        return out

    levels = {be.level(node[0]) for node in hs}  # nodes differ by their kept act1 sites
    count = nb * nb * len(support) * len(taps) * len(levels)  # one encoding per level
    cache = cacheable(s, count, max(levels))
    plain = {(bo, bi): diagonals(bo, bi) for bo in range(nb) for bi in range(nb)} if cache else {}
    giants: dict[int, dict[tuple[int, int], Giants]] = {}
    bias = layout.block_vectors(block.tcn_bias[None], out_mask)
    biases: dict[tuple[int, int, float], Plaintext] = {}
    zs = []
    for w, node in enumerate(hs):
        level = be.level(node[0])
        if cache and level not in giants:
            giants[level] = {
                key: s.diag.encode(d, n1, level, be.primes[level]) for key, d in plain.items()
            }
        babies = [s.diag.babies(h, keys) for h in node]
        out = []
        for bo in range(nb):
            acc: dict[int, Ciphertext] = {}
            for bi in range(nb):
                if cache:
                    s.diag.add_encoded(acc, babies[bi], giants[level][(bo, bi)])
                else:
                    diags = diagonals(bo, bi)
                    s.diag.accumulate(acc, babies[bi], diags, n1, level, be.primes[level])
            z = s.diag.finish(acc)
            be.rescale(z, sigma[w])
            key = (bo, level, sigma[w])
            if key not in biases:
                biases[key] = be.encode(bias[bo], level - 1, sigma[w])
            be.add_plain_inplace(z, biases[key])
            out.append(z)
        zs.append(out)
    return zs


def support(s: Session, frames: int, dilation: int, channels: int) -> list[np.ndarray]:
    """Per channel block, (slots,) 1 on the valid slots of a ``channels`` tensor, else 0."""
    return s.layout.block_vectors(np.ones((1, channels)), s.layout.frame_mask(frames, dilation))


def pooled_readout(
    s: Session, sources: dict[str, list[Node]], dilation: int, frames: int
) -> list[Ciphertext]:
    """Pooled linear readout (one level), summed into the logit slots, plus the bias: one
    ciphertext per block of C_blk classes."""
    be, layout, readout = s.backend, s.layout, s.readout
    n1 = s.baby_steps["readout"]
    mask = layout.frame_mask(frames, dilation)
    num_classes = s.circuit.num_classes
    class_blocks = layout.block_count(num_classes)
    level = min(be.level(sources[term.source][0][0]) for term in readout.terms)
    accs: list[dict[int, Ciphertext]] = [{} for _ in range(class_blocks)]
    for term in readout.terms:
        nodes = sources[term.source]
        if term.maps.shape[0] == 1:
            total = list(nodes[0])
            if len(nodes) > 1:
                total = [be.add(a, b) for a, b in zip(nodes[0], nodes[1], strict=True)]
            for node in nodes[2:]:
                for acc_ct, ct in zip(total, node, strict=True):
                    be.add_inplace(acc_ct, ct)
            nodes = [total]
        for node, maps in zip(nodes, term.maps, strict=True):
            weight = layout.physical_frames(maps, dilation)  # (P, K, C, T_pad)
            for bi, x in enumerate(node):
                x = be.mod_switch(x, level)
                per_block = [
                    {(j, 0): vec for j, vec in layout.block_diagonals(weight, mask, bo, bi).items()}
                    for bo in range(class_blocks)
                ]
                keys = {(j % n1, 0) for diags in per_block for j, _ in diags}
                babies = s.diag.babies(x, keys)
                for acc, diags in zip(accs, per_block, strict=True):
                    s.diag.accumulate(acc, babies, diags, n1, level, be.primes[level])
    outs = []
    slots = layout.logit_slots(num_classes)
    for bo, acc in enumerate(accs):
        y = s.diag.finish(acc)
        be.rescale(y, be.scale)
        for i in range(layout.frames.bit_length() - 1):
            be.add_inplace(y, be.rotate(y, layout.lanes << i))
        total = y
        for m in range(1, s.circuit.num_persons):
            total = be.add(total, be.rotate(y, m))
        classes = np.arange(bo * layout.channels, min(num_classes, (bo + 1) * layout.channels))
        bias = np.zeros(layout.slots)
        bias[slots[:, classes]] = readout.bias[classes]
        be.add_plain_inplace(total, be.encode(bias, level - 1, be.scale))
        outs.append(total)
    return outs
