"""Distillation losses: zero for a perfect student, the T² scaling, attention maps' shape."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lightning_modules.distill import at_loss, attention_map, kd_loss


def test_kd_loss_is_zero_for_the_teacher_and_matches_the_kl_formula() -> None:
    torch.manual_seed(0)
    student, teacher = torch.randn(4, 5), torch.randn(4, 5)
    assert kd_loss(teacher, teacher, 4.0).item() == pytest.approx(0.0, abs=1e-6)
    p = F.softmax(teacher / 2.0, dim=1)
    kl = (p * (p.log() - F.log_softmax(student / 2.0, dim=1))).sum(1).mean()
    torch.testing.assert_close(kd_loss(student, teacher, 2.0), kl * 4.0)


def test_attention_map_and_at_loss() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 3, 4, 25)  # (N, C, T, V)
    att = attention_map(x)
    assert att.shape == (2, 100)
    torch.testing.assert_close(att.norm(dim=1), torch.ones(2))
    # a per-sample rescaling leaves the normalised map, and so the loss, unchanged
    assert at_loss([x], [3.0 * x]).item() == pytest.approx(0.0, abs=1e-10)
    assert at_loss([x, x], [x.flip(3), x]).item() > 0
    with pytest.raises(ValueError):
        at_loss([x, x], [x])
