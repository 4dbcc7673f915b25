"""Node classification: the GNN baseline (GraphSAGE/GCN/GIN) and MaxK-GNN (arXiv:2312.08656)."""

from lightning_modules.gnn.module import NodeClassifier

__all__ = ["NodeClassifier"]
