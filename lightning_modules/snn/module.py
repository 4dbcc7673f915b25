"""Image and event-frame classification with spiking nets: the reversible spiking node
(arXiv:2308.08649) against SpikingJelly's LIF.

The net (``arch``: spiking VGG or ResNet, ``lightning_modules/snn/nets.py``) runs T steps of
the chosen node (``node``: reversible | reversible_autograd | lif) and averages the logits
over time; the loss is cross-entropy on the averaged logits (direct training with surrogate
gradients). Logs ``{train,val,test}/{loss,acc}`` and ``val/acc_best``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from effml.checks import check_choice, check_range, with_defaults
from lightning_modules.base import check_op_backend
from lightning_modules.classification import ClassificationModule
from lightning_modules.snn.nets import ARCHS, LIF_RESETS, NODES, SpikingResNet, SpikingVGG


class SpikingClassifier(ClassificationModule):
    """Trains a spiking VGG/ResNet on (x, y) batches; x is (B, C, H, W) or (B, T, C, H, W).

    Args:
        in_channels, num_classes, image_size: from the datamodule (``model_kwargs()``).
        arch: "vgg" (``channels``) or "resnet" (``widths``, ``blocks``).
        node: "reversible", "reversible_autograd" or "lif".
        time_steps: T (for event frames, the datamodule's frames per sample).
        tau, v_threshold, surrogate_alpha: the node's constants, shared by every node kind.
        gamma: the reversible node's output weight of the previous membrane.
        backend: ``ops.revsnn`` backend (None: triton on CUDA, cpu otherwise).
        lif_reset: the LIF node's reset, "hard" (to 0, SpikingJelly's default) or "soft"
            (subtract the threshold, as the reversible node does).
        optimizer, scheduler: partial constructors (see :class:`ClassificationModule`).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        image_size: int,
        optimizer: Callable[..., torch.optim.Optimizer] | None,
        scheduler: Callable[..., object] | None = None,
        arch: str = "vgg",
        node: str = "reversible",
        time_steps: int = 4,
        channels: Sequence[int | str] = (64, "M", 128, "M", 256, "M"),
        widths: Sequence[int] = (32, 64, 128),
        blocks: Sequence[int] = (1, 1, 1),
        tau: float = 2.0,
        v_threshold: float = 1.0,
        gamma: float = 0.125,
        surrogate_alpha: float = 4.0,
        backend: str | None = None,
        lif_reset: str = "hard",
    ) -> None:
        super().__init__(optimizer, scheduler, num_classes)
        # plain lists, not Hydra's ListConfig, so checkpoints load with weights_only=True
        channels = [c if c == "M" else int(c) for c in channels]
        widths, blocks = [int(w) for w in widths], [int(b) for b in blocks]
        self.save_hyperparameters(ignore=["optimizer", "scheduler"], logger=False)
        self.check_config(self.hparams)
        node_kwargs = {
            "node": node,
            "tau": tau,
            "v_threshold": v_threshold,
            "gamma": gamma,
            "surrogate_alpha": surrogate_alpha,
            "backend": backend,
            "lif_reset": lif_reset,
        }
        shapes = (in_channels, num_classes, image_size)
        if arch == "vgg":
            self.net: SpikingVGG | SpikingResNet = SpikingVGG(
                *shapes, channels, time_steps, node_kwargs
            )
        else:
            self.net = SpikingResNet(*shapes, widths, blocks, time_steps, node_kwargs)

    @classmethod
    def check_config(cls, cfg: Mapping[str, Any]) -> None:
        """The classifier's (:class:`ClassificationModule`); known arch, node, reset and
        backend; τ > 1, threshold, surrogate slope and (reversible nodes) γ > 0; the chosen
        net's own rules (:meth:`SpikingVGG.check_config`, :meth:`SpikingResNet.check_config`)."""
        super().check_config(cfg)
        cfg = with_defaults(cls, cfg)
        check_choice(cfg, "arch", ARCHS)
        check_choice(cfg, "node", NODES)
        check_choice(cfg, "lif_reset", LIF_RESETS)
        check_op_backend(cfg)
        check_range(cfg, "tau", 1.0, None, low_open=True, example=2.0)
        check_range(cfg, "v_threshold", 0.0, None, low_open=True, example=1.0)
        check_range(cfg, "surrogate_alpha", 0.0, None, low_open=True, example=4.0)
        if cfg["node"] != "lif":
            check_range(cfg, "gamma", 0.0, None, low_open=True, example=0.125)
        if cfg["arch"] == "vgg":
            SpikingVGG.check_config({k: cfg[k] for k in ("time_steps", "channels")})
        else:
            SpikingResNet.check_config({k: cfg[k] for k in ("time_steps", "widths", "blocks")})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (B, num_classes)
