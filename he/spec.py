"""Per-node activation specs of the encrypted ST-GCN (LinGCN structural linearization).

Each block has two activation sites (``act1`` after graph conv + BN, ``act2`` after the
residual sum). At a site, node v either applies its polynomial

    y = a2·x² + a1·x + a0          (kept[v] = True)

or passes x through (kept[v] = False, y = x). LinGCN keeps the same NUMBER of
nonlinearities (0, 1 or 2) for every node of a block but lets each node choose the site;
with one ciphertext per node every ciphertext then spends the same number of levels per
block, so they stay level-aligned when the adjacency mixes nodes (LinGCN, arXiv:2309.14331).
The CryptoGCN-style baseline keeps every site as x² (``baseline_spec``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class SiteSpec:
    """One activation site of one block: per-node polynomial coefficients and kept mask."""

    coeffs: np.ndarray  # (V, 3) float64 per node (a2, a1, a0)
    kept: np.ndarray  # (V,) bool: True = polynomial, False = identity

    def __post_init__(self) -> None:
        coeffs = np.asarray(self.coeffs, dtype=np.float64)
        kept = np.asarray(self.kept, dtype=bool)
        if coeffs.ndim != 2 or coeffs.shape[1] != 3:
            raise ValueError(f"coeffs must be (V, 3) = (a2, a1, a0) per node, got {coeffs.shape}")
        if kept.shape != (coeffs.shape[0],):
            raise ValueError(
                f"kept must be ({coeffs.shape[0]},) like coeffs' nodes, got {kept.shape}"
            )
        if not np.isfinite(coeffs).all():
            raise ValueError("coeffs contain NaN or inf")
        object.__setattr__(self, "coeffs", coeffs)
        object.__setattr__(self, "kept", kept)

    @classmethod
    def identity(cls, num_nodes: int) -> SiteSpec:
        """Every node linearized away (y = x)."""
        return cls(np.tile([0.0, 1.0, 0.0], (num_nodes, 1)), np.zeros(num_nodes, dtype=bool))

    @classmethod
    def square(cls, num_nodes: int) -> SiteSpec:
        """CryptoGCN's activation at every node (y = x²)."""
        return cls(np.tile([1.0, 0.0, 0.0], (num_nodes, 1)), np.ones(num_nodes, dtype=bool))

    @classmethod
    def poly(cls, coeffs: np.ndarray, kept: np.ndarray | None = None) -> SiteSpec:
        """Node-wise polynomials ``coeffs`` (V, 3); ``kept`` defaults to every node."""
        coeffs = np.asarray(coeffs, dtype=np.float64)
        return cls(coeffs, np.ones(coeffs.shape[0], dtype=bool) if kept is None else kept)

    @property
    def num_nodes(self) -> int:
        """V."""
        return self.coeffs.shape[0]

    def apply(self, x: np.ndarray) -> np.ndarray:
        """The site on a float64 array whose LAST axis is the node axis: (..., V) → (..., V)."""
        a2, a1, a0 = self.coeffs.T  # (V,) each
        return np.where(self.kept, (a2 * x + a1) * x + a0, x)


ActivationSpec = list[tuple[SiteSpec, SiteSpec]]


def validate_spec(spec: ActivationSpec, num_blocks: int, num_nodes: int) -> list[int]:
    """Check shapes and LinGCN's equal-count property; returns the kept count per block."""
    if len(spec) != num_blocks:
        raise ValueError(
            f"the spec has {len(spec)} (site1, site2) pairs, the net {num_blocks} blocks"
        )
    counts = []
    for b, sites in enumerate(spec):
        if len(sites) != 2 or not all(isinstance(s, SiteSpec) for s in sites):
            raise ValueError(f"block {b}: expected a (SiteSpec, SiteSpec) pair, got {sites!r}")
        for s, site in enumerate(sites):
            if site.num_nodes != num_nodes:
                raise ValueError(
                    f"block {b} site {s + 1}: {site.num_nodes} nodes, the graph has {num_nodes}"
                )
        per_node = sites[0].kept.astype(int) + sites[1].kept.astype(int)  # (V,)
        if (per_node != per_node[0]).any():
            found = {int(c): np.flatnonzero(per_node == c).tolist() for c in np.unique(per_node)}
            raise ValueError(
                f"block {b}: nodes keep different numbers of nonlinearities {found} "
                "(count: nodes); LinGCN needs the same count (0, 1 or 2) for every node of a "
                "block so that node ciphertexts stay level-aligned: keep or drop sites per node "
                "until every node has the same count"
            )
        counts.append(int(per_node[0]))
    return counts


def baseline_spec(num_blocks: int, num_nodes: int) -> ActivationSpec:
    """CryptoGCN-style: x² at every site of every node (no linearization)."""
    return [(SiteSpec.square(num_nodes), SiteSpec.square(num_nodes)) for _ in range(num_blocks)]


def lingcn_spec(
    counts: list[int],
    num_nodes: int,
    seed: int = 0,
    sites: list[int | None] | None = None,
) -> ActivationSpec:
    """A LinGCN-like spec: ``counts[b]`` kept sites per node of block b, random coefficients.

    Coefficients follow LinGCN's parametrisation y = x·(s·w2·x + w1) + b with s = 0.01:
    a2 = 0.01·w2, w2 ~ U(−2, 2) (the clamp range), a1 = w1 ~ U(0.5, 1.5), a0 ~ U(−0.05, 0.05).

    Args:
        counts: per block 0, 1 or 2.
        sites: per block, for count 1: 0 or 1 puts every node's nonlinearity at that site;
            None (default) picks a random site per node.
    """
    rng = np.random.default_rng(seed)
    sites = sites or [None] * len(counts)
    spec = []
    for count, site in zip(counts, sites, strict=True):
        if count not in (0, 1, 2):
            raise ValueError(f"counts must be 0, 1 or 2 per block, got {count}")
        kept = np.zeros((2, num_nodes), dtype=bool)
        if count == 2:
            kept[:] = True
        elif count == 1:
            pick = rng.integers(0, 2, num_nodes) if site is None else np.full(num_nodes, site)
            kept[pick, np.arange(num_nodes)] = True
        pair = []
        for s in range(2):
            coeffs = np.stack(
                [
                    0.01 * rng.uniform(-2.0, 2.0, num_nodes),
                    rng.uniform(0.5, 1.5, num_nodes),
                    rng.uniform(-0.05, 0.05, num_nodes),
                ],
                axis=1,
            )
            pair.append(SiteSpec(coeffs, kept[s]))
        spec.append((pair[0], pair[1]))
    return spec


def save_spec(path: str | Path, spec: ActivationSpec) -> None:
    """Write ``coeffs`` (B, 2, V, 3) and ``kept`` (B, 2, V) to an ``.npz`` file."""
    np.savez(
        path,
        coeffs=np.stack([[s.coeffs for s in pair] for pair in spec]),
        kept=np.stack([[s.kept for s in pair] for pair in spec]),
    )


def load_spec(path: str | Path) -> ActivationSpec:
    """Read a spec written by :func:`save_spec`."""
    with np.load(path) as data:
        coeffs, kept = data["coeffs"], data["kept"]  # (B, 2, V, 3), (B, 2, V)
    return [(SiteSpec(c[0], k[0]), SiteSpec(c[1], k[1])) for c, k in zip(coeffs, kept, strict=True)]
