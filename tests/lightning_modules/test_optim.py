"""Lookahead: slow/fast weight arithmetic and checkpoint round trip."""

from __future__ import annotations

from functools import partial

import pytest
import torch

from lightning_modules.optim import Lookahead


def test_lookahead_matches_hand_computation() -> None:
    # loss = 0.5·w², SGD lr 0.1: a fast step multiplies w by 0.9
    w = torch.nn.Parameter(torch.tensor([1.0]))
    opt = Lookahead([w], partial(torch.optim.SGD, lr=0.1), k=2, alpha=0.5)
    for _ in range(2):
        opt.zero_grad()
        (0.5 * w.pow(2)).sum().backward()
        opt.step()
    # after k=2 fast steps: fast 0.81, slow 1.0 → 1.0 + 0.5·(0.81 − 1.0) = 0.905
    assert w.item() == pytest.approx(0.905)
    opt.zero_grad()
    (0.5 * w.pow(2)).sum().backward()
    opt.step()
    assert w.item() == pytest.approx(0.905 * 0.9)


def test_state_dict_round_trip_and_shared_lr() -> None:
    w = torch.nn.Parameter(torch.randn(3))
    opt = Lookahead([w], partial(torch.optim.SGD, lr=0.1, momentum=0.9), k=3)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    for _ in range(4):
        opt.zero_grad()
        w.pow(2).sum().backward()
        opt.step()
        sched.step()
    assert opt.base.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5**4)
    state = opt.state_dict()
    w2 = torch.nn.Parameter(w.detach().clone())
    opt2 = Lookahead([w2], partial(torch.optim.SGD, lr=0.1, momentum=0.9), k=3)
    opt2.load_state_dict(state)
    assert opt2.inner_steps == 4
    torch.testing.assert_close(opt2.state[w2]["slow"], opt.state[w]["slow"])


def test_bad_arguments() -> None:
    w = torch.nn.Parameter(torch.zeros(1))
    with pytest.raises(ValueError, match="k=0"):
        Lookahead([w], partial(torch.optim.SGD, lr=0.1), k=0)
    with pytest.raises(ValueError, match="alpha=1.5"):
        Lookahead([w], partial(torch.optim.SGD, lr=0.1), alpha=1.5)
