"""HE-friendly gated activation y = g·F(x) + (1 − g)·G(x) (LinGCN, AutoReP), its gates and DaPa.

Public API: ``poly_act`` (functional), ``PolyAct`` (module with the coefficients),
``PolyActFunction`` (autograd.Function), ``poly_act_reference`` (the specification),
``paired_gates``/``ste_gate`` (straight-through gates), ``dapa_coefficients``/``dapa_mse``.
The Triton kernels live in ``ops.polyact.triton`` and load on first use.
"""

from .autograd import PolyAct, PolyActFunction, poly_act
from .dapa import dapa_coefficients, dapa_mse
from .gates import PairedGateFunction, SteGateFunction, paired_gates, ste_gate
from .reference import DROP_CHOICES, KEEP_CHOICES, poly_act_reference, poly_reference

__all__ = [
    "DROP_CHOICES",
    "KEEP_CHOICES",
    "PairedGateFunction",
    "PolyAct",
    "PolyActFunction",
    "SteGateFunction",
    "dapa_coefficients",
    "dapa_mse",
    "paired_gates",
    "poly_act",
    "poly_act_reference",
    "poly_reference",
    "ste_gate",
]
