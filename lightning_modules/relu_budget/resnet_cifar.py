"""The CIFAR/Tiny-ImageNet nets of SNL (Cho et al., ICML 2022) and AutoReP (Peng et al.,
ICCV 2023), with every ReLU built by a factory so that it can become a masked site.

- ``resnet18_in``: ResNet-18 with a 3×3 stride-1 stem and no stem ReLU; two ReLUs per basic
  block (after bn1, after the residual add). 491,520 ReLUs at 32×32 (width 64).
- ``wide_resnet``: pre-activation WRN-d-k (Zagoruyko & Komodakis) as SNL has it: no ReLU
  between the last batch norm and the pooling. WRN-22-8 has 1,359,872 ReLUs at 32×32.

The factory is called as ``act(shape)`` with the per-sample shape (C, H, W) the site sees,
known at construction from ``image_size``; ``nn.ReLU`` ignores it, masked sites size their
per-element parameters with it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from effml.checks import check_int
from effml.errors import ConfigError

ActFactory = Callable[[tuple[int, int, int]], nn.Module]


def parse_arch(arch: str) -> tuple[int, int] | None:
    """None for ``resnet18_in``; (depth, widen) for ``wrn_<depth>_<widen>``, depth 6n + 4."""
    if arch == "resnet18_in":
        return None
    example = "wrn_22_8"
    try:
        depth, widen = (int(v) for v in str(arch).removeprefix("wrn_").split("_"))
    except ValueError:
        depth = widen = 0
    if not str(arch).startswith("wrn_") or depth < 1 or widen < 1:
        problem = "choose resnet18_in or wrn_<depth>_<widen>"
        raise ConfigError("arch", arch, problem, example=example)
    if (depth - 4) % 6:
        problem = f"a WRN has depth 6n + 4 (e.g. 16, 22, 28), not {depth}"
        raise ConfigError("arch", arch, problem, example=example)
    return depth, widen


def check_net_config(cfg: Mapping[str, Any]) -> None:
    """A known ``arch``, a positive ``width`` (or None: the paper's) and, for ``resnet18_in``,
    an ``image_size`` that is a multiple of 8."""
    wrn = parse_arch(cfg.get("arch", "resnet18_in"))
    check_int(cfg, "width", minimum=1, example=16)
    image_size = cfg.get("image_size")
    check_int(cfg, "image_size", minimum=8, example=32)
    if wrn is None and image_size is not None and image_size % 8:
        problem = "resnet18_in needs a multiple of 8"
        raise ConfigError("image_size", image_size, problem, example=32)


def relu_factory(shape: tuple[int, int, int]) -> nn.Module:
    return nn.ReLU()


class BasicBlock(nn.Module):
    """conv-bn-act-conv-bn (+ shortcut) then act; ``size`` is the output's H = W."""

    def __init__(self, in_planes: int, planes: int, stride: int, size: int, act: ActFactory):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.act1 = act((planes, size, size))
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )
        self.act2 = act((planes, size, size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act2(out + self.shortcut(x))


class ResNetIN(nn.Module):
    """SNL's ``ResNet_IN``: stem conv + bn (no ReLU), four stages, average pool, linear.

    Args:
        blocks: basic blocks per stage ((2, 2, 2, 2) is ResNet-18).
        width: stem/first-stage channels (64 in the paper; smaller for CPU runs).
    """

    def __init__(
        self,
        blocks: tuple[int, ...] = (2, 2, 2, 2),
        num_classes: int = 10,
        in_channels: int = 3,
        image_size: int = 32,
        width: int = 64,
        act: ActFactory = relu_factory,
    ) -> None:
        super().__init__()
        check_net_config({"arch": "resnet18_in", "image_size": image_size, "width": width})
        self.conv1 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        layers, planes, size, in_planes = [], width, image_size, width
        for stage, count in enumerate(blocks):
            stride = 1 if stage == 0 else 2
            for b in range(count):
                s = stride if b == 0 else 1
                size //= s
                layers.append(BasicBlock(in_planes, planes, s, size, act))
                in_planes = planes
            planes *= 2
        self.layers = nn.Sequential(*layers)
        self.linear = nn.Linear(in_planes, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(self.bn1(self.conv1(x)))  # (B, C, H/8, W/8)
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


class WideBlock(nn.Module):
    """Pre-activation wide block: bn-act-conv-bn-act-conv + shortcut (1×1 conv when the
    width or stride changes, taken from the activated input as in WRN)."""

    def __init__(self, in_planes: int, planes: int, stride: int, size_in: int, act: ActFactory):
        super().__init__()
        size_out = size_in // stride
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.act1 = act((in_planes, size_in, size_in))
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.act2 = act((planes, size_out, size_out))
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.equal = in_planes == planes and stride == 1
        self.shortcut = None if self.equal else nn.Conv2d(in_planes, planes, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.act1(self.bn1(x))
        out = self.conv2(self.act2(self.bn2(self.conv1(pre))))
        return out + (x if self.shortcut is None else self.shortcut(pre))


class WideResNet(nn.Module):
    """WRN-``depth``-``widen`` for 32×32 (or 64×64) inputs; SNL's variant (no final ReLU)."""

    def __init__(
        self,
        depth: int = 22,
        widen: int = 8,
        num_classes: int = 10,
        in_channels: int = 3,
        image_size: int = 32,
        base: int = 16,
        act: ActFactory = relu_factory,
    ) -> None:
        super().__init__()
        check_net_config({"arch": f"wrn_{depth}_{widen}", "image_size": image_size, "width": base})
        n = (depth - 4) // 6
        widths = [base * widen, 2 * base * widen, 4 * base * widen]
        self.conv1 = nn.Conv2d(in_channels, base, 3, 1, 1, bias=False)
        blocks, in_planes, size = [], base, image_size
        for g, planes in enumerate(widths):
            for b in range(n):
                stride = 2 if g > 0 and b == 0 else 1
                blocks.append(WideBlock(in_planes, planes, stride, size, act))
                size //= stride
                in_planes = planes
        self.blocks = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(in_planes)
        self.fc = nn.Linear(in_planes, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn(self.blocks(self.conv1(x)))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))


def build_net(
    arch: str,
    num_classes: int,
    in_channels: int,
    image_size: int,
    width: int | None = None,
    act: ActFactory = relu_factory,
) -> nn.Module:
    """``resnet18_in`` (``width`` default 64) or ``wrn_<depth>_<widen>`` (``width`` = base 16)."""
    wrn = parse_arch(arch)
    if wrn is None:
        return ResNetIN((2, 2, 2, 2), num_classes, in_channels, image_size, width or 64, act)
    depth, widen = wrn
    return WideResNet(depth, widen, num_classes, in_channels, image_size, width or 16, act)
