"""FlashVideo's evaluation: the clip judge (shapes, one-digit clips only), accuracies against
the captions, and the evaluate stage end to end on tiny checkpoints and real Moving MNIST clips
(every row, the ceilings, interpolation from model and real keyframes, the files)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf

from datamodules.moving_mnist import MovingMNISTDataModule
from lightning_modules.flashvideo.clip_classifier import ClipClassifier
from lightning_modules.flashvideo.module import FlashVideoGenerator
from lightning_modules.flashvideo.vqvae import VQVAETokenizer
from tasks.flashvideo import accuracy, evaluate_stage, summary
from tests.conftest import require_data


def save_module(module, path: Path) -> str:
    cls = type(module)
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams),
                "module_class": f"{cls.__module__}.{cls.__qualname__}"}, path)  # fmt: skip
    return str(path)


class FixedJudge(ClipClassifier):
    """A judge whose answers are given: ``predict`` returns them whatever the video."""

    def __init__(self, digits: torch.Tensor, directions: torch.Tensor) -> None:
        super().__init__(channels=[2])
        self.answers = (digits, directions)

    def predict(self, video, batch_size=64):
        return self.answers[0][: len(video)], self.answers[1][: len(video)]


def test_judge_shapes_and_one_digit_rule() -> None:
    judge = ClipClassifier(channels=[4, 8])
    video = torch.rand(3, 5, 1, 32, 32)
    digit_logits, direction_logits = judge(video)
    assert digit_logits.shape == (3, 10) and direction_logits.shape == (3, 4)
    judge.eval()
    pred = judge.predict(video, batch_size=2)
    assert torch.equal(pred[0], judge(video)[0].argmax(-1))
    two = {"digits": torch.tensor([[3, -1], [4, 7]]), "directions": torch.tensor([[0, -1], [1, 2]])}
    with pytest.raises(ValueError, match="two digits: set datamodule.num_digits=1"):
        ClipClassifier.targets(two)


def test_accuracy_counts_against_the_captions() -> None:
    clips = {"digits": torch.tensor([[1, -1], [2, -1], [3, -1], [4, -1]]),
             "directions": torch.tensor([[0, -1], [1, -1], [2, -1], [3, -1]])}  # fmt: skip
    video = torch.zeros(4, 2, 1, 32, 32)
    perfect = FixedJudge(torch.tensor([1, 2, 3, 4]), torch.tensor([0, 1, 2, 3]))
    assert accuracy(perfect, video, clips) == {"acc_digit": 1, "acc_direction": 1, "acc_both": 1}
    half = FixedJudge(torch.tensor([1, 2, 0, 0]), torch.tensor([0, 0, 2, 0]))
    assert accuracy(half, video, clips) == {"acc_digit": 0.5, "acc_direction": 0.5,
                                            "acc_both": 0.25}  # fmt: skip
    rows = [{"kind": "generated", "seconds_per_clip": 0.1, "acc_digit": 0.5,
             "acc_direction": 0.5, "acc_both": 0.25},
            {"kind": "interpolation", "keyframes": "real", "mode": "full", "regenerated": 1.0,
             "seconds": 2.0, "acc_both": 0.5, "odd_frame_mse": 0.01}]  # fmt: skip
    metrics = summary(rows)
    assert metrics["eval/acc_both"] == 0.25
    assert metrics["eval/interp_real_full_odd_frame_mse"] == 0.01


def test_evaluate_stage_end_to_end(tmp_path: Path) -> None:
    root = require_data("MNIST/raw")
    torch.manual_seed(0)
    tok = save_module(VQVAETokenizer(num_codes=16, downsample=8, hidden=8, code_dim=4),
                      tmp_path / "tok.ckpt")  # fmt: skip
    gen = FlashVideoGenerator(tok, frames=4, frame_size=32, caption_len=11, d_model=16,
                              num_layers=1, num_heads=2, temperature=1.0)  # fmt: skip
    judge = ClipClassifier(channels=[4])
    dm = MovingMNISTDataModule(root, train_size=2, val_size=2, test_size=6, num_digits=1,
                               frames=4, size=32, holdout=True)  # fmt: skip
    done = {"generator": {"best_ckpt": save_module(gen, tmp_path / "gen.ckpt")},
            "clip_classifier": {"best_ckpt": save_module(judge, tmp_path / "j.ckpt")}}  # fmt: skip
    spec = OmegaConf.create({"num_clips": 5, "batch_size": 2, "interp_clips": 3,
                             "temperature": None, "seed": 0})  # fmt: skip
    out = tmp_path / "evaluate"
    out.mkdir()
    ctx = SimpleNamespace(spec=spec, stage_dir=out, done=done, datamodule=dm)
    metrics = evaluate_stage(ctx)
    report = json.loads((out / "eval.json").read_text())
    assert report["clips"] == 5 and report["heldout_captions"] is True
    rows = {(r["kind"], r.get("keyframes"), r.get("mode")): r for r in report["rows"]}
    assert rows[("chance", None, None)]["acc_direction"] == 0.25
    for row in report["rows"]:
        assert all(0 <= row[k] <= 1 for k in ("acc_digit", "acc_direction", "acc_both"))
    for source in ("model", "real"):
        rf, full = (
            rows[("interpolation", source, "redundant_free")],
            rows[("interpolation", source, "full")],
        )
        assert full["regenerated"] == 1.0 and rf["regenerated"] <= 1.0
    assert "odd_frame_mse" in rows[("interpolation", "real", "full")]
    assert metrics["eval/chance_acc_digit"] == pytest.approx(0.1)
    assert 0 <= metrics["eval/acc_both"] <= 1 and metrics["eval/seconds_per_clip"] > 0
    for name in ("samples.gif", "interpolation.gif", "accuracy.png"):
        assert (out / name).stat().st_size > 0
    two = MovingMNISTDataModule(root, train_size=2, val_size=2, test_size=30, num_digits=0,
                                frames=4, size=32)  # fmt: skip
    with pytest.raises(ValueError, match="set datamodule.num_digits=1"):
        evaluate_stage(SimpleNamespace(spec=OmegaConf.merge(spec, {"num_clips": 30}),
                                       stage_dir=out, done=done, datamodule=two))  # fmt: skip
