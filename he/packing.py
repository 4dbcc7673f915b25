"""Slot layout of the node ciphertexts and the plaintext diagonals of the linear layers.

Layout (one ciphertext per graph node v and channel block): slot ``s = c·L + τ·B + b`` with
``B = slots / (C_pad·T_pad)`` (the batch lanes), ``L = T_pad·B`` (one channel's block) and
``b = sample·M + m``. C_pad and T_pad are powers of two, so ``C_pad·L = slots`` and a rotation
by ``j·L`` is a cyclic channel shift c → c + j (mod C_pad): the 1×1 convolutions need no
replicated copy. The B lanes pack B/M clips (with their M persons) side by side: every
rotation, multiply and key switch serves them all at once (SIMD batching), and since
latency is dominated by per-ciphertext rotations, the per-sample cost falls by B/M while
the latency of one batch stays that of one clip.

Channel blocks: when C_pad·T_pad·M exceeds the slots (NTU-60 at T = 256 with 128–256
channels), each node is held as ⌈C / C_blk⌉ ciphertexts of C_blk channels each (channel c in
block c // C_blk at c mod C_blk); ``channels`` is then C_blk, and a (C_out, C_in) map becomes
block maps (bo, bi) of C_blk × C_blk, each with its own channel diagonals (he.linear).

Frames: a layer whose frames were subsampled by a product of strides d ("dilation") keeps
logical frame t at τ = t·d; a stride-s temporal conv is computed at every valid input
position and only the outputs at multiples of s·d are kept valid (the others masked to zero
in its diagonals), so no repacking is needed and the next layer simply uses dilation s·d.

Linear layers are generalized diagonals ``y[s] = Σ_{(j, δ)} D_{j,δ}[s]·x[s + j·L + δ·d·B]``:
channel diagonal j, temporal tap δ (0 for 1×1 maps). D is zero wherever the output slot is
invalid or the tap reads across a clip boundary, which implements the zero padding (and
discards whatever a cyclic rotation brings in from the neighbouring channel).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def next_pow2(n: int) -> int:
    """Smallest power of two ≥ n."""
    return 1 << (max(n, 1) - 1).bit_length()


@dataclass(frozen=True)
class SlotLayout:
    """Where channel c, physical frame τ and lane b of a node live in a ciphertext."""

    slots: int
    channels: int  # C_pad
    frames: int  # T_pad
    persons: int  # M

    def __post_init__(self) -> None:
        if self.slots % (self.channels * self.frames) or self.lanes < self.persons:
            raise ValueError(
                f"{self.slots} slots cannot hold C_pad={self.channels} × T_pad={self.frames} "
                f"× M={self.persons}"
            )

    @property
    def lanes(self) -> int:
        """B."""
        return self.slots // (self.channels * self.frames)

    @property
    def samples(self) -> int:
        """Clips per ciphertext."""
        return self.lanes // self.persons

    @property
    def channel_step(self) -> int:
        """L: the rotation that shifts channels by one."""
        return self.frames * self.lanes

    def frame_step(self, dilation: int) -> int:
        """The rotation that shifts logical frames by one at ``dilation``."""
        return dilation * self.lanes

    def block_count(self, channels: int) -> int:
        """Ciphertexts per node for a tensor of ``channels`` channels."""
        return -(-channels // self.channels)

    def pack(self, x: np.ndarray) -> np.ndarray:
        """Clips (S ≤ samples, C, T, V, M) → node block vectors (V, ⌈C / C_blk⌉, slots)."""
        s, c, t, v, m = x.shape
        blocks = self.block_count(c)
        out = np.zeros((v, blocks * self.channels, self.frames, self.lanes))
        lanes = x.transpose(3, 1, 2, 0, 4).reshape(v, c, t, s * m)  # b = sample·M + m
        out[:, :c, :t, : s * m] = lanes
        return out.reshape(v, blocks, self.slots)

    def frame_mask(self, frames: int, dilation: int) -> np.ndarray:
        """(T_pad, B) bool: physical frames holding one of ``frames`` logical frames, used lanes."""
        tau = np.arange(self.frames)
        valid_t = (tau % dilation == 0) & (tau // dilation < frames)
        valid_b = np.arange(self.lanes) < self.samples * self.persons
        return valid_t[:, None] & valid_b[None, :]

    def lane_persons(self, persons_dim: int) -> np.ndarray:
        """(B,) index into a person axis of size 1 or M for every lane."""
        return (
            np.arange(self.lanes) % self.persons
            if persons_dim > 1
            else np.zeros(self.lanes, dtype=int)
        )

    def physical_frames(self, maps: np.ndarray, dilation: int) -> np.ndarray:
        """Frame-dependent maps (..., T) → (..., T_pad) with frame t at τ = t·d, zeros elsewhere."""
        out = np.zeros(maps.shape[:-1] + (self.frames,))
        out[..., : maps.shape[-1] * dilation : dilation] = maps
        return out

    def diagonals(self, weight: np.ndarray, mask: np.ndarray) -> dict[int, np.ndarray]:
        """Nonzero channel diagonals of a per-lane, per-frame channel map.

        Args:
            weight: (P, C_out, C_in) or (P, C_out, C_in, T_pad) (physical frames); P ∈ {1, M}.
            mask: (T_pad, B) valid output slots.
        Returns:
            {j: (slots,) D_j} with D_j[c, τ, b] = weight[p(b), c, (c + j) mod C_pad, τ]·mask[τ, b].
        """
        if weight.ndim == 3:
            weight = weight[..., None]
        p, c_out, c_in, t = weight.shape
        full = np.zeros((p, self.channels, self.channels, t))
        full[:, :c_out, :c_in] = weight
        rows = np.arange(self.channels)
        person = self.lane_persons(p)
        out = {}
        for j in range(self.channels):
            diag = full[:, rows, (rows + j) % self.channels]  # (P, C_pad, T)
            if not diag.any():
                continue
            lanes = np.broadcast_to(
                diag[person].transpose(1, 2, 0), (self.channels, self.frames, self.lanes)
            )
            vec = lanes * mask[None]  # (C_pad, T_pad, B)
            if vec.any():
                out[j] = vec.reshape(self.slots)
        return out

    def block_diagonals(
        self, weight: np.ndarray, mask: np.ndarray, out_block: int, in_block: int
    ) -> dict[int, np.ndarray]:
        """:meth:`diagonals` of the (out_block, in_block) C_blk × C_blk part of ``weight``."""
        cb = self.channels
        part = weight[:, out_block * cb : (out_block + 1) * cb, in_block * cb : (in_block + 1) * cb]
        return self.diagonals(part, mask) if part.size else {}

    def block_vectors(self, values: np.ndarray, mask: np.ndarray) -> list[np.ndarray]:
        """:meth:`channel_vector` per channel block of ``values`` (P, C)."""
        cb = self.channels
        return [
            self.channel_vector(values[:, i * cb : (i + 1) * cb], mask)
            for i in range(self.block_count(values.shape[1]))
        ]

    def channel_vector(self, values: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Per-(lane person, channel) constants (P, C) broadcast over valid slots → (slots,)."""
        full = np.zeros((values.shape[0], self.channels))
        full[:, : values.shape[1]] = values
        lanes = full[self.lane_persons(values.shape[0])].T  # (C_pad, B)
        return (lanes[:, None, :] * mask[None]).reshape(self.slots)

    def logit_slots(self, num_classes: int) -> np.ndarray:
        """(samples, K) slot indices of the logits after the readout's sums (class k in the
        output ciphertext k // C_blk)."""
        k = np.arange(num_classes)[None, :] % self.channels
        lane = np.arange(self.samples)[:, None] * self.persons
        return k * self.channel_step + lane
