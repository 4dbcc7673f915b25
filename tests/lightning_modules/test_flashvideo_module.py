"""FlashVideo's tokenizer and generator stage: the EMA codebook and its dead-code restarts,
the sequence layout, a checkpoint that is not the generator's tokenizer, interpolation's
plan, and chunked forced runs in RetNet generation (equal to step-by-step decoding)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from effml.errors import CheckpointError
from lightning_modules.flashvideo import RetNetDecoder, generate_retnet
from lightning_modules.flashvideo.interpolate import interpolate, interpolation_plan
from lightning_modules.flashvideo.layout import SequenceLayout
from lightning_modules.flashvideo.module import FlashVideoGenerator
from lightning_modules.flashvideo.vqvae import EMAVectorQuantizer, VQVAETokenizer

# recorded with torch 2.14.1 on the CPU: 3 tokenizer steps, then 3 generator steps
GOLDEN = [0.3001724, 0.273066, 0.2432351, 3.8446114, 3.4836292, 3.1639378]


def save_module(module, path: Path) -> str:
    cls = type(module)
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams),
                "module_class": f"{cls.__module__}.{cls.__qualname__}"}, path)  # fmt: skip
    return str(path)


def test_ema_codebook_follows_data_and_restarts_dead_codes() -> None:
    torch.manual_seed(0)
    vq = EMAVectorQuantizer(num_codes=4, dim=2, decay=0.5, dead_threshold=0.9)
    data = torch.tensor([[5.0, 5.0], [-5.0, 5.0]]).repeat(8, 1)  # two clusters
    z = data.t().reshape(1, 2, 4, 4)
    for _ in range(20):
        vq(z)
    used, perplexity = vq.usage(vq.codes(data))
    assert used == 0.5 and perplexity == pytest.approx(2.0)
    dist = torch.cdist(torch.tensor([[5.0, 5.0], [-5.0, 5.0]]), vq.codebook).min(1).values
    assert dist.max().item() < 1e-3  # both clusters have a code at their centre
    assert (vq.ema_count >= 0.9).all()  # unused codes restarted (count reset to 1)


def test_tokenizer_round_trip_shapes() -> None:
    tok = VQVAETokenizer(num_codes=16, downsample=4, hidden=8, code_dim=4)
    frames = torch.rand(3, 1, 32, 32)
    codes = tok.encode(frames)
    assert codes.shape == (3, 8, 8) and codes.max() < 16
    assert tok.decode(codes).shape == frames.shape


def test_layout_positions() -> None:
    lay = SequenceLayout(num_words=19, caption_len=3, frames=2, tokens_per_frame=4, num_codes=8)
    codes = torch.arange(8).view(1, 2, 4)
    seq = lay.build(torch.tensor([[1, 2, 0]]), codes)
    assert seq.tolist() == [[1, 2, 0, 19, 21, 22, 23, 24, 20, 25, 26, 27, 28]]
    assert lay.length == 13 and lay.mask_token == 29 and lay.vocab_size == 30
    assert torch.equal(lay.codes_of(seq), codes)
    assert lay.forced_serial_numbers() == {3: 19, 8: 20}
    assert lay.code_positions().sum() == 8


def test_interpolation_plan_copies_where_keyframes_agree() -> None:
    lay = SequenceLayout(19, 2, 4, 4, 8)
    codes = torch.tensor([[1, 2, 3, 4], [0, 0, 0, 0], [1, 5, 3, 6], [0, 0, 0, 0]])
    forced, free, total = interpolation_plan(lay, codes)
    assert (free, total) == (2 + 4, 8)  # frame 1: 2 positions differ; frame 3 has no right key
    s1 = lay.frame_start(1)
    assert forced[s1] == lay.code0 + 1 and forced[s1 + 2] == lay.code0 + 3
    assert s1 + 1 not in forced and s1 + 3 not in forced
    assert forced[lay.frame_start(2) + 1] == lay.code0 + 5
    assert interpolation_plan(lay, codes, redundant_free=False)[1:] == (8, 8)


def test_forced_runs_go_chunkwise_and_match_step_by_step() -> None:
    torch.manual_seed(0)
    model = RetNetDecoder(20, d_model=16, num_heads=2, num_layers=2, max_len=40).double().eval()
    prompt = torch.randint(0, 20, (2, 4))
    forced = {p: p % 20 for p in range(8, 20)} | {25: 3}
    out = generate_retnet(model, prompt, 24, forced=forced, backend="cpu", min_chunk=2)
    seq = prompt
    with torch.no_grad():
        for _ in range(24):
            nxt = model(seq)[:, -1].argmax(-1)
            if seq.shape[1] in forced:
                nxt[:] = forced[seq.shape[1]]
            seq = torch.cat([seq, nxt[:, None]], 1)
    assert torch.equal(out, seq)


@pytest.fixture
def tokenizer_ckpt(tmp_path: Path) -> str:
    torch.manual_seed(0)
    tok = VQVAETokenizer(num_codes=16, downsample=8, hidden=8, code_dim=4)
    return save_module(tok, tmp_path / "tokenizer.ckpt")


def test_generator_trains_a_step_and_interpolates(tokenizer_ckpt: str) -> None:
    torch.manual_seed(0)
    gen = FlashVideoGenerator(tokenizer_ckpt, frames=3, frame_size=32, caption_len=4,
                              d_model=16, num_layers=1, num_heads=2)  # fmt: skip
    assert gen.hparams.num_codes == 16 and gen.hparams.tokens_per_frame == 16
    batch = {"video": torch.rand(2, 3, 1, 32, 32), "caption": torch.randint(1, 19, (2, 4))}
    loss = gen.loss(gen.tokens(batch))
    loss.backward()
    assert 0 < loss.item() < 10 and gen.net.embed.weight.grad is not None
    codes = gen.tokenizer.encode(batch["video"].flatten(0, 1)).view(2, 3, -1)
    filled, stats = interpolate(gen, batch["caption"], codes)
    assert torch.equal(filled[:, 0], codes[:, 0]) and torch.equal(filled[:, 2], codes[:, 2])
    same = codes[:, 0] == codes[:, 2]
    assert torch.equal(filled[:, 1][same], codes[:, 0][same])
    assert stats["regenerated"] == pytest.approx((~same).float().mean().item())


def test_generator_refuses_a_tokenizer_it_was_not_trained_with(tokenizer_ckpt: str,
                                                               tmp_path: Path) -> None:  # fmt: skip
    with pytest.raises(CheckpointError, match="num_codes=16, but this generator was trained "
                                              "with num_codes=32"):  # fmt: skip
        FlashVideoGenerator(tokenizer_ckpt, frame_size=32, num_codes=32)
    gen = FlashVideoGenerator(tokenizer_ckpt, frames=2, frame_size=32, d_model=16, num_layers=1)
    other = save_module(gen, tmp_path / "generator.ckpt")
    with pytest.raises(CheckpointError, match="was saved by .*FlashVideoGenerator, not"):
        FlashVideoGenerator(other, frame_size=32)
    batch = {"video": torch.rand(1, 3, 1, 32, 32), "caption": torch.ones(1, 11, dtype=torch.long)}
    with pytest.raises(ValueError, match="clip of 3 frames, but the generator was built for "
                                         "frames=2"):  # fmt: skip
        gen.tokens(batch)


def golden_losses(tmp_path: Path) -> list[float]:
    """Tokenizer then RetNet generator, three AdamW steps each on one fixed batch."""
    torch.manual_seed(0)
    batch = {"video": torch.rand(2, 3, 1, 32, 32), "caption": torch.randint(1, 19, (2, 4))}
    tok = VQVAETokenizer(num_codes=16, downsample=8, hidden=8, code_dim=4)
    opt = torch.optim.AdamW(tok.parameters(), lr=1e-2)
    losses = []
    for _ in range(3):
        recon, _, commit = tok(batch["video"].flatten(0, 1))
        loss = torch.nn.functional.mse_loss(recon, batch["video"].flatten(0, 1)) + 0.25 * commit
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    gen = FlashVideoGenerator(save_module(tok, tmp_path / "tok.ckpt"), frames=3, frame_size=32,
                              caption_len=4, d_model=16, num_layers=1, num_heads=2)  # fmt: skip
    opt = torch.optim.AdamW(gen.net.parameters(), lr=1e-2)
    for _ in range(3):
        loss = gen.loss(gen.tokens(batch))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_golden_losses(tmp_path: Path) -> None:
    assert golden_losses(tmp_path) == pytest.approx(GOLDEN, abs=1e-4)


@pytest.mark.parametrize("backbone", ["retnet", "transformer", "maskgit"])
def test_every_backbone_trains_and_generates_codes(tokenizer_ckpt: str, backbone: str) -> None:
    torch.manual_seed(0)
    gen = FlashVideoGenerator(tokenizer_ckpt, backbone=backbone, frames=2, frame_size=32,
                              caption_len=4, d_model=16, num_layers=1, num_heads=2,
                              maskgit_iterations=3)  # fmt: skip
    batch = {"video": torch.rand(2, 2, 1, 32, 32), "caption": torch.randint(1, 19, (2, 4))}
    assert torch.isfinite(gen.loss(gen.tokens(batch)))
    codes = gen.generate(batch["caption"])
    assert codes.shape == (2, 2, 16) and codes.min() >= 0 and codes.max() < 16
    assert gen.decode_codes(codes).shape == (2, 2, 1, 32, 32)
