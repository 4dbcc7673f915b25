"""LinGCN (arXiv:2309.14331): ST-GCN, structural linearization, node-wise polynomials."""

from lightning_modules.lingcn.module import LinGCNModule

__all__ = ["LinGCNModule"]
