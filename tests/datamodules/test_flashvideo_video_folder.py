"""Video folders for FlashVideo: UCF-101 and frame-folder layouts read from real clips (the
shared sample videos, decoded by PyAV), class names as captions, and a missing folder or
layout named in the error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from datamodules.video_folder import VideoFolderDataModule, class_caption
from effml.errors import MissingDataError
from tests.conftest import require_data


def test_class_caption() -> None:
    assert class_caption("ApplyEyeMakeup") == "apply eye makeup"
    assert class_caption("YoYo") == "yo yo"


def test_ucf101_layout_from_real_clips(tmp_path: Path) -> None:
    pytest.importorskip("av", reason="PyAV is not installed (pip install av)")
    data = require_data("video/tests_data_test.avi", "video/demo_demo.mp4")
    root = tmp_path / "ucf"
    for cls, name in (("PlayGuitar", "tests_data_test.avi"), ("JumpRope", "demo_demo.mp4")):
        (root / cls).mkdir(parents=True)
        (root / cls / name).symlink_to(data / "video" / name)
    (root / "ucfTrainTestlist").mkdir()
    (root / "ucfTrainTestlist" / "trainlist01.txt").write_text("PlayGuitar/tests_data_test.avi 1\n")
    (root / "ucfTrainTestlist" / "testlist01.txt").write_text("JumpRope/demo_demo.mp4\n")
    dm = VideoFolderDataModule(root, frames=4, stride=2, size=32, batch_size=1, num_workers=0)
    dm.setup()
    item = dm.sets["train"][0]
    assert item["video"].shape == (4, 3, 32, 32) and item["video"].std() > 0.01
    assert item["label"].item() == 1  # classes sorted: JumpRope, PlayGuitar
    assert dm.num_words == 3  # "play", "guitar" and padding
    test = dm.sets["test"][0]
    assert test["caption"].tolist()[:2] == [0, 0]  # "jump rope": unseen words → 0


def test_frames_layout(tmp_path: Path) -> None:
    for split in ("train", "test"):
        clip = tmp_path / split / "clip0"
        clip.mkdir(parents=True)
        for t in range(3):
            Image.fromarray(np.full((8, 8, 3), 40 * t, dtype=np.uint8)).save(clip / f"{t}.png")
        (clip / "caption.txt").write_text("push the block")
    dm = VideoFolderDataModule(tmp_path, layout="frames", frames=3, stride=1, size=8, num_workers=0)
    dm.setup()
    video = dm.sets["train"][0]["video"]
    assert torch.allclose(video[:, 0, 0, 0], torch.tensor([0.0, 40, 80]) / 255, atol=1e-6)


def test_missing_folder_names_the_layout(tmp_path: Path) -> None:
    dm = VideoFolderDataModule(tmp_path / "nowhere")
    with pytest.raises(MissingDataError, match=r"<root>/<ClassName>/<clip>\.avi"):
        dm.setup()
