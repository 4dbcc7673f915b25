"""CKKS backend on SEAL through TenSEAL: parameters at 128-bit security, keys, and counted,
timed primitive operations.

Parameters: ``coeff_mod_bit_sizes = [60] + [scale_bits]·depth + [60]`` (first prime, one
prime per level, special prime); the smallest N in {8192, 16384, 32768} whose 128-bit cap on
log Q (218, 438, 881 bits; SEAL refuses N = 65536) holds them and whose N/2 slots hold the
packing is chosen, and :class:`HeParameterError` is raised before any key exists otherwise.

Exact scales: a ciphertext at level ℓ holds primes q_0..q_ℓ and its rescale divides by q_ℓ.
Callers choose every plaintext's encoding scale so that each rescale lands on a planned
scale (e.g. a plaintext at scale q_ℓ keeps a ciphertext's scale); :meth:`CkksBackend.rescale`
checks the landing to 1e-9 and snaps SEAL's double to the planned value, so additions always
meet equal scales and no approximation Δ ≈ q_ℓ ever enters the values. Multiplying by a
positive constant c is free: relabel the scale s → s/c (:meth:`CkksBackend.relabel`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields

import numpy as np
import tenseal as ts
import tenseal.sealapi as sealapi

SECURITY_CAP_BITS = {8192: 218, 16384: 438, 32768: 881}  # log Q at 128-bit security (HE standard)


class HeParameterError(ValueError):
    """The circuit cannot run under 128-bit-secure CKKS parameters; raised before encryption."""


@dataclass(frozen=True)
class CkksParameters:
    """Ring degree and modulus chain."""

    n: int
    coeff_mod_bit_sizes: tuple[int, ...]
    scale_bits: int

    @property
    def slots(self) -> int:
        """N/2 complex slots, used as reals."""
        return self.n // 2

    @property
    def depth(self) -> int:
        """Rescales the chain allows."""
        return len(self.coeff_mod_bit_sizes) - 2


def modulus_chain(depth: int, scale_bits: int = 40, edge_bits: int = 60) -> tuple[int, ...]:
    """``[edge] + [scale]·depth + [edge]``."""
    return (edge_bits,) + (scale_bits,) * depth + (edge_bits,)


def check_depth(depth: int, scale_bits: int = 40, edge_bits: int = 60) -> None:
    """Raise :class:`HeParameterError` when no allowed N holds ``depth`` levels."""
    bits = modulus_chain(depth, scale_bits, edge_bits)
    n_max, cap = max(SECURITY_CAP_BITS.items())
    if sum(bits) > cap:
        raise HeParameterError(
            f"the circuit has multiplicative depth {depth}: log Q = {edge_bits} + {depth}×"
            f"{scale_bits} + {edge_bits} = {sum(bits)} bits, above the 128-bit-security cap of "
            f"{cap} bits at N = {n_max} (the largest ring SEAL allows; at most "
            f"{(cap - 2 * edge_bits) // scale_bits} levels). Fix: linearize more (fewer kept "
            "nonlinearities per block; dropping the last block's act2 folds it into the head), "
            "use fewer layers, or lower scale_bits"
        )


def select_parameters(
    depth: int, slots_needed: int, scale_bits: int = 40, edge_bits: int = 60
) -> CkksParameters:
    """The smallest N whose security cap holds the chain and whose slots hold the packing."""
    check_depth(depth, scale_bits, edge_bits)
    bits = modulus_chain(depth, scale_bits, edge_bits)
    for n, cap in sorted(SECURITY_CAP_BITS.items()):
        if sum(bits) <= cap and n // 2 >= slots_needed:
            return CkksParameters(n, bits, scale_bits)
    n_max = max(SECURITY_CAP_BITS)
    raise HeParameterError(
        f"the packing needs {slots_needed} slots per ciphertext (channels × frames × persons, "
        f"padded to powers of two) but N = {n_max} has {n_max // 2}"
    )


@dataclass
class OpCounts:
    """Homomorphic operation counters."""

    ct_ct_mul: int = 0  # ciphertext × ciphertext (multiply or square), relinearized
    pt_ct_mul: int = 0  # plaintext × ciphertext, vector or scalar
    rotations: int = 0
    rescales: int = 0
    additions: int = 0  # ct + ct and ct + pt
    encodes: int = 0  # plaintext vector encodings (FFT + NTT; scalars are free)

    def __sub__(self, other: OpCounts) -> OpCounts:
        return OpCounts(*(getattr(self, f.name) - getattr(other, f.name) for f in fields(self)))

    def __add__(self, other: OpCounts) -> OpCounts:
        return OpCounts(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    def as_dict(self) -> dict[str, int]:
        """Plain dict for JSON."""
        return asdict(self)


Ciphertext = sealapi.Ciphertext
Plaintext = sealapi.Plaintext


class CkksBackend:
    """Keys and counted SEAL operations for one parameter set.

    Args:
        params: ring degree and modulus chain.
        rotation_steps: the left-rotation steps the circuit uses (Galois keys for exactly these).
    """

    def __init__(self, params: CkksParameters, rotation_steps: Iterable[int]) -> None:
        start = time.perf_counter()
        self.params = params
        self.scale = float(2**params.scale_bits)
        self.context = ts.context(
            ts.SCHEME_TYPE.CKKS, params.n, coeff_mod_bit_sizes=list(params.coeff_mod_bit_sizes)
        )
        self.context.global_scale = self.scale
        seal = self.context.seal_context().data
        self._encoder = sealapi.CKKSEncoder(seal)
        self._evaluator = sealapi.Evaluator(seal)
        self._encryptor = sealapi.Encryptor(seal, self.context.public_key().data)
        self._decryptor = sealapi.Decryptor(seal, self.context.secret_key().data)
        self._relin_keys = self.context.relin_keys().data
        self.steps = sorted({s % params.slots for s in rotation_steps} - {0})
        self._galois_keys = sealapi.GaloisKeys()
        elements = [pow(3, s, 2 * params.n) for s in self.steps]
        sealapi.KeyGenerator(seal, self.context.secret_key().data).create_galois_keys(
            elements, self._galois_keys
        )
        self._parms_ids: dict[int, list[int]] = {}
        self._levels: dict[tuple[int, ...], int] = {}
        data = seal.first_context_data()
        self.primes = [m.value() for m in data.parms().coeff_modulus()]  # q_0 .. q_D
        while data is not None:
            self._parms_ids[data.chain_index()] = data.parms_id()
            self._levels[tuple(data.parms_id())] = data.chain_index()
            data = data.next_context_data()
        self.top_level = max(self._parms_ids)
        self.ops = OpCounts()
        self.setup_s = time.perf_counter() - start

    def level(self, ct: Ciphertext) -> int:
        """Index ℓ of the last prime q_ℓ the ciphertext holds."""
        return self._levels[tuple(ct.parms_id())]

    def encode(self, values: np.ndarray | float, level: int, scale: float) -> Plaintext:
        """A plaintext at ``level`` and ``scale`` from a (slots,) vector or one float for all."""
        pt = Plaintext()
        if isinstance(values, np.ndarray):
            self.ops.encodes += 1
            self._encoder.encode(values, self._parms_ids[level], scale, pt)
        else:
            self._encoder.encode(float(values), self._parms_ids[level], scale, pt)
        return pt

    def encrypt(self, values: np.ndarray) -> Ciphertext:
        """Encrypt a (slots,) vector at the top level and scale 2^scale_bits."""
        ct = Ciphertext()
        self._encryptor.encrypt(self.encode(values, self.top_level, self.scale), ct)
        return ct

    def decrypt(self, ct: Ciphertext) -> np.ndarray:
        """(slots,) float64."""
        pt = Plaintext()
        self._decryptor.decrypt(ct, pt)
        return np.asarray(self._encoder.decode_double(pt))

    def rotate(self, ct: Ciphertext, step: int) -> Ciphertext:
        """Left rotation: out[s] = ct[s + step] (cyclic over the slots)."""
        step %= self.params.slots
        if step not in self.steps:
            raise KeyError(f"no Galois key for step {step}: add it to rotation_steps")
        out = Ciphertext()
        self._evaluator.rotate_vector(ct, step, self._galois_keys, out)
        self.ops.rotations += 1
        return out

    def multiply_plain(self, ct: Ciphertext, pt: Plaintext) -> Ciphertext:
        """ct ⊙ pt (scale multiplies; rescale later)."""
        out = Ciphertext()
        self._evaluator.multiply_plain(ct, pt, out)
        self.ops.pt_ct_mul += 1
        return out

    def multiply(self, a: Ciphertext, b: Ciphertext | None = None) -> Ciphertext:
        """a·b (a² when b is None), relinearized."""
        out = Ciphertext()
        if b is None:
            self._evaluator.square(a, out)
        else:
            self._evaluator.multiply(a, b, out)
        self._evaluator.relinearize_inplace(out, self._relin_keys)
        self.ops.ct_ct_mul += 1
        return out

    def add(self, a: Ciphertext, b: Ciphertext) -> Ciphertext:
        """a + b as a new ciphertext."""
        out = Ciphertext()
        self._evaluator.add(a, b, out)
        self.ops.additions += 1
        return out

    def add_inplace(self, a: Ciphertext, b: Ciphertext) -> None:
        """a += b (same level and scale)."""
        self._evaluator.add_inplace(a, b)
        self.ops.additions += 1

    def add_plain_inplace(self, a: Ciphertext, pt: Plaintext) -> None:
        """a += pt."""
        self._evaluator.add_plain_inplace(a, pt)
        self.ops.additions += 1

    def add_const(self, a: Ciphertext, value: float) -> Ciphertext:
        """a + value in every slot, as a new ciphertext."""
        out = Ciphertext()
        self._evaluator.add_plain(a, self.encode(value, self.level(a), a.scale), out)
        self.ops.additions += 1
        return out

    def negate(self, a: Ciphertext) -> Ciphertext:
        """−a as a new ciphertext."""
        out = Ciphertext()
        self._evaluator.negate(a, out)
        return out

    def rescale(self, ct: Ciphertext, expected: float) -> None:
        """Divide by the last prime in place; the new scale must be ``expected`` (snapped)."""
        self._evaluator.rescale_to_next_inplace(ct)
        self.ops.rescales += 1
        if abs(ct.scale / expected - 1) > 1e-9:
            raise RuntimeError(f"scale plan broken: rescaled to {ct.scale!r}, planned {expected!r}")
        ct.scale = expected

    def relabel(self, ct: Ciphertext, scale: float) -> None:
        """Declare a new scale: multiplies the encrypted values by old/new at no cost."""
        ct.scale = scale

    def mod_switch(self, ct: Ciphertext, level: int) -> Ciphertext:
        """Drop primes down to ``level`` without rescaling (values and scale unchanged)."""
        if self.level(ct) == level:
            return ct
        out = Ciphertext()
        self._evaluator.mod_switch_to(ct, self._parms_ids[level], out)
        return out
