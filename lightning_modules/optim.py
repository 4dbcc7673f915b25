"""Optimizer wrappers the methods' papers use that torch does not ship."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch

from effml.checks import check_int, check_range, with_defaults


class Lookahead(torch.optim.Optimizer):
    """Lookahead (Zhang et al., NeurIPS 2019): every ``k`` inner steps the slow weights move
    ``alpha`` of the way to the fast ones and the fast weights restart from them.

    Wraps any optimizer; its param groups are shared, so LR schedulers act on the inner one.

    Args:
        params: the parameters (or groups).
        base: a partial optimizer (``_partial_: true``) or an optimizer instance.
        k: inner steps per synchronisation (LinGCN: 6).
        alpha: slow-weight step (LinGCN: 0.5).
    """

    def __init__(
        self,
        params: Iterable,
        base: Callable[..., torch.optim.Optimizer] | torch.optim.Optimizer,
        k: int = 6,
        alpha: float = 0.5,
    ) -> None:
        self.check_config({"k": k, "alpha": alpha})
        self.base = base if isinstance(base, torch.optim.Optimizer) else base(params)
        self.k, self.alpha = k, alpha
        super().__init__(self.base.param_groups, self.base.defaults)
        self.param_groups = self.base.param_groups
        self.inner_steps = 0

    @classmethod
    def check_config(cls, cfg: Mapping[str, Any]) -> None:
        """``k`` a positive integer, ``alpha`` in (0, 1]."""
        cfg = with_defaults(cls, cfg)
        check_int(cfg, "k", minimum=1, example=6)
        check_range(cfg, "alpha", 0.0, 1.0, low_open=True, example=0.5)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        if self.inner_steps == 0:
            for group in self.param_groups:
                for p in group["params"]:
                    self.state[p]["slow"] = p.detach().clone()
        with torch.enable_grad():
            loss = self.base.step(closure)
        self.inner_steps += 1
        if self.inner_steps % self.k == 0:
            for group in self.param_groups:
                for p in group["params"]:
                    slow = self.state[p]["slow"]
                    slow.add_(p - slow, alpha=self.alpha)
                    p.copy_(slow)
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.base.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        slow = [
            self.state[p]["slow"]
            for g in self.param_groups
            for p in g["params"]
            if "slow" in self.state[p]
        ]
        return {"base": self.base.state_dict(), "slow": slow, "inner_steps": self.inner_steps}

    def load_state_dict(self, state_dict: dict) -> None:
        self.base.load_state_dict(state_dict["base"])
        self.param_groups = self.base.param_groups
        self.inner_steps = state_dict["inner_steps"]
        params = [p for g in self.param_groups for p in g["params"]]
        for p, slow in zip(params, state_dict["slow"], strict=False):
            self.state[p]["slow"] = slow.to(p.device)
