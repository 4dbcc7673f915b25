"""Torch-side helpers for the HE tools: STGCN activation sites that apply an
:data:`ActivationSpec`, and small random STGCNs with trained-like BatchNorm statistics."""

from __future__ import annotations

import torch
from torch import nn

from he.spec import ActivationSpec, SiteSpec
from lightning_modules.lingcn.stgcn import NUM_JOINTS, STGCN, ActFactory


class SpecActivation(nn.Module):
    """One activation site: per node ``a2·x² + a1·x + a0`` where kept, else ``x``."""

    def __init__(self, site: SiteSpec) -> None:
        super().__init__()
        self.register_buffer("coeffs", torch.from_numpy(site.coeffs.T.copy()))  # (3, V)
        self.register_buffer("kept", torch.from_numpy(site.kept.copy()))  # (V,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, T, V)
        a2, a1, a0 = self.coeffs.to(x.dtype)
        return torch.where(self.kept, (a2 * x + a1) * x + a0, x)


def spec_act_factory(spec: ActivationSpec) -> ActFactory:
    """An STGCN ``act_factory`` that puts ``spec[block][site]`` at each site."""
    return lambda block, site, channels: SpecActivation(spec[block][site])


@torch.no_grad()
def calibrated_stgcn(
    channels: list[list[int]],
    num_classes: int,
    spec: ActivationSpec,
    frames: int,
    num_persons: int = 2,
    seed: int = 0,
    batches: int = 4,
    batch_size: int = 8,
) -> STGCN:
    """A random STGCN with ``spec`` at its sites and BN running statistics of its own data.

    Edge importances and BN affines are drawn around 1 (as after training); the running
    statistics are cumulative averages over ``batches`` train-mode passes on N(0, 1) clips,
    so every pre-activation is roughly standardised, as in a trained network.
    Returns:
        the network in eval mode, float32.
    """
    torch.manual_seed(seed)
    net = STGCN(
        channels[0][0],
        num_classes,
        variant="custom",
        channels=channels,
        num_persons=num_persons,
        act_factory=spec_act_factory(spec),
    )
    for block in net.blocks:
        block.edge_importance.uniform_(0.5, 1.5)
    for module in net.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.weight.uniform_(0.5, 1.5)
            module.bias.uniform_(-0.2, 0.2)
            module.reset_running_stats()
            module.momentum = None
    net.train()
    for _ in range(batches):
        net(torch.randn(batch_size, channels[0][0], frames, NUM_JOINTS, num_persons))
    return net.eval()
