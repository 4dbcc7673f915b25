"""Spiking VGG and ResNet with T time steps, built from a chosen multi-step spiking node.

Every layer runs time-first: a sequence (T, B, C, H, W) goes through convolutions and batch
norms folded to (T·B, C, H, W) and through the node as a whole sequence. Static images are
direct-encoded: the first conv + BN runs once on the image and its output is the node's input
at every step; event frames (B, T, C, H, W) enter step by step. The class logits are the mean
over T of the classifier's outputs.

Nodes (``node=``):
- ``reversible``: ``ops.revsnn.ReversibleLIFNode`` with the one-sweep backward;
- ``reversible_autograd``: the same node with standard reversible backpropagation;
- ``lif``: SpikingJelly's ``LIFNode`` (multi-step, ``store_v_seq=False``, the same τ,
  threshold and sigmoid surrogate); ``lif_reset="hard"`` (SpikingJelly's default, reset to 0)
  or ``"soft"`` (``v_reset=None``: subtract θ, the reset the reversible node uses).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from effml.checks import check_int
from effml.errors import ConfigError, MissingToolError
from ops.revsnn import ReversibleLIFNode

NODES = ("reversible", "reversible_autograd", "lif")
LIF_RESETS = ("hard", "soft")
ARCHS = ("vgg", "resnet")


class SpikingJellyLIF(nn.Module):
    """SpikingJelly's multi-step ``LIFNode`` from a zero state on every call (time first)."""

    def __init__(
        self,
        tau: float = 2.0,
        v_threshold: float = 1.0,
        surrogate_alpha: float = 4.0,
        reset: str = "hard",
    ):
        super().__init__()
        if reset not in LIF_RESETS:
            raise ValueError(f"lif_reset={reset!r}: choose one of {LIF_RESETS}")
        try:
            from spikingjelly.activation_based import neuron, surrogate
        except ImportError:
            raise MissingToolError(
                "model.node=lif needs SpikingJelly, which is not installed: "
                "pip install -e '.[snn]' (or make setup), or use model.node=reversible"
            ) from None
        self.node = neuron.LIFNode(
            tau=tau,
            v_threshold=v_threshold,
            v_reset=0.0 if reset == "hard" else None,
            surrogate_function=surrogate.Sigmoid(alpha=surrogate_alpha),
            step_mode="m",
            store_v_seq=False,
        )

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:  # (T, B, ...)
        self.node.reset()
        return self.node(x_seq)


def make_node(
    node: str,
    tau: float = 2.0,
    v_threshold: float = 1.0,
    gamma: float = 0.125,
    surrogate_alpha: float = 4.0,
    backend: str | None = None,
    lif_reset: str = "hard",
) -> nn.Module:
    """A fresh multi-step node of the given kind (``lif_reset`` only for ``node="lif"``)."""
    if node == "lif":
        return SpikingJellyLIF(tau, v_threshold, surrogate_alpha, lif_reset)
    if node in ("reversible", "reversible_autograd"):
        backward = "sweep" if node == "reversible" else "recompute"
        return ReversibleLIFNode(tau, v_threshold, gamma, surrogate_alpha, backend, backward)
    raise ValueError(f"node={node!r}: choose one of {NODES}")


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def fold(fn: nn.Module, x_seq: torch.Tensor) -> torch.Tensor:
    """Apply a per-frame module to a (T, B, ...) sequence through (T·B, ...)."""
    y = fn(x_seq.flatten(0, 1))
    return y.view(*x_seq.shape[:2], *y.shape[1:])


class _Folded(nn.Module):
    """A per-frame module applied to a (T, B, ...) sequence."""

    def __init__(self, fn: nn.Module) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        return fold(self.fn, x_seq)


class ConvBN(nn.Sequential):
    """3×3 conv (no bias) + BatchNorm2d, the pre-node layer of every block."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__(
            nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(c_out)
        )


class SpikingNet(nn.Module):
    """What the spiking VGG and ResNet share: the input encoding and the time-averaged head."""

    def __init__(self, time_steps: int, node_kwargs: dict) -> None:
        super().__init__()
        SpikingNet.check_config({"time_steps": time_steps})
        self.time_steps = int(time_steps)
        self.node_kwargs = dict(node_kwargs)
        make_node(**self.node_kwargs)  # fail early on a bad node kind or constant

    @classmethod
    def check_config(cls, cfg: Mapping[str, Any]) -> None:
        """At least one time step."""
        check_int(cfg, "time_steps", minimum=1, example=4)

    def node(self) -> nn.Module:
        return make_node(**self.node_kwargs)

    def encode(self, x: torch.Tensor, stem: nn.Module) -> torch.Tensor:
        """(B, C, H, W) → stem once, repeated T times; (B, T, C, H, W) frames → stem per step."""
        if x.dim() == 4:
            z = stem(x)
            return z.unsqueeze(0).expand(self.time_steps, *z.shape).contiguous()
        if x.dim() == 5:
            return fold(stem, x.transpose(0, 1).contiguous())
        raise ValueError(
            f"input of shape {tuple(x.shape)}: expected (B, C, H, W) or (B, T, C, H, W)"
        )


class SpikingVGG(SpikingNet):
    """[conv-BN-node | avg-pool 2] per entry of ``channels`` ("M" pools), flatten, linear.

    Args:
        in_channels, num_classes, image_size: data shapes (``image_size`` is H = W).
        channels: e.g. [64, "M", 128, "M", 256, "M"]; the first entry must be a width.
        time_steps: T.
        node_kwargs: ``make_node``'s arguments (``node``, ``tau``, ...).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        image_size: int,
        channels: Sequence[int | str],
        time_steps: int,
        node_kwargs: dict,
    ) -> None:
        super().__init__(time_steps, node_kwargs)
        self.check_config({"channels": channels})
        self.stem = ConvBN(in_channels, int(channels[0]))
        layers: list[nn.Module] = [self.node()]
        width, size = int(channels[0]), int(image_size)
        for entry in channels[1:]:
            if entry == "M":
                layers.append(_Folded(nn.AvgPool2d(2)))
                size //= 2
            else:
                layers += [_Folded(ConvBN(width, int(entry))), self.node()]
                width = int(entry)
        if size < 1:
            raise ConfigError(
                "channels",
                list(channels),
                f"pools a {image_size}-pixel image away",
                fix="Use fewer M entries (each halves the image)",
            )
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(width * size * size, num_classes)

    @classmethod
    def check_config(cls, cfg: Mapping[str, Any]) -> None:
        """Time steps (:class:`SpikingNet`); ``channels`` positive widths and "M", a width
        first."""
        super().check_config(cfg)
        channels = cfg.get("channels")
        if channels is None:
            return
        entries = list(channels)
        widths_ok = all(c == "M" or _positive_int(c) for c in entries)
        if not entries or entries[0] == "M" or not widths_ok:
            raise ConfigError(
                "channels",
                entries,
                'must be positive widths and "M" (2×2 pooling); start with a width',
                example=[64, "M", 128, "M"],
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.features(self.encode(x, self.stem))  # (T, B, C, h, w)
        return self.classifier(z.flatten(2)).mean(0)  # (B, num_classes)


class SpikingBasicBlock(nn.Module):
    """conv-BN-node-conv-BN plus the shortcut (1×1 conv-BN when the shape changes), then node."""

    def __init__(self, c_in: int, c_out: int, stride: int, net: SpikingNet) -> None:
        super().__init__()
        self.conv1, self.node1 = ConvBN(c_in, c_out, stride), net.node()
        self.conv2, self.node2 = ConvBN(c_out, c_out), net.node()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:  # (T, B, C, H, W)
        z = self.node1(fold(self.conv1, x_seq))
        return self.node2(fold(self.conv2, z) + fold(self.shortcut, x_seq))


class SpikingResNet(SpikingNet):
    """Stem conv-BN-node, then stages of basic blocks (stride 2 from the second), avg-pool, linear.

    Args:
        widths: channels per stage, e.g. [32, 64, 128].
        blocks: basic blocks per stage, e.g. [1, 1, 1].
        other arguments as in :class:`SpikingVGG`.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        image_size: int,
        widths: Sequence[int],
        blocks: Sequence[int],
        time_steps: int,
        node_kwargs: dict,
    ) -> None:
        super().__init__(time_steps, node_kwargs)
        self.check_config({"widths": widths, "blocks": blocks})
        self.stem = ConvBN(in_channels, int(widths[0]))
        self.stem_node = self.node()
        stages, c_in = [], int(widths[0])
        for i, (width, count) in enumerate(zip(widths, blocks, strict=True)):
            for j in range(int(count)):
                stride = 2 if i > 0 and j == 0 else 1
                stages.append(SpikingBasicBlock(c_in, int(width), stride, self))
                c_in = int(width)
        self.stages = nn.Sequential(*stages)
        self.classifier = nn.Linear(c_in, num_classes)

    @classmethod
    def check_config(cls, cfg: Mapping[str, Any]) -> None:
        """Time steps (:class:`SpikingNet`); ``widths`` and ``blocks`` positive integers, one
        of each per stage."""
        super().check_config(cfg)
        widths, blocks = cfg.get("widths"), cfg.get("blocks")
        for key, values, example in (
            ("widths", widths, [32, 64, 128]),
            ("blocks", blocks, [1, 1, 1]),
        ):
            if values is not None and not all(_positive_int(v) for v in values):
                raise ConfigError(key, list(values), "must be positive integers", example)
        if widths is not None and not widths:
            raise ConfigError("widths", [], "needs at least one stage", example=[32, 64, 128])
        if widths is not None and blocks is not None and len(widths) != len(blocks):
            raise ConfigError(
                "blocks",
                list(blocks),
                f"must give one per stage of widths={list(widths)}",
                example=[1] * len(widths),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.stages(self.stem_node(self.encode(x, self.stem)))  # (T, B, C, h, w)
        return self.classifier(z.mean(dim=(3, 4))).mean(0)  # (B, num_classes)
