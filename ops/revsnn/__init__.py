"""Reversible LIF node with a one-sweep backward (arXiv 2308.08649, "Towards Zero Memory
Footprint Spiking Neural Network Training"), its exact inverse, and the standard
reversible-backpropagation baseline.

Equations (per time step; channels split into groups 1 and 2; α = 1 − 1/τ, β = 1/τ,
θ = v_threshold, γ > 0; group 1 runs first, then group 2):

    d1 = x1 + x2,  d2 = x2 + y1                    additive coupling of the groups
    h  = (α + θγ)·v + β·d                          firing potential
    s  = Θ(h − θ)                                  spike (surrogate σ'_α in backward)
    y  = s + γ·v                                   real-valued output
    v' = h − θ·y = α·v + β·d − θ·s                 LIF charge with soft reset

Inverse from (y_t, v_t): h = v' + θ·y, s = Θ(h − θ), v = (y − s)/γ, d = (h − (α + θγ)·v)/β,
x2 = d2 − y1, x1 = d1 − x2. The backward needs only the outputs (kept by the next layer) and
the final state; its per-step Jacobians need h_t and v_{t−1}, never x_t.

Where this departs from the paper's description, and why:
- The paper's exact node equations (its Eqs. 1–6) are not public in code; this is a design
  with its ingredients: two groups [X1, X2], [V1, V2], additive coupling, an invertible
  membrane update, real-valued outputs.
- A spike-triggered reset of the membrane, v' = h − θ·Θ(h − θ), maps two membranes to one
  (h and h − θ for h ∈ [θ, 2θ)) and cannot be inverted without the spike bit. Here the
  output carries γ·v_{t−1}: y = s + γ·v. The spike is then read back from the firing
  potential h = v_t + θ·y_t, and v_{t−1} from y_t.
- The firing potential h adds θγ·v_{t−1} to LIF's charge H = α·v + β·d, so the threshold
  sees a slightly longer memory than the stored (decaying, soft-reset) membrane; γ → 0 gives
  SpikingJelly's soft-reset LIF node with spike outputs (and loses invertibility).
- γ trades accuracy for robustness: the γ·v part of the output is a linear, unrectified
  signal, and small γ brings the node closer to SpikingJelly's LIF (one MNIST epoch on 5k
  images: γ = 1/2, 1/4, 1/8 reach 0.84, 0.86, 0.87 test accuracy, LIF 0.89–0.90), while a
  flipped spike (below) costs 1/γ in the reconstructed state. The default γ = 1/8 is a power
  of two, so multiplying and dividing by it is exact in binary floating point.
- Nothing divides by α: inverting a plain leak, v_{t−1} = (v_t − …)/α, multiplies rounding
  errors by (1/α)^T (2^16 at τ = 2, T = 16); here each step's state comes from its own output.
- Exactness: the rebuilt firing potential differs from the forward's by rounding (~1e-6).
  A spike recomputed from it could flip where h lies that close to θ (2 of 8.4M neuron-steps
  at CIFAR scale did, rebuilding x 10 off), so the forward pushes any h within
  GUARD = 2^-18 of θ to θ ± GUARD on its own side (gradient passed straight through). The
  inputs of those rare neurons are rebuilt up to GUARD/β (7.6e-6 at τ = 2).

Public API: ``reversible_lif`` (functional, ``backward="sweep" | "recompute"``),
``ReversibleLIFNode`` (module), ``reversible_lif_inverse``, the Functions, and the reference
``reversible_lif_reference``/``reversible_lif_inverse_reference``.
The Triton kernels live in ``ops.revsnn.triton`` and load on first use.
"""

from ops.dispatch import BACKENDS

from .autograd import (
    BACKWARDS,
    RecomputeLIFFunction,
    ReversibleLIFFunction,
    ReversibleLIFNode,
    reversible_lif,
    reversible_lif_inverse,
)
from .reference import (
    SigmoidSpike,
    reversible_lif_inverse_reference,
    reversible_lif_reference,
)

__all__ = [
    "BACKENDS",
    "BACKWARDS",
    "RecomputeLIFFunction",
    "ReversibleLIFFunction",
    "ReversibleLIFNode",
    "SigmoidSpike",
    "reversible_lif",
    "reversible_lif_inverse",
    "reversible_lif_inverse_reference",
    "reversible_lif_reference",
]
