"""Diffusion models: the U-ViT backbone, VP schedules, samplers, and DeeDiff's early exit."""

from lightning_modules.diffusion.deediff import DeeDiffModule
from lightning_modules.diffusion.module import DiffusionModule

__all__ = ["DeeDiffModule", "DiffusionModule"]
