"""Spiking networks with the reversible spiking node (arXiv:2312.07922) or SpikingJelly's LIF."""
from lightning_modules.snn.module import SpikingClassifier

__all__ = ["SpikingClassifier"]
