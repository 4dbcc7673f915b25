"""Baby-step/giant-step (BSGS) products of node ciphertexts with generalized diagonals.

A linear layer in the slot layout (he.packing) is ``y = Σ_{(j, δ)} D_{j,δ} ⊙ rot(x, j·L + δ)``
(channel diagonal j, slot shift δ of a temporal tap). With j = g + jb, g a multiple of n1:

    y = Σ_g rot( Σ_{jb, δ} rot(rot(x, δ), jb·L) ⊙ rot(D_{g+jb,δ}, −g·L), g·L )

The baby steps rot(rot(x, δ), jb·L) are computed once per input ciphertext and shared by all
outputs that read it (the graph conv's neighbours, its residual conv); the giant steps are
computed once per output. Several inputs may feed one output (the graph conv sums its
neighbours before the giant rotations). The diagonals are pre-rotated in numpy before
encoding, and all-zero diagonals are skipped.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from he.ckks import Ciphertext, CkksBackend, Plaintext
from he.packing import SlotLayout

Babies = dict[tuple[int, int], Ciphertext]  # (jb, slot shift) → rot(rot(x, shift), jb·L)
Giants = dict[tuple[int, int, int], Plaintext]  # (g, jb, slot shift) → rot(D_{g+jb}, −g·L)


def best_baby_steps(c_pad: int, baby_weight: int, giant_weight: int) -> int:
    """n1 (a power of two) minimising baby_weight·(n1 − 1) + giant_weight·(C_pad/n1 − 1).

    The weights count how many times each baby and each giant rotation is paid: per input
    and shift for babies, per output for giants.
    """
    options = [1 << i for i in range(c_pad.bit_length()) if 1 << i <= c_pad]
    return min(options, key=lambda n: baby_weight * (n - 1) + giant_weight * (-(-c_pad // n) - 1))


def channel_steps(n1: int, c_pad: int, channel_step: int) -> set[int]:
    """The rotation steps a BSGS split with ``n1`` baby steps uses."""
    babies = {jb * channel_step for jb in range(1, n1)}
    return babies | {g * channel_step for g in range(n1, c_pad, n1)}


def diagonal_support(c_out: int, c_in: int, c_pad: int) -> set[int]:
    """Channel diagonals j a dense (C_out, C_in) map can occupy."""
    return {(i - c) % c_pad for c in range(c_out) for i in range(c_in)}


def block_support(c_out: int, c_in: int, c_blk: int) -> set[int]:
    """Channel diagonals j any C_blk × C_blk block of a dense (C_out, C_in) map can occupy."""
    out: set[int] = set()
    for bo in range(0, c_out, c_blk):
        for bi in range(0, c_in, c_blk):
            out |= diagonal_support(min(c_blk, c_out - bo), min(c_blk, c_in - bi), c_blk)
    return out


class DiagonalProducts:
    """BSGS evaluation on one backend and slot layout."""

    def __init__(self, backend: CkksBackend, layout: SlotLayout) -> None:
        self.backend, self.layout = backend, layout

    def babies(self, x: Ciphertext, keys: set[tuple[int, int]]) -> Babies:
        """rot(rot(x, shift), jb·L) for every (jb, shift) in ``keys``."""
        shifted, out = {0: x}, {}
        for jb, shift in sorted(keys):
            if shift not in shifted:
                shifted[shift] = self.backend.rotate(x, shift)
            base = shifted[shift]
            out[(jb, shift)] = (
                base if jb == 0 else self.backend.rotate(base, jb * self.layout.channel_step)
            )
        return out

    def encode(
        self, diags: dict[tuple[int, int], np.ndarray], n1: int, level: int, scale: float
    ) -> Giants:
        """Encode diagonals {(j, shift): D} pre-rotated for their giant step."""
        return dict(self._encoded(diags, n1, level, scale))

    def _encoded(
        self, diags: dict[tuple[int, int], np.ndarray], n1: int, level: int, scale: float
    ) -> Iterator[tuple[tuple[int, int, int], Plaintext]]:
        for (j, shift), vec in diags.items():
            g = j - j % n1
            rolled = np.roll(vec, g * self.layout.channel_step)  # rot(D, −g·L)
            yield (g, j % n1, shift), self.backend.encode(rolled, level, scale)

    def accumulate(
        self,
        acc: dict[int, Ciphertext],
        babies: Babies,
        diags: dict[tuple[int, int], np.ndarray],
        n1: int,
        level: int,
        scale: float,
    ) -> None:
        """acc[g] += Σ babies ⊙ rot(D, −g·L), encoding each diagonal only while it is used.

        The streaming form of :meth:`encode` + :meth:`apply` for layers whose plaintexts are
        too many to hold at once (channel blocks at NTU size).
        """
        for key, pt in self._encoded(diags, n1, level, scale):
            self._add_product(acc, babies, key, pt)

    def _add_product(
        self, acc: dict[int, Ciphertext], babies: Babies, key: tuple[int, int, int], pt: Plaintext
    ) -> None:
        g, jb, shift = key
        prod = self.backend.multiply_plain(babies[(jb, shift)], pt)
        if g in acc:
            self.backend.add_inplace(acc[g], prod)
        else:
            acc[g] = prod

    def add_encoded(self, acc: dict[int, Ciphertext], babies: Babies, giants: Giants) -> None:
        """acc[g] += Σ_b babies[b] ⊙ giants[g, b] with giants from :meth:`encode`."""
        for key, pt in giants.items():
            self._add_product(acc, babies, key, pt)

    def apply(self, terms: list[tuple[Babies, Giants]]) -> Ciphertext:
        """Σ_g rot(Σ_terms Σ_b babies[b] ⊙ giants[g, b], g·L), not yet rescaled."""
        acc: dict[int, Ciphertext] = {}
        for babies, giants in terms:
            self.add_encoded(acc, babies, giants)
        return self.finish(acc)

    def finish(self, acc: dict[int, Ciphertext]) -> Ciphertext:
        """Σ_g rot(acc[g], g·L): the giant steps."""
        be, out = self.backend, None
        for g in sorted(acc):
            part = acc[g] if g == 0 else be.rotate(acc[g], g * self.layout.channel_step)
            if out is None:
                out = part
            else:
                be.add_inplace(out, part)
        return out
