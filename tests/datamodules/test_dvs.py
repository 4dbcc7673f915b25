"""DVS128 Gesture datamodule: the missing-data message, the writable root, frame batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from datamodules.dvs import RAW_FILES, DVS128GestureDataModule, FrameCollate, prepare_root
from effml.errors import MissingDataError


def test_missing_data_says_where_it_looked_and_how_to_get_it(tmp_path: Path) -> None:
    dm = DVS128GestureDataModule(str(tmp_path / "data"), str(tmp_path / "cache"))
    with pytest.raises(MissingDataError) as err:
        dm.setup()
    message = str(err.value)
    assert str(tmp_path / "data" / "DVS128Gesture" / "download") in message
    assert "DvsGesture.tar.gz" in message and "ibm.com" in message
    assert not (tmp_path / "cache").exists()


def test_root_links_the_read_only_data(tmp_path: Path) -> None:
    download = tmp_path / "data" / "DVS128Gesture" / "download"
    download.mkdir(parents=True)
    for name in RAW_FILES:
        (download / name).write_text("x")
    root = prepare_root(tmp_path / "data", tmp_path / "cache", "DVS128Gesture")
    assert root == tmp_path / "cache" / "dvs128_gesture"
    assert (root / "download").resolve() == download.resolve()
    assert not (root / "events_np").exists()
    assert prepare_root(tmp_path / "data", tmp_path / "cache", "DVS128Gesture") == root


def test_collate_stacks_frames_and_pools_the_sensor() -> None:
    items = [(np.ones((4, 2, 128, 128), dtype=np.float32) * i, i) for i in range(3)]
    x, y = FrameCollate(32)(items)
    assert x.shape == (3, 4, 2, 32, 32) and x.dtype == torch.float32
    assert torch.equal(y, torch.tensor([0, 1, 2]))
    torch.testing.assert_close(x[2], torch.full((4, 2, 32, 32), 2.0))
    assert FrameCollate(128)(items)[0].shape == (3, 4, 2, 128, 128)


def test_shapes_for_the_model_and_bad_values() -> None:
    dm = DVS128GestureDataModule("/nonexistent", "/nonexistent", image_size=64)
    assert dm.model_kwargs() == {"in_channels": 2, "num_classes": 11, "image_size": 64}
    with pytest.raises(ValueError, match="frames_number=0"):
        DVS128GestureDataModule("/d", "/c", frames_number=0)
    with pytest.raises(ValueError, match="image_size=256"):
        DVS128GestureDataModule("/d", "/c", image_size=256)
