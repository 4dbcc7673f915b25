"""Layer shape tables of the operator benchmark: the convolutions of ResNet-18/50 and VGG-16
and the GEMMs of a 7B decoder, the workloads arXiv:2311.04417 times operators on.

Convolutions are the distinct ``ConvShape`` of each torchvision net at a 224×224 input (a shape
used by several layers appears once); H and W are the layer's input size. ResNet-50 is
torchvision's v1.5 (stride 2 in the 3×3 conv of a bottleneck, not the first 1×1).
"""

from __future__ import annotations

from typing import NamedTuple


class ConvShape(NamedTuple):
    """One 2-D convolution: C input channels, K output channels, H×W input, R×S kernel."""

    c: int
    k: int
    h: int
    w: int
    r: int
    s: int
    stride: int
    pad: int


class GemmShape(NamedTuple):
    """One projection Y (tokens × n) = X (tokens × k) · W (k × n) of a transformer layer."""

    name: str
    n: int
    k: int


RESNET18 = (
    ConvShape(3, 64, 224, 224, 7, 7, 2, 3),  # conv1
    ConvShape(64, 64, 56, 56, 3, 3, 1, 1),  # layer1
    ConvShape(64, 128, 56, 56, 3, 3, 2, 1),  # layer2: first 3×3, its 1×1 shortcut, the rest
    ConvShape(64, 128, 56, 56, 1, 1, 2, 0),
    ConvShape(128, 128, 28, 28, 3, 3, 1, 1),
    ConvShape(128, 256, 28, 28, 3, 3, 2, 1),  # layer3
    ConvShape(128, 256, 28, 28, 1, 1, 2, 0),
    ConvShape(256, 256, 14, 14, 3, 3, 1, 1),
    ConvShape(256, 512, 14, 14, 3, 3, 2, 1),  # layer4
    ConvShape(256, 512, 14, 14, 1, 1, 2, 0),
    ConvShape(512, 512, 7, 7, 3, 3, 1, 1),
)


def _bottleneck_stage(c_in: int, width: int, h: int, stride: int) -> tuple[ConvShape, ...]:
    """Distinct convs of a ResNet-50 stage: block 1 (with its shortcut), then blocks 2..n."""
    out, h_out = 4 * width, h // stride
    return (
        ConvShape(c_in, width, h, h, 1, 1, 1, 0),  # block 1: 1×1 reduce
        ConvShape(width, width, h, h, 3, 3, stride, 1),  # block 1: 3×3 (strided)
        ConvShape(width, out, h_out, h_out, 1, 1, 1, 0),  # every block: 1×1 expand
        ConvShape(c_in, out, h, h, 1, 1, stride, 0),  # block 1: shortcut
        ConvShape(out, width, h_out, h_out, 1, 1, 1, 0),  # blocks 2..n: 1×1 reduce
        ConvShape(width, width, h_out, h_out, 3, 3, 1, 1),  # blocks 2..n: 3×3
    )


def _distinct(shapes: tuple[ConvShape, ...]) -> tuple[ConvShape, ...]:
    return tuple(dict.fromkeys(shapes))


RESNET50 = _distinct(
    (
        ConvShape(3, 64, 224, 224, 7, 7, 2, 3),  # conv1
        *_bottleneck_stage(64, 64, 56, 1),
        *_bottleneck_stage(256, 128, 56, 2),
        *_bottleneck_stage(512, 256, 28, 2),
        *_bottleneck_stage(1024, 512, 14, 2),
    )
)

VGG16 = (
    ConvShape(3, 64, 224, 224, 3, 3, 1, 1),
    ConvShape(64, 64, 224, 224, 3, 3, 1, 1),
    ConvShape(64, 128, 112, 112, 3, 3, 1, 1),
    ConvShape(128, 128, 112, 112, 3, 3, 1, 1),
    ConvShape(128, 256, 56, 56, 3, 3, 1, 1),
    ConvShape(256, 256, 56, 56, 3, 3, 1, 1),
    ConvShape(256, 512, 28, 28, 3, 3, 1, 1),
    ConvShape(512, 512, 28, 28, 3, 3, 1, 1),
    ConvShape(512, 512, 14, 14, 3, 3, 1, 1),
)

CONV_NETS: dict[str, tuple[ConvShape, ...]] = {
    "resnet18": RESNET18,
    "resnet50": RESNET50,
    "vgg16": VGG16,
}

# A 7B decoder (LLaMA-7B: hidden 4096, SwiGLU intermediate 11008): q, k, v and o are
# 4096 → 4096, gate and up 4096 → 11008, down 11008 → 4096.
LLM_7B_HIDDEN = 4096
LLM_7B_INTERMEDIATE = 11008
LLM_7B_GEMMS = (
    GemmShape("attn_proj", LLM_7B_HIDDEN, LLM_7B_HIDDEN),
    GemmShape("mlp_up", LLM_7B_INTERMEDIATE, LLM_7B_HIDDEN),
    GemmShape("mlp_down", LLM_7B_HIDDEN, LLM_7B_INTERMEDIATE),
)
LLM_TOKENS = (1, 16, 128, 512, 1024, 2048, 4096)
