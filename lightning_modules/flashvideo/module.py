"""FlashVideo's generator stage: a decoder over caption + serial-number + frame-code tokens,
trained on codes from a frozen ``VQVAETokenizer`` checkpoint (arXiv 2401.00869).

``backbone``: "retnet" (parallel form in training, chunkwise prompt + recurrent steps when
generating), "transformer" (causal, KV cache when generating) or "maskgit" (bidirectional,
masked-token training with MaskGIT's cosine schedule, iterative parallel decoding). Training:
cross entropy on the code tokens (the next-token prediction for the causal backbones; the
masked tokens for MaskGIT). Test: the same loss on test clips, and ``num_samples`` clips
generated from the first test captions, written as a GIF to the run folder
(``samples.gif``: top row generated, bottom row the real clip of that caption); for the
retnet backbone, redundant-free interpolation of those clips' odd frames from their real even
frames (``interpolate.py``) against regenerating the odd frames in full.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from effml.errors import CheckpointError, ConfigError
from lightning_modules.base import EffmlModule
from lightning_modules.checkpoints import load_module

from .generate import generate_maskgit, generate_retnet, generate_transformer
from .interpolate import interpolate
from .layout import SequenceLayout
from .retnet import RetNetDecoder
from .transformer import TransformerDecoder
from .vqvae import VQVAETokenizer

BACKBONES = ("retnet", "transformer", "maskgit")


class FlashVideoGenerator(EffmlModule):
    """Text-to-video token generator over a frozen frame tokenizer.

    Args:
        tokenizer_ckpt: checkpoint of the ``VQVAETokenizer`` stage.
        backbone: "retnet", "transformer" or "maskgit".
        num_words, caption_len, frames, frame_size: the datamodule's caption vocabulary,
            caption length, clip length and frame side.
        num_codes, tokens_per_frame: null to take them from the tokenizer; when given (a
            trained generator being reloaded) the tokenizer must match them.
        d_model, num_heads, num_layers, ffn_mult, norm_eps: decoder size.
        maskgit_iterations, temperature, num_samples, output_dir, backend: generation.
    """

    def __init__(self, tokenizer_ckpt: str, backbone: str = "retnet", num_words: int = 19,
                 caption_len: int = 11, frames: int = 8, frame_size: int = 64,
                 num_codes: int | None = None,
                 tokens_per_frame: int | None = None, d_model: int = 128, num_heads: int = 4,
                 num_layers: int = 4, ffn_mult: int = 4, norm_eps: float = 1e-6,
                 maskgit_iterations: int = 8, temperature: float = 0.0, num_samples: int = 4,
                 output_dir: str | None = None, backend: str | None = None, optimizer=None,
                 scheduler=None) -> None:  # fmt: skip
        super().__init__(optimizer, scheduler, monitor="val/loss")
        FlashVideoGenerator.check_config({"backbone": backbone, "frames": frames})
        self.tokenizer = load_module(VQVAETokenizer, tokenizer_ckpt)
        self.tokenizer.requires_grad_(False)
        codes = self.tokenizer.hparams.num_codes
        probe = self.tokenizer.encode(
            torch.zeros(1, self.tokenizer.hparams.in_channels, frame_size, frame_size)
        )
        per_frame = probe[0].numel()
        for name, want, got in (("num_codes", num_codes, codes),
                                ("tokens_per_frame", tokens_per_frame, per_frame)):  # fmt: skip
            if want is not None and want != got:
                raise CheckpointError(
                    f"tokenizer checkpoint {tokenizer_ckpt!r} gives {name}={got}, but this "
                    f"generator was trained with {name}={want}: give the tokenizer checkpoint "
                    "the generator was trained with"
                )
        self.save_hyperparameters(ignore=["optimizer", "scheduler"])
        self.hparams.num_codes, self.hparams.tokens_per_frame = codes, per_frame
        self.layout = SequenceLayout(num_words, caption_len, frames, per_frame, codes)
        size = dict(d_model=d_model, num_heads=num_heads, num_layers=num_layers,
                    ffn_mult=ffn_mult, max_len=self.layout.length)  # fmt: skip
        if backbone == "retnet":
            self.net = RetNetDecoder(self.layout.vocab_size, norm_eps=norm_eps, **size)
        else:
            self.net = TransformerDecoder(self.layout.vocab_size, causal=backbone != "maskgit",
                                          **size)  # fmt: skip
        self.register_buffer("code_mask", self.layout.code_positions(), persistent=False)

    @classmethod
    def check_config(cls, cfg: Mapping[str, Any]) -> None:
        if cfg.get("backbone", "retnet") not in BACKBONES:
            raise ConfigError("backbone", cfg["backbone"], f"choose one of {list(BACKBONES)}",
                              "retnet")  # fmt: skip
        if int(cfg.get("frames", 8)) < 1:
            raise ConfigError("frames", cfg["frames"], "must be a positive frame count", 8)
        EffmlModule.check_config(cfg)

    def tokens(self, batch: dict) -> torch.Tensor:
        """The clip's full token sequence (B, length) from its video and caption."""
        video = batch["video"]  # (B, T, C, H, W)
        b, t = video.shape[:2]
        if t != self.layout.frames:
            raise ValueError(
                f"clip of {t} frames, but the generator was built for frames="
                f"{self.layout.frames}: set datamodule.frames and model.frames alike"
            )
        if int(batch["caption"].max()) >= self.layout.num_words:
            raise ValueError(
                f"caption word id {int(batch['caption'].max())} ≥ num_words="
                f"{self.layout.num_words}: set model.num_words to the datamodule's vocabulary size"
            )
        codes = self.tokenizer.encode(video.flatten(0, 1)).view(b, t, -1)
        if codes.shape[-1] != self.layout.tokens_per_frame:
            raise ValueError(
                f"frames give {codes.shape[-1]} codes each, the generator expects "
                f"{self.layout.tokens_per_frame}: set model.frame_size to the frame side"
            )
        return self.layout.build(batch["caption"], codes)

    def loss(self, tokens: torch.Tensor) -> torch.Tensor:
        """Cross entropy on the code tokens (next-token, or masked-token for MaskGIT)."""
        if self.hparams.backbone != "maskgit":
            logits = self.net(tokens[:, :-1])
            target = tokens[:, 1:]
            keep = self.code_mask[1:].expand_as(target)
            return F.cross_entropy(logits[keep], target[keep])
        b = tokens.shape[0]
        ratio = torch.cos(math.pi / 2 * torch.rand(b, 1, device=tokens.device))
        masked = (torch.rand(tokens.shape, device=tokens.device) < ratio) & self.code_mask
        logits = self.net(tokens.masked_fill(masked, self.layout.mask_token))
        if not masked.any():
            return logits.sum() * 0
        return F.cross_entropy(logits[masked], tokens[masked])

    def _step(self, batch: dict, split: str) -> torch.Tensor:
        loss = self.loss(self.tokens(batch))
        self.log(f"{split}/loss", loss, prog_bar=True, batch_size=batch["video"].shape[0])
        return loss

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._step(batch, "test")
        if batch_idx == 0 and self.hparams.num_samples:
            self._samples(batch)
            if self.hparams.backbone == "retnet" and self.layout.frames > 2:
                self._interpolation(batch)

    @torch.no_grad()
    def generate(self, caption: torch.Tensor, generator: torch.Generator | None = None,
                 forced: dict[int, int] | None = None) -> torch.Tensor:  # fmt: skip
        """caption (B, C) → code grids (B, T, h·w) generated by the backbone."""
        lay, hp = self.layout, self.hparams
        num_new = lay.length - lay.caption_len
        forced = {**lay.forced_serial_numbers(), **(forced or {})}
        common = dict(temperature=hp.temperature, generator=generator, forced=forced,
                      allowed=lay.allowed_codes(caption.device))  # fmt: skip
        if hp.backbone == "retnet":
            seq = generate_retnet(self.net, caption, num_new, backend=hp.backend, **common)
        elif hp.backbone == "transformer":
            seq = generate_transformer(self.net, caption, num_new, use_cache=True, **common)
        else:
            seq = generate_maskgit(self.net, caption, num_new, lay.mask_token,
                                   iterations=hp.maskgit_iterations, **common)  # fmt: skip
        return lay.codes_of(seq)

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, T, h·w) → video (B, T, C, H, W)."""
        b, t, n = codes.shape
        side = int(round(math.sqrt(n)))
        frames = self.tokenizer.decode(codes.reshape(b * t, side, side))
        return frames.view(b, t, *frames.shape[1:])

    def _samples(self, batch: dict) -> None:
        n = min(self.hparams.num_samples, batch["caption"].shape[0])
        start = time.perf_counter()
        codes = self.generate(batch["caption"][:n])
        seconds = time.perf_counter() - start
        self.log("test/generate_s_per_clip", seconds / n, batch_size=n)
        if self.hparams.output_dir:
            video = self.decode_codes(codes)
            save_gif(torch.cat([video, batch["video"][:n]], 0), n,
                     Path(self.hparams.output_dir) / "samples.gif")  # fmt: skip

    def _interpolation(self, batch: dict) -> None:
        """Odd frames of test clips from their real even frames: redundant-free against full
        regeneration; the fraction regenerated, the time and the frame MSE of the odd frames
        against the real ones."""
        n = min(self.hparams.num_samples, batch["caption"].shape[0])
        video = batch["video"][:n]
        b, t = video.shape[:2]
        codes = self.tokenizer.encode(video.flatten(0, 1)).view(b, t, -1)
        odd = slice(1, None, 2)
        for name, rf in (("interp", True), ("interp_full", False)):
            filled, stats = interpolate(self, batch["caption"][:n], codes, redundant_free=rf)
            mse = F.mse_loss(self.decode_codes(filled)[:, odd], video[:, odd]).item()
            self.log_dict({f"test/{name}_regenerated": stats["regenerated"],
                           f"test/{name}_s": stats["seconds"], f"test/{name}_frame_mse": mse},
                          batch_size=n)  # fmt: skip


def save_gif(video: torch.Tensor, per_row: int, path: Path) -> None:
    """video (N, T, C, H, W) in [0, 1] → an animated GIF, clips tiled ``per_row`` a row."""
    from PIL import Image

    n, t, c, h, w = video.shape
    rows = math.ceil(n / per_row)
    grid = torch.zeros(t, c, rows * h, per_row * w)
    for i in range(n):
        r, col = divmod(i, per_row)
        grid[:, :, r * h : (r + 1) * h, col * w : (col + 1) * w] = video[i].cpu()
    frames = (grid.clamp(0, 1) * 255).byte().permute(0, 2, 3, 1).numpy()
    images = [Image.fromarray(np.repeat(f, 3, axis=2) if c == 1 else f) for f in frames]
    path.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(path, save_all=True, append_images=images[1:], duration=200, loop=0)
