"""DeeDiff's experiments: errors before work (bad threshold, missing CelebA), the CelebA
reader on a small tree in its official layout, and the evaluation summary."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import compose_cfg
from hydra.errors import InstantiationException
from omegaconf import OmegaConf
from PIL import Image

from datamodules.celeba import read_celeba
from effml.errors import ConfigError, MissingDataError
from lightning_modules.diffusion import DeeDiffModule
from lightning_modules.diffusion.fid import inception_score, precision_recall
from tasks.core import run_task
from tasks.deediff import interleaved_timing, summary
from tasks.validation import validate_config


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("pipeline.evaluate.thresholds=[0.1,1.5]", "thresholds"),
        ("model.threshold=2.0", "threshold"),
        ("pipeline.evaluate.rules=[mean]", "rules"),
        ("model.lambda_u=-1", "lambda_u"),
    ],
)
def test_bad_threshold_or_rule_fails_before_work(override: str, key: str, tmp_path: Path) -> None:
    cfg = compose_cfg(["experiment=deediff_mnist", override, f"paths.output_dir={tmp_path}"])
    with pytest.raises(ConfigError, match=key):
        validate_config(cfg)
    assert not list(tmp_path.iterdir())


def test_missing_celeba_names_the_folder_and_layout(tmp_path: Path) -> None:
    out = tmp_path / "run"
    cfg = compose_cfg(
        [
            "experiment=deediff_celeba",
            f"paths.data_dir={tmp_path / 'nowhere'}",
            f"paths.output_dir={out}",
            f"paths.cache_dir={tmp_path / 'cache'}",
        ]
    )
    with pytest.raises((MissingDataError, InstantiationException)) as info:
        run_task(cfg)
    err = info.value if isinstance(info.value, MissingDataError) else info.value.__cause__
    assert isinstance(err, MissingDataError)
    assert str(tmp_path / "nowhere" / "celeba") in str(err)
    assert "img_align_celeba" in str(err) and "list_eval_partition.txt" in str(err)
    assert not (out / "classifier").exists()


def fake_celeba(root: Path, repeat: int = 1) -> Path:
    """``4 · repeat`` 178×218 faces in the official layout, per four: two train (one male),
    one valid, one test."""
    folder = root / "celeba"
    (folder / "img_align_celeba").mkdir(parents=True)
    names = [f"{i:06d}.jpg" for i in range(1, 4 * repeat + 1)]
    rng = np.random.default_rng(0)
    for name in names:
        pixels = rng.integers(0, 255, (218, 178, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / "img_align_celeba" / name)
    parts = ["0", "0", "1", "2"] * repeat
    (folder / "list_eval_partition.txt").write_text(
        "".join(f"{n} {p}\n" for n, p in zip(names, parts, strict=True))
    )
    header = "5_o_Clock_Shadow Male Young\n"
    rows = [f"{n} -1 {'1' if i % 4 == 1 else '-1'} 1\n" for i, n in enumerate(names)]
    (folder / "list_attr_celeba.txt").write_text(f"{len(names)}\n{header}{''.join(rows)}")
    return folder


def test_celeba_reader_crops_resizes_and_labels_by_male(tmp_path: Path) -> None:
    folder = fake_celeba(tmp_path)
    images, labels = read_celeba(folder, "train", 16)
    assert images.shape == (2, 16, 16, 3) and images.dtype == np.uint8
    assert labels.tolist() == [0, 1]
    test_images, _ = read_celeba(folder, "test", 16)
    assert len(test_images) == 1


def test_summary_reports_the_models_threshold_and_its_static_twin() -> None:
    rows = [
        {"kind": "full", "layer_fraction": 1.0, "wall_s": 10.0, "fid_classifier": 5.0},
        {"kind": "early_exit", "rule": "sample", "threshold": 0.1, "layer_fraction": 0.8,
         "wall_s": 8.0, "fid_classifier": 5.2},
        {"kind": "static", "rule": "sample", "threshold": 0.1, "layer_fraction": 0.8,
         "wall_s": 8.1, "fid_classifier": 6.0},
        {"kind": "early_exit", "rule": "sample", "threshold": 0.2, "layer_fraction": 0.6,
         "wall_s": 6.0, "fid_classifier": 5.5},
        {"kind": "static", "rule": "sample", "threshold": 0.2, "layer_fraction": 0.6,
         "wall_s": 6.2, "fid_classifier": 7.0},
    ]  # fmt: skip
    m = summary(rows, [0.5, 0.7], 0.2, ["classifier"])
    assert m == {
        "eval/layer_fraction": 0.6,
        "eval/wall_s_full": 10.0,
        "eval/wall_s": 6.0,
        "eval/spearman_mean": pytest.approx(0.6),
        "fid/classifier_full": 5.0,
        "fid/classifier": 5.5,
        "fid/classifier_static": 7.0,
        "eval/wall_s_static": 6.2,
    }
    rows[0] |= {"is_classifier": 9.0, "precision_classifier": 0.9, "recall_classifier": 0.8}
    rows[3] |= {"is_classifier": 8.0, "precision_classifier": 0.7, "recall_classifier": 0.6}
    m = summary(rows, [0.5, 0.7], 0.2, ["classifier"])
    assert (m["is/classifier_full"], m["is/classifier"]) == (9.0, 8.0)
    assert (m["precision/classifier"], m["recall/classifier_full"]) == (0.7, 0.8)


def test_inception_score_and_precision_recall_by_hand() -> None:
    sure = np.eye(4)[[0, 1, 2, 3, 0, 1, 2, 3]]  # confident, classes used evenly
    assert inception_score(sure) == pytest.approx(4.0, rel=1e-6)
    assert inception_score(np.full((5, 4), 0.25)) == pytest.approx(1.0)
    assert inception_score(np.eye(4)[[2] * 6]) == pytest.approx(1.0)  # one class only
    rng = np.random.default_rng(0)
    real = rng.normal(size=(200, 2))
    assert precision_recall(real, real + 1e-9, k=3) == (1.0, 1.0)
    far = real + 100.0
    assert precision_recall(real, far, k=3) == (0.0, 0.0)
    # a generator that covers only the left half of the real data: precise, half the recall
    half = real[real[:, 0] < 0]
    precision, recall = precision_recall(real, half, k=3)
    assert precision == 1.0 and 0.35 < recall < 0.65
    with pytest.raises(ValueError, match="k=5 needs"):
        precision_recall(real[:4], half, k=5)


@pytest.mark.slow
def test_celeba_experiment_runs_on_data_in_the_official_layout(tmp_path: Path) -> None:
    fake_celeba(tmp_path / "data", repeat=4)
    chosen = ["experiment=deediff_celeba", "trainer=cpu", "+trainer.fast_dev_run=true"]
    cfg = compose_cfg(
        [
            *chosen,
            *compose_cfg(["experiment=deediff_celeba"]).smoke_overrides,
            "datamodule.image_size=16",
            "logger=csv",
            f"paths.data_dir={tmp_path / 'data'}",
            f"paths.output_dir={tmp_path / 'run'}",
            f"paths.cache_dir={tmp_path / 'cache'}",
        ]
    )
    run_task(cfg)
    sweep = json.loads((tmp_path / "run" / "evaluate" / "sweep.json").read_text())
    assert [r["kind"] for r in sweep["rows"]][0] == "full"
    assert (tmp_path / "run" / "evaluate" / "samples_full.png").is_file()


def test_interleaved_timing_times_the_headline_threshold_and_its_static_twin() -> None:
    torch.manual_seed(0)
    module = DeeDiffModule(None, in_channels=1, image_size=8, patch_size=2, embed_dim=16,
                           depth=5, num_heads=2, sample_steps=4).eval()  # fmt: skip
    spec = OmegaConf.create({"timing_rounds": 2, "batch_size": 3, "rules": ["sample"],
                             "patience": 1, "seed": 0})  # fmt: skip
    timesteps = torch.tensor([999, 666, 333, 0])
    rows = [{"kind": "static", "rule": "sample", "threshold": 0.3, "shallow_depth": 2,
             "shallow_steps": 2}]  # fmt: skip
    timing = interleaved_timing(module, rows, 0.3, timesteps, spec)
    assert timing["rounds"] == 2 and timing["batch"] == 3
    assert set(timing["median_s"]) == {"full", "early_exit", "static"}
    assert all(len(t) == 2 and min(t) > 0 for t in timing["seconds"].values())
    assert interleaved_timing(module, rows, 0.4, timesteps, spec) is None  # not swept
    assert (
        interleaved_timing(
            module, rows, 0.3, timesteps, OmegaConf.merge(spec, {"timing_rounds": 0})
        )
        is None
    )
