"""ReLU-budgeted private inference: AutoReP (arXiv:2308.10134) and SNL (arXiv:2202.02340)."""

from lightning_modules.relu_budget.module import ReluBudgetModule

__all__ = ["ReluBudgetModule"]
