"""Encrypted (CKKS) inference on trained models: LinGCN's linearized ST-GCN with TenSEAL/SEAL.

- :mod:`he.spec`: per-node activation specs (kept mask + polynomial), LinGCN's equal-count rule.
- :mod:`he.circuit`: the folded plaintext circuit, its float64 simulation and its depth.
- :mod:`he.packing`: the slot layout and plaintext diagonals.
- :mod:`he.linear`: baby-step/giant-step diagonal products; :mod:`he.fusion`: fused polynomials.
- :mod:`he.ckks`: parameters at 128-bit security, keys, counted SEAL operations.
- :mod:`he.stgcn`: the encrypted inference (:class:`HeStgcnInference`).
- :mod:`he.reference`: torch modules applying a spec; random STGCNs with calibrated BN.
"""

from he.circuit import BlockCircuit, CircuitDepth, Readout, ReadoutTerm, StgcnCircuit
from he.ckks import (
    SECURITY_CAP_BITS,
    CkksBackend,
    CkksParameters,
    HeParameterError,
    OpCounts,
    check_depth,
    select_parameters,
)
from he.packing import SlotLayout
from he.reference import SpecActivation, calibrated_stgcn, spec_act_factory
from he.spec import (
    ActivationSpec,
    SiteSpec,
    baseline_spec,
    lingcn_spec,
    load_spec,
    save_spec,
    validate_spec,
)
from he.stgcn import HeStgcnInference

__all__ = [
    "SECURITY_CAP_BITS",
    "ActivationSpec",
    "BlockCircuit",
    "CircuitDepth",
    "CkksBackend",
    "CkksParameters",
    "HeParameterError",
    "HeStgcnInference",
    "OpCounts",
    "Readout",
    "ReadoutTerm",
    "SiteSpec",
    "SlotLayout",
    "SpecActivation",
    "StgcnCircuit",
    "baseline_spec",
    "calibrated_stgcn",
    "check_depth",
    "lingcn_spec",
    "load_spec",
    "save_spec",
    "select_parameters",
    "spec_act_factory",
    "validate_spec",
]
