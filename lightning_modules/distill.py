"""Knowledge distillation (Hinton et al., arXiv:1503.02531) and attention transfer
(Zagoruyko & Komodakis, arXiv:1612.03928), the teacher losses of LinGCN, AutoReP and SNL."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def kd_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton distillation: KL(softmax(t/T) ‖ softmax(s/T))·T².

    Shapes:
        student, teacher: (N, classes) logits; returns a scalar (batch mean).
    """
    return (
        F.kl_div(
            F.log_softmax(student / temperature, dim=1),
            F.softmax(teacher / temperature, dim=1),
            reduction="batchmean",
        )
        * temperature**2
    )


def attention_map(x: torch.Tensor) -> torch.Tensor:
    """L2-normalised channel mean of x² (arXiv:1612.03928, eq. 2 with p = 2).

    Shapes:
        x: (N, C, ...) features; returns (N, prod(...)), e.g. (N, C, T, V) → (N, T·V).
    """
    return F.normalize(x.pow(2).mean(dim=1).flatten(1), dim=1)


def at_loss(student: list[torch.Tensor], teacher: list[torch.Tensor]) -> torch.Tensor:
    """Σ over paired feature maps of mean((AT_s − AT_t)²); the lists pair block by block."""
    return sum(
        (attention_map(s) - attention_map(t)).pow(2).mean()
        for s, t in zip(student, teacher, strict=True)
    )
