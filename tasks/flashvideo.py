"""FlashVideo's evaluation stage: does a generated clip show what its caption says?

For the first ``num_clips`` test clips (with ``datamodule.holdout=true``, every test caption is a
(digit, direction) combination the generator never trained on) the stage generates a clip from
the caption and asks the ``clip_classifier`` stage's judge which digit it shows and where it
moves. Next to the generated clips' accuracies it reports chance (1/10, 1/4; and the majority
class of these clips), the ceiling (the judge on the real clips) and the tokenizer's ceiling
(the judge on the real clips after a VQ-VAE round trip).

Redundant-free interpolation (``interpolate.py``) is measured twice: with keyframes from the
model (the even frames of the generated clips; the judge reads the filled clips) and with the
real clips' even frames as keyframes, where the true in-between frames exist (frame MSE of the
odd frames against them, and the judge again); each against regenerating the odd frames in full.

Writes ``eval.json`` (every row), ``samples.gif`` (generated clips over the real clips of the
same captions), ``interpolation.gif`` and ``accuracy.png`` into the stage folder; the run's
loggers publish the GIFs to W&B as videos.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from tqdm.auto import tqdm

from effml.checks import check_int, check_range
from lightning_modules.checkpoints import load_module
from lightning_modules.flashvideo.clip_classifier import (
    NUM_DIGITS,
    NUM_DIRECTIONS,
    ClipClassifier,
)
from lightning_modules.flashvideo.interpolate import interpolate
from lightning_modules.flashvideo.module import FlashVideoGenerator, save_gif

log = logging.getLogger(__name__)


def check_evaluate(cfg: DictConfig, spec: DictConfig | None) -> None:
    """Clip counts, batch size and temperature; before any work."""
    if spec is None:
        return
    check_int(spec, "num_clips", minimum=1, example=256)
    check_int(spec, "batch_size", minimum=1, example=64)
    check_int(spec, "interp_clips", minimum=0, example=32)
    if spec.get("temperature") is not None:
        check_range(spec, "temperature", 0.0, 10.0, example=1.0)


def first_test_clips(datamodule: Any, count: int) -> dict[str, torch.Tensor]:
    """The first ``count`` test clips, stacked: video, caption, digits, directions."""
    datamodule.setup("test")
    test_set = datamodule.sets["test"]
    items = [test_set[i] for i in range(min(count, len(test_set)))]
    return {key: torch.stack([item[key] for item in items]) for key in items[0]}


def accuracy(judge: ClipClassifier, video: torch.Tensor, clips: dict) -> dict[str, float]:
    """The judge's digit, direction and both-right accuracies on ``video`` against the captions
    of ``clips``."""
    digit, direction = ClipClassifier.targets(clips)
    n = video.shape[0]
    pred_digit, pred_direction = judge.predict(video)
    right_digit = pred_digit == digit[:n]
    right_direction = pred_direction == direction[:n]
    return {
        "acc_digit": right_digit.float().mean().item(),
        "acc_direction": right_direction.float().mean().item(),
        "acc_both": (right_digit & right_direction).float().mean().item(),
    }


def generate_clips(gen: FlashVideoGenerator, captions: torch.Tensor, batch_size: int,
                   seed: int) -> tuple[torch.Tensor, float]:  # fmt: skip
    """Codes ``(N, T, h·w)`` generated for ``captions`` in batches (batch k seeded ``seed + k``)
    and the seconds they took."""
    parts, seconds = [], 0.0
    batches = captions.split(batch_size)
    for k, caption in enumerate(tqdm(batches, desc="generating clips", leave=False)):
        generator = torch.Generator(device=gen.device).manual_seed(seed + k)
        start = time.perf_counter()
        parts.append(gen.generate(caption.to(gen.device), generator=generator).cpu())
        seconds += time.perf_counter() - start
    return torch.cat(parts), seconds


def interpolation_rows(
    gen: FlashVideoGenerator, judge: ClipClassifier, clips: dict, keyframes: torch.Tensor,
    source: str,
) -> tuple[list[dict], torch.Tensor]:  # fmt: skip
    """Redundant-free and full interpolation of the odd frames between ``keyframes``' even
    frames ``(N, T, h·w)``: a row each, and the redundant-free clips' video."""
    n = keyframes.shape[0]
    caption = clips["caption"][:n].to(gen.device)
    rows, filled_video = [], None
    real_odd = clips["video"][:n, 1::2]
    for mode, redundant_free in (("redundant_free", True), ("full", False)):
        filled, stats = interpolate(gen, caption, keyframes.to(gen.device), redundant_free)
        video = gen.decode_codes(filled).cpu()
        row = {"kind": "interpolation", "keyframes": source, "mode": mode, "clips": n,
               "regenerated": stats["regenerated"], "seconds": stats["seconds"],
               **accuracy(judge, video, clips)}  # fmt: skip
        if source == "real":
            row["odd_frame_mse"] = F.mse_loss(video[:, 1::2], real_odd).item()
        rows.append(row)
        log.info("%s", row)
        if redundant_free:
            filled_video = video
    return rows, filled_video


def evaluate_stage(ctx: Any) -> dict[str, float]:
    """Caption following of generated clips, against chance and the real-clip ceiling; and
    interpolation from model and real keyframes. See the module docstring."""
    spec, out = ctx.spec, Path(ctx.stage_dir)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    gen = load_module(FlashVideoGenerator, ctx.done["generator"]["best_ckpt"]).to(device).eval()
    if spec.get("temperature") is not None:
        gen.hparams.temperature = float(spec.temperature)
    judge = load_module(ClipClassifier, ctx.done["clip_classifier"]["best_ckpt"]).to(device)
    clips = first_test_clips(ctx.datamodule, spec.num_clips)
    ClipClassifier.targets(clips)  # one-digit clips, or a clear error before generating
    n = clips["video"].shape[0]
    digit, direction = clips["digits"][:, 0], clips["directions"][:, 0]
    holdout = bool(ctx.datamodule.hparams.get("holdout", False))
    rows: list[dict[str, Any]] = [
        {"kind": "chance", "acc_digit": 1 / NUM_DIGITS, "acc_direction": 1 / NUM_DIRECTIONS,
         "acc_both": 1 / (NUM_DIGITS * NUM_DIRECTIONS)},
        {"kind": "majority", "acc_digit": digit.bincount().max().item() / n,
         "acc_direction": direction.bincount().max().item() / n,
         "acc_both": (digit * NUM_DIRECTIONS + direction).bincount().max().item() / n},
        {"kind": "real", **accuracy(judge, clips["video"], clips)},
    ]  # fmt: skip
    with torch.no_grad():
        real_codes = torch.cat([gen.tokenizer.encode(v.flatten(0, 1).to(device)).cpu()
                                for v in clips["video"].split(spec.batch_size)])  # fmt: skip
        real_codes = real_codes.view(n, gen.layout.frames, -1)
        round_trip = gen.decode_codes(real_codes.to(device)).cpu()
    rows.append({"kind": "tokenizer", "frame_mse": F.mse_loss(round_trip, clips["video"]).item(),
                 **accuracy(judge, round_trip, clips)})  # fmt: skip
    codes, seconds = generate_clips(gen, clips["caption"], spec.batch_size, spec.seed)
    with torch.no_grad():
        generated = gen.decode_codes(codes.to(device)).cpu()
    rows.append({"kind": "generated", "backbone": gen.hparams.backbone,
                 "temperature": float(gen.hparams.temperature), "seconds": seconds,
                 "seconds_per_clip": seconds / n, **accuracy(judge, generated, clips)})  # fmt: skip
    for row in rows:
        log.info("%s", row)
    shown = min(8, n)
    save_gif(torch.cat([generated[:shown], clips["video"][:shown]]), shown, out / "samples.gif")
    m = min(spec.interp_clips, n)
    if m and gen.hparams.backbone == "retnet" and gen.layout.frames > 2:
        model_rows, model_video = interpolation_rows(gen, judge, clips, codes[:m], "model")
        real_rows, real_video = interpolation_rows(gen, judge, clips, real_codes[:m], "real")
        rows += model_rows + real_rows
        shown = min(8, m)
        save_gif(torch.cat([model_video[:shown], real_video[:shown], clips["video"][:shown]]),
                 shown, out / "interpolation.gif")  # fmt: skip
    report = {"clips": n, "heldout_captions": holdout, "rows": rows}
    (out / "eval.json").write_text(json.dumps(report, indent=2) + "\n")
    plot_accuracy(rows, out / "accuracy.png", holdout)
    return summary(rows)


def summary(rows: list[dict]) -> dict[str, float]:
    """metrics.json's numbers: the generated clips' accuracies, the ceilings, chance, and the
    interpolation's regenerated fraction and time."""
    metrics: dict[str, float] = {}
    prefixes = {"generated": "eval/", "real": "eval/real_", "tokenizer": "eval/tokenizer_",
                "chance": "eval/chance_", "majority": "eval/majority_"}  # fmt: skip
    for row in rows:
        if row["kind"] in prefixes:
            for key in ("acc_digit", "acc_direction", "acc_both"):
                metrics[prefixes[row["kind"]] + key] = row[key]
        if row["kind"] == "generated":
            metrics["eval/seconds_per_clip"] = row["seconds_per_clip"]
        if row["kind"] == "interpolation":
            tag = f"eval/interp_{row['keyframes']}_{row['mode']}"
            metrics[f"{tag}_regenerated"] = row["regenerated"]
            metrics[f"{tag}_s"] = row["seconds"]
            metrics[f"{tag}_acc_both"] = row["acc_both"]
            if "odd_frame_mse" in row:
                metrics[f"{tag}_odd_frame_mse"] = row["odd_frame_mse"]
    return metrics


def plot_accuracy(rows: list[dict], path: Path, holdout: bool) -> None:
    """Grouped bars: digit, direction and both-right accuracy of each source."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    shown = [r for r in rows if r["kind"] in ("chance", "majority", "generated", "tokenizer",
                                              "real")]  # fmt: skip
    shown += [r for r in rows if r["kind"] == "interpolation" and r["mode"] == "redundant_free"]
    labels = [r["kind"] if r["kind"] != "interpolation" else f"interp ({r['keyframes']} keys)"
              for r in shown]  # fmt: skip
    keys = ("acc_digit", "acc_direction", "acc_both")
    x = np.arange(len(shown))
    fig, ax = plt.subplots(figsize=(1.3 * len(shown) + 2, 3.6))
    for j, key in enumerate(keys):
        ax.bar(x + (j - 1) * 0.27, [r[key] for r in shown], 0.27, label=key.removeprefix("acc_"))
    ax.set_xticks(x, labels, rotation=20)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy of the clip judge")
    what = "held-out caption combinations" if holdout else "test captions"
    ax.set_title(f"FlashVideo caption following ({what})")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


evaluate_stage.check_config = check_evaluate
