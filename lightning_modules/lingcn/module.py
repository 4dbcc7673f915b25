"""LinGCN (Peng et al., NeurIPS 2023, arXiv:2309.14331): ST-GCN with structural
linearization and node-wise polynomial activations, trained in stages with distillation from
the ReLU baseline.

Stages (``stage=``):
- ``baseline``: the ReLU ST-GCN, cross-entropy.
- ``linearize``: every activation site is ``g·ReLU(x) + (1 − g)·x`` with per-node gates g from
  the paired structural gate of each block (``ops.polyact.paired_gates``); loss
  ``(1 − η)·CE + η·KD_T + (φ/2)·Σ AT + μ·kept/total`` against the frozen baseline teacher.
- ``poly``: gates frozen from ``linearize``; kept sites become the node-wise polynomial
  ``P(x) = s·w2·x² + w1·x + b`` (s = 0.01, b frozen at 0, w clamped to [−2, 2]); the same
  distillation with the stage's η, φ and no μ.
- ``cryptogcn``: the comparison network, CryptoGCN-style: the same ST-GCN with every ReLU
  replaced by a plain x² (``cryptogcn_act="square"``; no structural linearization, no
  node-wise coefficients), started from the baseline and distilled the same way; its
  encrypted circuit is the baseline LinGCN is compared with. ``cryptogcn_act="poly"`` keeps
  LinGCN's node-wise polynomial at every site instead.

Training x² from the ReLU weights: with the baseline's batch-norm affines every square sees
a zero-mean input, and six stacked squares (degree 64, and an identity residual that carries
one square into the next) blow activations up to ~1e8 and training to chance. Shifting each
site's input by an offset B through the batch-norm bias before it and using c·x² with the
fixed constant c = 1/(2B) (:func:`init_square_offsets`) makes the square start near-linear,
c·(v + B)² = B/2 + v + v²/(2B), as LinGCN's polynomials start near the identity. The shift is
an ordinary bias and c a constant (one ct×ct square per site under CKKS, like x²): the
network is the x² network, initialised so that it trains.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from effml.checks import check_choice, check_range, with_defaults
from effml.errors import CheckpointError, ConfigError
from lightning_modules.checkpoints import load_net_state, load_state
from lightning_modules.classification import ClassificationModule
from lightning_modules.distill import at_loss, kd_loss
from lightning_modules.lingcn.stgcn import STGCN
from ops.polyact import PolyAct, paired_gates, poly_act

STAGES = ("baseline", "linearize", "poly", "cryptogcn")
CRYPTOGCN_ACTS = ("square", "poly")
POLY_SCALE = 0.01
POLY_CLAMP = (-2.0, 2.0)


class GateState:
    """The current (blocks, 2, V) gates, shared by a network's activation sites."""

    def __init__(self) -> None:
        self.gates: torch.Tensor | None = None


class LinearizedSite(nn.Module):
    """``g·ReLU(x) + (1 − g)·x`` with node-wise gates read from a shared :class:`GateState`."""

    def __init__(self, state: GateState, block: int, site: int) -> None:
        super().__init__()
        self.state, self.block, self.site = state, block, site

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, T, V)
        gate = self.state.gates[self.block, self.site]  # (V,)
        return poly_act(x, gate.view(1, 1, -1), keep="relu", drop="identity")


class PolySite(nn.Module):
    """``g·P(x) + (1 − g)·x`` with frozen 0/1 node gates and node-wise polynomial P."""

    def __init__(self, num_nodes: int) -> None:
        super().__init__()
        self.register_buffer("gate", torch.ones(1, 1, num_nodes))
        self.poly = PolyAct(
            (1, 1, num_nodes),
            keep="poly",
            drop="identity",
            scale=POLY_SCALE,
            clamp=POLY_CLAMP,
            init="lingcn",
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, T, V)
        return self.poly(x, self.gate)


class SquareSite(nn.Module):
    """CryptoGCN's activation: y = c·x² at every node and channel, c a fixed constant.

    c = 1 is the plain square; :func:`init_square_offsets` sets c = 1/(2B). Under CKKS the
    constant costs nothing: it is relabelled into the scale of the one ct×ct square (he.fusion),
    or equally folded into the next layer's plaintext weights.
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("scale", torch.tensor(1.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, T, V)
        return self.scale * x * x


@torch.no_grad()
def init_square_offsets(net: STGCN, offset: float) -> None:
    """Put every x² site of a ReLU-trained ``net`` in its near-linear regime, in place.

    Each site gets c = 1/(2B), B = ``offset``, and its input v is shifted to v + B through the
    batch-norm bias that produces it, so c·(v + B)² = B/2 + v + v²/(2B): the activation starts
    as the identity plus a small square. The constant B/2 a site passes on is cancelled in the
    next graph conv's and residual conv's bias and in the head's; an identity residual carries
    it into the next site, whose shift is B/2 instead of B. What is left is v²/(2B) per site,
    plus the constant's edge effect in the temporal conv, whose zero padding no bias cancels.

    (The same function with c = 1 would put √c into the batch-norm scales, but then SGD moves
    the rescaled parameters 1/c times faster in function space and the plain x² net diverges.)
    """
    if offset <= 0:
        raise ValueError(f"square_offset={offset!r}: must be > 0 (e.g. 8)")

    def cancel(conv: nn.Conv2d) -> None:
        """conv(x + B/2) = conv(x) for a 1×1 conv."""
        conv.bias.sub_(conv.weight.flatten(1).sum(1) * offset / 2)

    for b, block in enumerate(net.blocks):
        if b > 0:
            cancel(block.gcn)
        block.bn1.bias.add_(offset)
        if isinstance(block.residual, nn.Identity):
            block.bn2.bias.add_(offset / 2)  # the residual brings the other B/2
        else:
            block.bn2.bias.add_(offset)
            if block.residual is not None:
                cancel(block.residual[0])
        for site in (block.act1, block.act2):
            site.scale.fill_(1.0 / (2.0 * offset))
    cancel(net.head)


class LinGCNModule(ClassificationModule):
    """One LinGCN stage over skeleton clips; logs ``{train,val,test}/{loss,acc}``,
    ``val/acc_best``, ``{val,test}/gates_kept`` and the distillation terms ``train/{ce,kd,at}``
    (``train/gate_density`` in ``linearize``).

    Args:
        stage: one of ``STAGES``.
        in_channels, num_classes, num_nodes: from the datamodule.
        variant, channels, dropout: the :class:`STGCN`.
        teacher_ckpt: the baseline stage's checkpoint (teacher, and the student's start for
            ``linearize``/``cryptogcn``).
        init_ckpt: the checkpoint the student starts from (``poly``: the linearize stage's;
            its gates are frozen from it).
        eta, phi, temperature: distillation weights (KD and attention transfer).
        mu: the gate penalty weight (``linearize``).
        gate_init: the aux init range (LinGCN: U(5e-4, 1e-3), all gates kept at start).
        cryptogcn_act: the ``cryptogcn`` stage's activation: ``square`` (x², CryptoGCN) or
            ``poly`` (LinGCN's node-wise polynomial at every site).
        square_offset: B of :func:`init_square_offsets` (``cryptogcn_act="square"``); None
            keeps the baseline's affines and c = 1 (plain x², which diverges here).
    """

    def __init__(
        self,
        optimizer: Callable[..., torch.optim.Optimizer],
        in_channels: int,
        num_classes: int,
        stage: str = "baseline",
        num_nodes: int = 25,
        variant: str = "stgcn_3_128",
        channels: list | None = None,
        dropout: float = 0.0,
        scheduler: Callable[..., object] | None = None,
        teacher_ckpt: str | None = None,
        init_ckpt: str | None = None,
        eta: float = 0.9,
        phi: float = 1000.0,
        temperature: float = 4.0,
        mu: float = 1.0,
        gate_init: tuple[float, float] = (5e-4, 1e-3),
        num_frames: int | None = None,
        cryptogcn_act: str = "square",
        square_offset: float | None = 8.0,
    ) -> None:
        super().__init__(optimizer, scheduler, num_classes)
        # plain Python values, so checkpoints load with torch.load(weights_only=True)
        channels = [[int(c) for c in block] for block in channels] if channels else None
        gate_init = tuple(float(g) for g in gate_init)
        self.save_hyperparameters(ignore=["optimizer", "scheduler"], logger=False)
        self.check_config(self.hparams)
        # the checkpoints a pipeline passes from earlier stages, so not a check_config rule
        if stage != "baseline" and not teacher_ckpt:
            fix = "Give teacher_ckpt=<the baseline stage's checkpoint>"
            raise ConfigError("teacher_ckpt", None, f"stage={stage} distils from it", fix=fix)
        if stage == "poly" and not init_ckpt:
            fix = "Give init_ckpt=<the linearize stage's checkpoint>"
            raise ConfigError("init_ckpt", None, "stage=poly starts from it", fix=fix)
        self.stage = stage
        self.squares = stage == "cryptogcn" and cryptogcn_act == "square"
        net_kwargs = dict(
            in_channels=in_channels,
            num_classes=num_classes,
            variant=variant,
            channels=channels,
            num_nodes=num_nodes,
            dropout=dropout,
        )
        self.gate_state = GateState()
        factory = self._site_factory(stage, num_nodes)
        self.net = STGCN(**net_kwargs, act_factory=factory)
        num_blocks = len(self.net.blocks)
        if stage == "linearize":
            low, high = gate_init
            self.aux = nn.Parameter(torch.empty(num_blocks, 2, num_nodes).uniform_(low, high))
        if teacher_ckpt:
            teacher_state = load_net_state(teacher_ckpt)
            self.teacher = STGCN(**net_kwargs)
            self.teacher.load_state_dict(teacher_state)
            self.teacher.requires_grad_(False).eval()
            if stage in ("linearize", "cryptogcn"):
                self.net.load_state_dict(teacher_state, strict=False)
            if self.squares and square_offset is not None:
                init_square_offsets(self.net, square_offset)
        if stage == "poly":
            self._init_from_linearized(init_ckpt)

    @classmethod
    def check_config(cls, cfg: Mapping[str, Any]) -> None:
        """The classifier's (:class:`ClassificationModule`); a known stage and cryptogcn_act;
        eta in [0, 1]; phi, mu >= 0; temperature, square_offset > 0; gate_init a range
        [low, high]; the ST-GCN's own rules (:meth:`STGCN.check_config`)."""
        super().check_config(cfg)
        cfg = with_defaults(cls, cfg)
        check_choice(cfg, "stage", STAGES)
        check_choice(cfg, "cryptogcn_act", CRYPTOGCN_ACTS)
        check_range(cfg, "eta", 0.0, 1.0, example=0.9)
        check_range(cfg, "phi", 0.0, None, example=1000.0)
        check_range(cfg, "mu", 0.0, None, example=1.0)
        check_range(cfg, "temperature", 0.0, None, low_open=True, example=4.0)
        check_range(cfg, "square_offset", 0.0, None, low_open=True, example=8.0)
        gate_init = cfg["gate_init"]
        if not (
            len(gate_init) == 2
            and all(isinstance(g, (int, float)) and not isinstance(g, bool) for g in gate_init)
            and gate_init[0] <= gate_init[1]
        ):
            problem = "must be [low, high] of the gates' uniform init, low <= high"
            raise ConfigError("gate_init", list(gate_init), problem, example=[5e-4, 1e-3])
        net_keys = ("in_channels", "num_classes", "variant", "channels", "num_nodes", "dropout")
        STGCN.check_config({key: cfg[key] for key in net_keys if key in cfg})

    def _site_factory(self, stage: str, num_nodes: int) -> Callable[[int, int, int], nn.Module]:
        if stage == "baseline":
            return lambda block, site, channels: nn.ReLU()
        if stage == "linearize":
            return lambda block, site, channels: LinearizedSite(self.gate_state, block, site)
        if self.squares:
            return lambda block, site, channels: SquareSite()
        return lambda block, site, channels: PolySite(num_nodes)

    def _init_from_linearized(self, init_ckpt: str) -> None:
        """Student weights and frozen 0/1 gates from the linearize stage."""
        state = load_state(init_ckpt)
        if "aux" not in state:
            raise CheckpointError(
                f"init_ckpt={init_ckpt}: has no gates ('aux'). Give the linearize stage's "
                "checkpoint"
            )
        net_state = {k.removeprefix("net."): v for k, v in state.items() if k.startswith("net.")}
        self.net.load_state_dict(net_state, strict=False)
        gates = paired_gates(state["aux"]).detach()  # (blocks, 2, V)
        for b, block in enumerate(self.net.blocks):
            block.act1.gate.copy_(gates[b, 0].view(1, 1, -1))
            block.act2.gate.copy_(gates[b, 1].view(1, 1, -1))

    def gates(self) -> torch.Tensor:
        """The current 0/1 gates (blocks, 2, V): learned (linearize), frozen (poly), else 1."""
        if self.stage == "linearize":
            return paired_gates(self.aux)
        if self.stage in ("poly", "cryptogcn") and not self.squares:
            return torch.stack(
                [
                    torch.stack([b.act1.gate.flatten(), b.act2.gate.flatten()])
                    for b in self.net.blocks
                ]
            )
        blocks, nodes = len(self.net.blocks), self.hparams.num_nodes
        return torch.ones(blocks, 2, nodes, device=self.device)

    def forward(self, x: torch.Tensor, return_features: bool = False):
        if self.stage == "linearize":
            self.gate_state.gates = paired_gates(self.aux)
        return self.net(x, return_features=return_features)

    def training_loss(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """CE (baseline); else (1 − η)·CE + η·KD_T + (φ/2)·Σ AT (+ μ·density in linearize)."""
        if self.teacher is None:
            logits = self(x)
            return F.cross_entropy(logits, y), logits
        logits, feats = self(x, return_features=True)
        with torch.no_grad():
            t_logits, t_feats = self.teacher(x, return_features=True)
        hp = self.hparams
        ce = F.cross_entropy(logits, y)
        kd = kd_loss(logits, t_logits, hp.temperature)
        at = at_loss(feats, t_feats)
        loss = (1 - hp.eta) * ce + hp.eta * kd + hp.phi / 2 * at
        self.log_dict(
            {"train/ce": ce, "train/kd": kd, "train/at": at}, on_step=False, on_epoch=True
        )
        if self.stage == "linearize":
            gates = self.gate_state.gates
            density = gates.sum() / gates.numel()
            loss = loss + hp.mu * density
            self.log("train/gate_density", density, on_step=False, on_epoch=True)
        return loss, logits

    def validation_epoch_metrics(self, val_acc: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"val/gates_kept": self.gates().sum()}

    def test_epoch_metrics(self) -> dict[str, torch.Tensor]:
        return {"test/gates_kept": self.gates().sum()}


def site_coefficients(site: nn.Module, num_nodes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A trained site as per-node (a2, a1, a0) of a2·x² + a1·x + a0 and its 0/1 gate.

    Returns:
        coeffs (V, 3) float64 and kept (V,) bool.
    """
    if isinstance(site, SquareSite):
        coeffs = torch.zeros(num_nodes, 3, dtype=torch.float64)
        coeffs[:, 0] = site.scale.double()
        return coeffs, torch.ones(num_nodes, dtype=torch.bool)
    if isinstance(site, PolySite):
        low, high = POLY_CLAMP
        poly = site.poly
        a2 = POLY_SCALE * poly.w2.detach().clamp(low, high)
        a1 = poly.w1.detach().clamp(low, high)
        coeffs = torch.stack([c.flatten().double() for c in (a2, a1, poly.w0.detach())], dim=1)
        return coeffs, site.gate.flatten().bool()
    raise TypeError(
        f"{type(site).__name__} has no polynomial form: only the poly and "
        "cryptogcn stages can be encrypted"
    )
