"""Reasoning tasks for Graph of Thought (arXiv:2308.08614) and its baselines: Game of 24, polynomial
equations and recursive sequences, each with an exact checker built on the whitelisted
arithmetic of :mod:`llm.reasoning.arith` (model output is never evaluated as Python)."""
