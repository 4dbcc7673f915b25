"""DeeDiff (arXiv:2309.17074): per-layer uncertainty estimation, the uncertainty-aware
layer-wise loss, and early-exit sampling on a U-ViT.

Every block ``i < depth − 1`` gets an uncertainty module; its hidden state is decoded by the
model's shared output head into an intermediate prediction ``g_i(h_i)``. Training
(arXiv:2309.17074 §3.2-3.3), per sample, with ``d_i = g_i(h_i) − ε``:

- pseudo target ``û_i = tanh(mean|d_i|)`` (eq. 5), uncertainty loss
  ``L_u = Σ_i (u_i − û_i)²`` (eq. 6);
- uncertainty-aware layer-wise loss ``L_UAL = Σ_i (1 − u_i) · mean(d_i²)`` (eq. 7);
- total ``L = L_simple + λ L_u + β L_UAL`` (eq. 8), λ = β = 1 in the paper.

Sampling exits at the first block whose uncertainty is below the threshold (per sample), or,
AdaDiff's rule, when the batch-mean uncertainty stays below it for ``patience`` blocks.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from effml.checks import check_choice, check_int, check_range, with_defaults
from effml.errors import CheckpointError
from lightning_modules.checkpoints import MODULE_CLASS_KEY, load_checkpoint, state_mismatch
from lightning_modules.diffusion.module import Batch, DiffusionModule
from lightning_modules.diffusion.uvit import UViT

UNCERTAINTY_FORMS = ("paper", "adadiff")
EXIT_RULES = ("sample", "batch")


class UncertaintyHead(nn.Module):
    """One block's uncertainty ``u_i ∈ (0, 1)`` per sample.

    ``paper``: ``u = σ(wᵀ[mean_tokens(h), t_emb] + b)`` (arXiv:2309.17074 eq. 4, the timestep
    embedding as the time input). ``adadiff``: a per-token ``Linear + Sigmoid`` on the detached
    tokens, averaged over tokens (AdaDiff's code; no timestep input).

    Shapes: h ``(B, N, D)``, temb ``(B, D)`` → ``(B,)``.
    """

    def __init__(self, dim: int, form: str = "paper") -> None:
        super().__init__()
        self.form = form
        self.linear = nn.Linear(2 * dim if form == "paper" else dim, 1)

    def forward(self, h: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        if self.form == "paper":
            return torch.sigmoid(self.linear(torch.cat([h.mean(1), temb], -1))).squeeze(-1)
        return torch.sigmoid(self.linear(h.detach())).squeeze(-1).mean(1)


class EarlyExitDenoiser:
    """``(x_t, t) -> (ε, exit_layer)`` that stops at the first confident block.

    With ``rule="sample"`` each sample leaves the batch at the first block ``i`` with
    ``u_i < threshold`` (its ε is the shared head on ``h_i``); the rest run on, so the work
    shrinks with the batch. With ``rule="batch"`` the whole batch exits once the batch-mean
    uncertainty has been below the threshold for ``patience`` consecutive blocks. A threshold
    of 0 never fires: the output is the full model's, bit for bit.
    """

    def __init__(
        self,
        net: UViT,
        heads: nn.ModuleList,
        threshold: float,
        rule: str = "sample",
        patience: int = 1,
    ) -> None:
        self.net, self.heads = net, heads
        self.threshold, self.rule, self.patience = threshold, rule, patience

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        net, depth = self.net, self.net.depth
        out = torch.empty_like(x)
        exit_layer = torch.full((x.shape[0],), depth, dtype=torch.long)
        h, temb = net.embed(x, t)
        skips: list[torch.Tensor] = []
        active = torch.arange(x.shape[0], device=x.device)
        streak = 0
        for i in range(depth):
            h = net.layer(i, h, skips)
            if i == depth - 1:
                out[active] = net.head(h)
                break
            u = self.heads[i](h, temb)  # (b,)
            if self.rule == "batch":
                streak = streak + 1 if u.mean() < self.threshold else 0
                if streak >= self.patience:
                    out[active] = net.head(h)
                    exit_layer[:] = i + 1
                    break
                continue
            done = u < self.threshold
            if done.any():
                out[active[done]] = net.head(h[done])
                exit_layer[active[done].cpu()] = i + 1
                keep = ~done
                if not keep.any():
                    break
                active, h, temb = active[keep], h[keep], temb[keep]
                skips = [s[keep] for s in skips]
        return out, exit_layer


class StaticExitDenoiser:
    """The static baseline: blocks ``0..shallow_depth−1`` only at timesteps ``t >= t_split``
    (the noisiest steps), the full depth below."""

    def __init__(self, net: UViT, shallow_depth: int, t_split: int) -> None:
        self.net, self.shallow_depth, self.t_split = net, shallow_depth, t_split

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        depth = self.shallow_depth if int(t[0]) >= self.t_split else self.net.depth
        for i, h, _ in self.net.layers(x, t):
            if i + 1 == depth:
                return self.net.head(h), torch.full((x.shape[0],), depth, dtype=torch.long)
        raise AssertionError("unreachable: depth <= net.depth")


def static_plan(fraction: float, depth: int, steps: int, shallow_depth: int) -> tuple[int, int]:
    """``(shallow_depth, k)``: run ``shallow_depth`` blocks for the ``k`` noisiest of ``steps``
    steps and all ``depth`` for the rest, so the fraction of blocks run is the nearest to
    ``fraction`` (``shallow_depth`` is lowered when even ``k = steps`` cannot reach it)."""
    saved = (1 - fraction) * depth * steps  # block evaluations to save
    shallow_depth = min(shallow_depth, depth - 1)
    if saved > (depth - shallow_depth) * steps:
        shallow_depth = max(1, round(fraction * depth))
    k = round(saved / max(depth - shallow_depth, 1))
    return shallow_depth, max(0, min(steps, k))


class DeeDiffModule(DiffusionModule):
    """A :class:`DiffusionModule` with per-block uncertainty heads trained by eq. 8.

    Args:
        uncertainty: ``paper`` or ``adadiff`` (see :class:`UncertaintyHead`).
        lambda_u: λ, the weight of L_u.
        beta_ual: β, the weight of L_UAL.
        threshold: the exit threshold on u in [0, 1] (0 never exits early).
        exit_rule: ``sample`` (per sample) or ``batch`` (AdaDiff's batch mean).
        patience: consecutive blocks under the threshold before a batch exits.
        backbone_ckpt: a trained :class:`DiffusionModule` checkpoint to fine-tune from (its EMA
            weights start both the online and the averaged net); CheckpointError when it is of
            another module or another architecture.
        other arguments: see :class:`DiffusionModule`.
    """

    def __init__(
        self,
        *args: Any,
        uncertainty: str = "paper",
        lambda_u: float = 1.0,
        beta_ual: float = 1.0,
        threshold: float = 0.1,
        exit_rule: str = "sample",
        patience: int = 1,
        backbone_ckpt: str | None = None,
        **kwargs: Any,
    ) -> None:
        # plain lists, not Hydra's ListConfig, so checkpoints load with weights_only=True
        kwargs = {
            k: [float(v) for v in kwargs[k]] if k.startswith("pixel_") else kwargs[k]
            for k in kwargs
        }
        super().__init__(*args, **kwargs)  # runs this class's check_config on all arguments
        dim, depth = self.net.embed_dim, self.net.depth
        self.heads = nn.ModuleList(UncertaintyHead(dim, uncertainty) for _ in range(depth - 1))
        self.ema_heads = nn.ModuleList(
            UncertaintyHead(dim, uncertainty) for _ in range(depth - 1)
        ).requires_grad_(False)
        self.ema_heads.load_state_dict(self.heads.state_dict())
        if backbone_ckpt:
            self.load_backbone(backbone_ckpt)

    @classmethod
    def check_config(cls, cfg: Mapping[str, Any]) -> None:
        """The backbone's checks, then λ, β ≥ 0, the threshold in [0, 1], the exit rule."""
        DiffusionModule.check_config(cfg)
        defaults = with_defaults(cls, cfg)
        check_choice(defaults, "uncertainty", UNCERTAINTY_FORMS)
        check_range(defaults, "lambda_u", 0.0, None, example=1.0)
        check_range(defaults, "beta_ual", 0.0, None, example=1.0)
        check_range(defaults, "threshold", 0.0, 1.0, example=0.1)
        check_choice(defaults, "exit_rule", EXIT_RULES)
        check_int(defaults, "patience", minimum=1, example=1)

    def load_backbone(self, path: str) -> None:
        """Start from a trained backbone's EMA weights; CheckpointError before any work when
        ``path`` holds another module or a U-ViT of other sizes."""
        saved = load_checkpoint(path)
        wanted = f"{DiffusionModule.__module__}.{DiffusionModule.__qualname__}"
        saved_class = saved.get(MODULE_CLASS_KEY)
        fix = (
            "Give backbone_ckpt=<the backbone stage's checkpoint> of a DiffusionModule with "
            "this experiment's U-ViT sizes (patch_size, embed_dim, depth, num_heads)"
        )
        if saved_class is not None and saved_class != wanted:
            raise CheckpointError(f"backbone_ckpt {path!r} was saved by {saved_class}. {fix}")
        state = {
            k.removeprefix("ema."): v
            for k, v in saved["state_dict"].items()
            if k.startswith("ema.")
        }
        problem = state_mismatch(self.net, state, strict=True) if state else "no ema.* weights"
        if problem:
            raise CheckpointError(
                f"backbone_ckpt {path!r} does not fit this U-ViT: {problem}. {fix}"
            )
        self.net.load_state_dict(state)
        self.ema.load_state_dict(state)

    def ema_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return [(self.net, self.ema), (self.heads, self.ema_heads)]

    def layer_outputs(
        self, net: UViT, heads: nn.ModuleList, xt: torch.Tensor, t: torch.Tensor, y: Any = None
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Every block's prediction ``g_i(h_i)`` (the last is the model's) and the
        uncertainties ``(depth − 1, B)`` of the blocks before the last."""
        preds, us = [], []
        for i, h, temb in net.layers(xt, t, y):
            preds.append(net.head(h))
            if i < net.depth - 1:
                us.append(heads[i](h, temb))
        return preds, torch.stack(us)

    def deediff_losses(
        self, preds: list[torch.Tensor], u: torch.Tensor, noise: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """L_simple, L_u (eq. 6) and L_UAL (eq. 7) of one batch."""
        inter = torch.stack(preds[:-1]) - noise  # (depth-1, B, C, H, W)
        err = inter.pow(2).flatten(2).mean(-1)  # (depth-1, B)
        target = torch.tanh(inter.abs().flatten(2).mean(-1)).detach()
        return {
            "simple": F.mse_loss(preds[-1], noise),
            "u": (u - target).pow(2).mean(1).sum(),
            "ual": ((1 - u.detach()) * err).mean(1).sum(),
        }

    def loss(self, batch: Batch, stage: str) -> torch.Tensor:
        xt, t, noise, y = self.noised(batch)
        preds, u = self.layer_outputs(self.net, self.heads, xt, t, y)
        parts = self.deediff_losses(preds, u, noise)
        hp = self.hparams
        loss = parts["simple"] + hp.lambda_u * parts["u"] + hp.beta_ual * parts["ual"]
        on_step = stage == "train"
        self.log(f"{stage}/loss", loss, prog_bar=True, on_epoch=True, on_step=on_step)
        for name, value in parts.items():
            self.log(f"{stage}/loss_{name}", value, on_epoch=True, on_step=False)
        return loss

    def early_exit_denoiser(
        self, threshold: float | None = None, rule: str | None = None, patience: int | None = None
    ) -> EarlyExitDenoiser:
        """The EMA model's early-exit denoiser (defaults: the configured exit settings)."""
        hp = self.hparams
        threshold = hp.threshold if threshold is None else threshold
        check_range({"threshold": threshold}, "threshold", 0.0, 1.0, example=0.1)
        return EarlyExitDenoiser(
            self.ema, self.ema_heads, threshold, rule or hp.exit_rule, patience or hp.patience
        )
