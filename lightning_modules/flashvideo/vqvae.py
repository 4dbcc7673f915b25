"""Frame-wise VQ-VAE tokenizer for FlashVideo (VQ-VAE: arXiv 1711.00937, EMA codebook updates
of its Appendix A.1): each frame becomes an (H/f)×(W/f) grid of codebook indices, f = 4 or 8.

The codebook follows the encoder by exponential moving averages of the assigned vectors'
counts and sums (no codebook gradient); a code whose average usage falls below
``dead_threshold`` is restarted at a random encoder output of the current batch (dead-code
restarts, as in Jukebox, arXiv 2005.00341 §3.3). ``usage`` reports the fraction of codes used
in a batch and the codebook perplexity.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from effml.errors import ConfigError
from lightning_modules.base import EffmlModule


class EMAVectorQuantizer(nn.Module):
    """Nearest-code quantisation with an EMA codebook and dead-code restarts.

    Args:
        num_codes: codebook size K; dim: code dimension D.
        decay: EMA decay of the counts and sums; eps: Laplace smoothing of the counts.
        dead_threshold: a code whose EMA count falls below this is restarted.
    """

    def __init__(self, num_codes: int, dim: int, decay: float = 0.99, eps: float = 1e-5,
                 dead_threshold: float = 1.0) -> None:  # fmt: skip
        super().__init__()
        self.num_codes, self.decay, self.eps, self.dead_threshold = (
            num_codes,
            decay,
            eps,
            dead_threshold,
        )
        embed = torch.randn(num_codes, dim) * 0.1
        self.register_buffer("codebook", embed)
        self.register_buffer("ema_count", torch.ones(num_codes))
        self.register_buffer("ema_sum", embed.clone())

    def codes(self, z: torch.Tensor) -> torch.Tensor:
        """z (N, D) → nearest code indices (N,)."""
        dist = (z.pow(2).sum(1, keepdim=True) - 2 * z @ self.codebook.t()
                + self.codebook.pow(2).sum(1)[None])  # fmt: skip
        return dist.argmin(1)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """z (B, D, h, w) → (straight-through z_q, codes (B, h, w), commitment loss)."""
        b, d, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, d)
        idx = self.codes(flat.detach())
        quant = self.codebook[idx]
        if self.training:
            self._ema_update(flat.detach(), idx)
        commit = F.mse_loss(flat, quant.detach())
        quant = flat + (quant - flat).detach()
        return quant.view(b, h, w, d).permute(0, 3, 1, 2), idx.view(b, h, w), commit

    @torch.no_grad()
    def _ema_update(self, flat: torch.Tensor, idx: torch.Tensor) -> None:
        onehot = F.one_hot(idx, self.num_codes).to(flat.dtype)  # (N, K)
        self.ema_count.mul_(self.decay).add_(onehot.sum(0), alpha=1 - self.decay)
        self.ema_sum.mul_(self.decay).add_(onehot.t() @ flat, alpha=1 - self.decay)
        n = self.ema_count.sum()
        count = (self.ema_count + self.eps) / (n + self.num_codes * self.eps) * n
        self.codebook.copy_(self.ema_sum / count[:, None])
        dead = self.ema_count < self.dead_threshold
        if dead.any():
            pick = torch.randint(0, flat.shape[0], (int(dead.sum()),), device=flat.device)
            self.codebook[dead] = flat[pick]
            self.ema_sum[dead] = flat[pick]
            self.ema_count[dead] = 1.0

    def usage(self, idx: torch.Tensor) -> tuple[float, float]:
        """(fraction of the codebook used by idx, perplexity of idx's code histogram)."""
        hist = torch.bincount(idx.flatten(), minlength=self.num_codes).float()
        p = hist / hist.sum().clamp(min=1)
        entropy = -(p[p > 0] * p[p > 0].log()).sum().item()
        return (hist > 0).float().mean().item(), math.exp(entropy)


def _conv_stack(channels: list[int], down: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(channels, channels[1:], strict=False)):
        conv = nn.Conv2d if down else nn.ConvTranspose2d
        layers.append(conv(a, b, 4, stride=2, padding=1))
        if i < len(channels) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class VQVAETokenizer(EffmlModule):
    """A frame VQ-VAE trained on video frames; ``encode``/``decode`` map frames ↔ code grids.

    Args:
        in_channels: frame channels; hidden: conv width; code_dim: D; num_codes: K.
        downsample: 4 or 8 (spatial reduction of the code grid).
        beta: weight of the commitment loss; decay, dead_threshold: see EMAVectorQuantizer.
        optimizer, scheduler: partial constructors (EffmlModule).
    """

    def __init__(self, in_channels: int = 1, hidden: int = 64, code_dim: int = 32,
                 num_codes: int = 256, downsample: int = 8, beta: float = 0.25,
                 decay: float = 0.99, dead_threshold: float = 1.0, optimizer=None,
                 scheduler=None) -> None:  # fmt: skip
        super().__init__(optimizer, scheduler, monitor="val/recon_mse")
        VQVAETokenizer.check_config(dict(downsample=downsample, num_codes=num_codes))
        self.save_hyperparameters(ignore=["optimizer", "scheduler"])
        steps = int(math.log2(downsample))
        widths = [hidden] * steps
        self.encoder = nn.Sequential(_conv_stack([in_channels, *widths], True), nn.ReLU(),
                                     nn.Conv2d(hidden, code_dim, 1))  # fmt: skip
        self.quantizer = EMAVectorQuantizer(
            num_codes, code_dim, decay, dead_threshold=dead_threshold
        )
        self.decoder = nn.Sequential(nn.Conv2d(code_dim, hidden, 1), nn.ReLU(),
                                     _conv_stack([*widths, in_channels], False))  # fmt: skip
        self.beta = beta

    @classmethod
    def check_config(cls, cfg: Mapping[str, Any]) -> None:
        if cfg.get("downsample", 8) not in (4, 8):
            raise ConfigError("downsample", cfg["downsample"], "must be 4 or 8", 8)
        if int(cfg.get("num_codes", 256)) < 2:
            raise ConfigError("num_codes", cfg["num_codes"], "needs at least 2 codes", 256)
        EffmlModule.check_config(cfg)

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """frames (N, C, H, W) in [0, 1] → (reconstruction, codes (N, h, w), commitment).

        The reconstruction is the decoder's linear output: a sigmoid output on these mostly
        black frames saturated to all-black within 50 steps and never left it (measured)."""
        z_q, idx, commit = self.quantizer(self.encoder(frames))
        return self.decoder(z_q), idx, commit

    @torch.no_grad()
    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """frames (N, C, H, W) → codes (N, h, w)."""
        z = self.encoder(frames)
        b, d, h, w = z.shape
        return self.quantizer.codes(z.permute(0, 2, 3, 1).reshape(-1, d)).view(b, h, w)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (N, h, w) → frames (N, C, H, W) in [0, 1]."""
        z_q = self.quantizer.codebook[codes].permute(0, 3, 1, 2)
        return self.decoder(z_q).clamp(0, 1)

    def _step(self, batch: dict, split: str) -> torch.Tensor:
        frames = batch["video"].flatten(0, 1)  # (B·T, C, H, W)
        recon, idx, commit = self(frames)
        mse = F.mse_loss(recon, frames)
        loss = mse + self.beta * commit
        used, perplexity = self.quantizer.usage(idx)
        self.log_dict({f"{split}/loss": loss, f"{split}/recon_mse": mse,
                       f"{split}/codebook_usage": used, f"{split}/codebook_perplexity": perplexity},
                      prog_bar=split != "test", batch_size=frames.shape[0])  # fmt: skip
        return loss

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._step(batch, "test")
