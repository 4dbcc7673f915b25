"""Node-wise polynomial activations fused into one level each (LinGCN's fusion).

With ``u`` the preceding linear layer's output,

    y = a2·u² + a1·u + a0 = |a2|·u·w + a0,   w = sgn(a2)·u + a1/|a2|

w costs only a constant addition; the factor |a2| is free: after the ct×ct multiply and
rescale, the product's declared scale is divided by |a2| (CKKS scales are metadata, so this
multiplies the encrypted values by |a2|). Planning the linear layer's output scale
σ = √(τ·q·|a2|) (τ: the scale wanted after the site, q: the prime the rescale drops) makes
y land exactly on τ: σ²/q = τ·|a2| before the relabel, τ after it.

The price is precision, not time: u is held at σ ≈ Δ·√|a2|, i.e. ½·log2(1/|a2|) fewer bits.
A site with |a2| < 2^-30 runs as the linear a1·u + a0 (one scalar multiply; the dropped
a2·u² is below 2^-20 for |u| < 32). Emitting w = a2·x + a1 as a second output of the linear
producer instead would double the producer's plaintext multiplies and give the temporal
conv per-node plaintexts; with relabelling a kept polynomial costs exactly what the
CryptoGCN baseline's x² costs (x² is the site (1, 0, 0)): one ct×ct multiply, one
relinearization, one rescale — and a removed site costs nothing.
"""

from __future__ import annotations

import math

import numpy as np

from he.ckks import Ciphertext, CkksBackend

LINEAR_A2 = 2.0**-30


def site_input_scale(target: float, prime: int, coeffs: np.ndarray, kept: bool) -> float:
    """Scale σ the site's input must have for its output to land on ``target``."""
    if not kept or abs(coeffs[0]) < LINEAR_A2:
        return target
    return math.sqrt(target * prime * abs(coeffs[0]))


def fused_site(
    backend: CkksBackend, coeffs: np.ndarray, u: Ciphertext, target: float, support: np.ndarray
) -> Ciphertext:
    """a2·u² + a1·u + a0 in one level, landing on ``target``.

    Args:
        coeffs: (3,) the node's (a2, a1, a0); u must be at ``site_input_scale``.
        support: (slots,) 1 on the tensor's valid slots, where a0 is added.
    """
    be = backend
    a2, a1, a0 = coeffs
    level = be.level(u)
    q = be.primes[level]
    if abs(a2) < LINEAR_A2:
        y = be.multiply_plain(u, be.encode(a1, level, q))
        be.rescale(y, target)
    else:
        if a1 == 0.0:
            y = be.multiply(u)
        else:
            y = be.multiply(u, be.add_const(u if a2 > 0 else be.negate(u), a1 / abs(a2)))
        be.rescale(y, u.scale * u.scale / q)
        if a1 == 0.0 and a2 < 0:
            y = be.negate(y)
        be.relabel(y, target)
    if a0 != 0.0:
        be.add_plain_inplace(y, be.encode(a0 * support, level - 1, target))
    return y
