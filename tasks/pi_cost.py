"""A small cost model of two-party private inference: why the ReLU count matters.

Protocol modelled: Delphi's hybrid (Mishra et al., USENIX Security 2020). Linear layers run on
additive secret shares with their expensive part (HE) pre-computed offline; every ReLU is a
Yao garbled circuit the server garbles offline and the client evaluates online; a polynomial
activation is one secret-shared multiplication with a Beaver triple (Delphi's quadratic
approximation path). With the HE moved offline, the online phase is dominated by the
garbled ReLUs, so online latency and communication are, to first order, linear in the count
of ReLUs — the quantity AutoReP and SNL minimise.

Per-ReLU figures (estimates, every one a parameter of :class:`GcCostModel`):

- Circuit: a ReLU over ℓ-bit shares in Z_p reconstructs x = a + b mod p (an ℓ-bit adder and
  a conditional subtraction of p: ≈ 3ℓ AND gates), tests the sign (a comparison, ≈ ℓ), selects
  (a multiplexer, ℓ) and re-shares the result with a fresh mask mod p (≈ 3ℓ): ≈ 8ℓ AND gates;
  XOR gates are free (Kolesnikov & Schneider, ICALP 2008). ℓ = 41 bits (Delphi's prime field).
- Size: half-gates (Zahur, Rosulek & Evans, EUROCRYPT 2015) send 2 ciphertexts of κ = 128
  bits per AND gate: 32·8ℓ bytes ≈ 10.5 KB per ReLU at ℓ = 41, sent offline.
- Online communication: the server's ℓ input wire labels (κ bits each) and the client's
  ℓ-bit output share: ℓ·(κ + 1)/8 bytes ≈ 661 B per ReLU (the client's own labels come by
  oblivious transfer offline, since its share is a mask it knows in advance).
- Online compute: 2 AES calls per AND gate for the evaluator; ``ns_per_and`` = 40 ns
  (≈ 25 M AND gates/s on one core, the order of EMP-toolkit's half-gates throughput).
- Polynomial site: one Beaver multiplication, each party opens two ℓ-bit values:
  4ℓ/8 bytes ≈ 21 B online, negligible compute.
- Network: ``bandwidth_mbps`` (1000, LAN) and ``rtt_ms`` per round (0.5), two rounds per
  activation layer.

The numbers are an estimate for comparing networks with each other, not a benchmark of a
protocol implementation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from effml.errors import ConfigError


@dataclass(frozen=True)
class GcCostModel:
    """Per-ReLU and per-polynomial costs of Delphi-style private inference (see module doc)."""

    share_bits: int = 41
    kappa_bits: int = 128
    and_gates_per_bit: float = 8.0
    ns_per_and: float = 40.0
    bandwidth_mbps: float = 1000.0
    rtt_ms: float = 0.5
    rounds_per_layer: int = 2

    def __post_init__(self) -> None:
        self.check_config({f.name: getattr(self, f.name) for f in fields(self)})

    @classmethod
    def check_config(cls, cfg: Mapping[str, Any]) -> None:
        """Only the model's fields, each a number > 0 (an integer for bit and round counts)."""
        defaults = {f.name: f.default for f in fields(cls)}
        for key, value in cfg.items():
            if key not in defaults:
                problem = f"is not a cost-model field; choose from {list(defaults)}"
                raise ConfigError(key, value, problem)
            kind = int if isinstance(defaults[key], int) else (int, float)
            if isinstance(value, bool) or not isinstance(value, kind) or not value > 0:
                noun = "an integer" if kind is int else "a number"
                raise ConfigError(key, value, f"must be {noun} > 0", example=defaults[key])

    @property
    def and_gates_per_relu(self) -> float:
        return self.and_gates_per_bit * self.share_bits

    @property
    def gc_bytes_per_relu(self) -> float:
        """Garbled table size (offline), half-gates: 2κ bits per AND gate."""
        return self.and_gates_per_relu * 2 * self.kappa_bits / 8

    @property
    def online_bytes_per_relu(self) -> float:
        return self.share_bits * (self.kappa_bits + 1) / 8

    @property
    def online_bytes_per_poly(self) -> float:
        return 4 * self.share_bits / 8

    def estimate(self, relus: int, polys: int, activation_layers: int) -> dict[str, float]:
        """Online latency (s), online and offline communication (MB) for one inference."""
        if min(relus, polys, activation_layers) < 0:
            raise ValueError("counts must be >= 0")
        online_bytes = relus * self.online_bytes_per_relu + polys * self.online_bytes_per_poly
        transfer_s = online_bytes * 8 / (self.bandwidth_mbps * 1e6)
        compute_s = relus * self.and_gates_per_relu * self.ns_per_and * 1e-9
        rounds_s = activation_layers * self.rounds_per_layer * self.rtt_ms * 1e-3
        return {
            "online_latency_s": transfer_s + compute_s + rounds_s,
            "online_gc_compute_s": compute_s,
            "online_comm_mb": online_bytes / 1e6,
            "offline_gc_mb": relus * self.gc_bytes_per_relu / 1e6,
        }
