"""Spiking networks with the reversible spiking node (arXiv:2308.08649) or SpikingJelly's LIF."""

from lightning_modules.snn.module import SpikingClassifier

__all__ = ["SpikingClassifier"]
