"""Multi-scale retention (RetNet, arXiv 2307.08621): parallel, recurrent and chunkwise forms.

Public API: ``retention`` (any form), ``chunkwise_retention`` (``backend="reference" | "cpu" |
"triton" | "fla"``), ``retention_step`` (one decoding step), ``RetentionState``,
``multiscale_gammas`` and the reference forms ``retention_parallel``/``retention_recurrent``/
``retention_chunkwise``. See ``reference.py`` for the equations and the normalisation that
keeps the three forms equal. The Triton kernel lives in ``ops.retention.triton`` and loads
on first use.
"""

from .autograd import BACKENDS, FORMS, TritonChunkRetention, chunkwise_retention, retention
from .reference import (
    RetentionState,
    decay_matrix,
    empty_state,
    multiscale_gammas,
    retention_chunkwise,
    retention_parallel,
    retention_recurrent,
    retention_step,
)

__all__ = [
    "BACKENDS",
    "FORMS",
    "RetentionState",
    "TritonChunkRetention",
    "chunkwise_retention",
    "decay_matrix",
    "empty_state",
    "multiscale_gammas",
    "retention",
    "retention_chunkwise",
    "retention_parallel",
    "retention_recurrent",
    "retention_step",
]
